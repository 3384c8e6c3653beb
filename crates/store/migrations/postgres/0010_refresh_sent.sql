-- Who sent a refresh for the current token version, and when (by the database's clock), written
-- before a rotating refresh token is spent and cleared by the commit or the recorded refusal
-- (issue 14). A replica that takes a lapsed lease and finds another holder's send unresolved
-- knows that holder may still be holding the platform's only answer (a paused process): it waits
-- for it before spending the same refresh token again, which a platform with no reuse grace
-- punishes by revoking the grant.
ALTER TABLE token_sets ADD COLUMN refresh_sent_by TEXT;
ALTER TABLE token_sets ADD COLUMN refresh_sent_at BIGINT;
