-- The User-Agent an app sends on every call to its platform, token calls included, where the
-- definition sends one (`{user_agent}`: Reddit throttles and blocks by User-Agent). NULL: the
-- default naming tokenwarden and the app's client id.
ALTER TABLE apps ADD COLUMN user_agent TEXT;
