-- State that replicas share so that several act as one (issue 14, item 4). Times are BIGINT
-- milliseconds; those compared across replicas are read on the database's clock.

-- Outgoing-call budget per rate lane (a platform's app, endpoint, account or token limit): the
-- virtual schedule of a GCRA bucket. `next_free` is the earliest slot the next caller may take,
-- `hold_until` a pause the platform asked for (a 429), `factor` the adaptive share of the
-- published rate (cut on a throttle, crept back on success). One conditional update per lane,
-- inside one transaction, books a slot for every replica at once.
CREATE TABLE rate_lanes (
    lane        TEXT PRIMARY KEY,
    interval_ms BIGINT NOT NULL,
    factor      REAL NOT NULL,
    next_free   BIGINT NOT NULL,
    hold_until  BIGINT NOT NULL
);
CREATE INDEX rate_lanes_next_free ON rate_lanes (next_free);

-- Singleton work (alert notifier, retention, crowd planning): whoever holds an unexpired row runs
-- it; a row whose holder stopped renewing it is taken over once it expires.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Alerts already sent, one row per condition and episode, so neither a restart nor a second
-- replica sends one twice.
CREATE TABLE alerts_sent (
    alert_key TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    sent_at   BIGINT NOT NULL
);
CREATE INDEX alerts_sent_at ON alerts_sent (sent_at);

-- Dashboard sessions, keyed by the SHA-256 of the cookie value (the value itself is never stored),
-- so any replica serves any signed-in browser.
CREATE TABLE dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    who        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- Failed dashboard sign-ins per limit key (a client address, or the hash of a presented API key
-- id), so the limit holds whichever replica a guess reaches.
CREATE TABLE signin_failures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    limit_key TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX signin_failures_key ON signin_failures (limit_key, at);
CREATE INDEX signin_failures_at ON signin_failures (at);
