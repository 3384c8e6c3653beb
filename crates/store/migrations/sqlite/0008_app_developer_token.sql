-- An app's developer token (Microsoft Advertising `DeveloperToken`, Google Ads' optional
-- `developer-token`), sealed like the client secret; NULL when the app has none. It is sent in the
-- headers a definition's `[[api.headers]]` name with `{developer_token}` and never shown.
ALTER TABLE apps ADD COLUMN developer_token_ct BLOB;
