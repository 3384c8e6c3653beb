-- OAuth 1.0a (X Ads API): the token secret that signs every request with the app's consumer
-- secret (oauth_token_secret), sealed like the access and refresh tokens (its own place in the
-- AEAD's associated data); NULL for OAuth 2.0 connections. Never sent, logged or shown.
ALTER TABLE token_sets ADD COLUMN token_secret_ct BLOB;
