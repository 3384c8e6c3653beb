-- The issuer of the app's tokens when it is not the platform's own: the name of one of the
-- definition's [identities] (Microsoft Advertising accounts signed in with Google: 'google').
-- NULL: the definition's own issuer.
ALTER TABLE apps ADD COLUMN identity TEXT;
