-- Connect sessions: a connect flow starts only from a session someone with authority created
-- (an admin API key, the signed-in dashboard, the sandbox banner). The token in the link is
-- stored hashed and is single use (used_at is set when the browser is sent to the platform).
CREATE TABLE connect_sessions (
    id                   TEXT PRIMARY KEY,
    token_hash           TEXT NOT NULL UNIQUE,
    provider             TEXT NOT NULL,
    connection_id        TEXT NOT NULL,
    app_id               TEXT,
    end_user             TEXT,
    return_to            TEXT,
    scopes               TEXT NOT NULL,
    allow_account_change BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    used_at              BIGINT
);
CREATE INDEX connect_sessions_expires ON connect_sessions (expires_at);

-- The flow remembers the session it came from (its end user, return_to, account-change consent).
ALTER TABLE pending_authorizations ADD COLUMN session_id TEXT;

-- The platform account behind a connection's grant (JSON {"id","name"}), and who it is for.
ALTER TABLE connections ADD COLUMN account TEXT;
ALTER TABLE connections ADD COLUMN end_user TEXT;
