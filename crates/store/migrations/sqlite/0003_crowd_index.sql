-- The scheduler looks at one provider's upcoming refresh deadlines, earliest first, to see a
-- crowd coming and start it early enough (`policy::crowd_start`).
CREATE INDEX connections_provider_next_refresh ON connections (provider, next_refresh_at);
