-- A region chosen for one connect flow (Amazon Ads: an EU account connected through an app whose
-- default is NA), carried from the connect link to the callback. NULL: the app's region.
ALTER TABLE connect_sessions ADD COLUMN region TEXT;
ALTER TABLE pending_authorizations ADD COLUMN region TEXT;
