-- Which platform environment an app's tokens belong to (TikTok API for Business sandbox
-- advertisers get tokens that only work on the sandbox host). Existing apps are production.
ALTER TABLE apps ADD COLUMN environment TEXT NOT NULL DEFAULT 'production';
