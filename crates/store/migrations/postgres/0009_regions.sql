-- Which of the platform's regions an app's tokens and accounts belong to (Amazon Ads: na, eu, fe,
-- each with its own authorize, token and API hosts), and the region recorded on each connection.
-- NULL: the definition's default region, or a platform without regions.
ALTER TABLE apps ADD COLUMN region TEXT;
ALTER TABLE connections ADD COLUMN region TEXT;
