-- An end for the app's refresh tokens counted from the consent and never moved by a refresh, in
-- seconds, where the platform limits this app below its definition (Google: an app whose OAuth
-- consent screen is in Testing status gets refresh tokens that end 7 days after consent). NULL:
-- the definition's own lifetime.
ALTER TABLE apps ADD COLUMN refresh_token_ends_after_secs BIGINT;
