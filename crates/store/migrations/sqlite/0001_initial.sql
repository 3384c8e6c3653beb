-- tokenwarden store schema (SQLite). Times are BIGINT milliseconds since the Unix epoch (UTC).
-- Secret columns (*_ct) hold AES-256-GCM ciphertexts: 0x01 | key id | nonce | ciphertext+tag.
-- Migrations are only ever added to, never edited.

CREATE TABLE store_keys (
    key_id      TEXT PRIMARY KEY,
    check_ct    BLOB NOT NULL,
    encryptions BIGINT NOT NULL DEFAULT 0,
    retired     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE apps (
    row_key          TEXT PRIMARY KEY,
    provider         TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    client_secret_ct BLOB NOT NULL,
    redirect_uri     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (provider, app_id)
);

CREATE TABLE app_problems (
    provider TEXT NOT NULL,
    app_id   TEXT NOT NULL,
    code     TEXT NOT NULL,
    title    TEXT NOT NULL,
    fix      TEXT NOT NULL,
    since    BIGINT NOT NULL,
    PRIMARY KEY (provider, app_id, code)
);

CREATE TABLE connections (
    id              TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    state           TEXT NOT NULL,
    environment     TEXT NOT NULL,
    api_base        TEXT NOT NULL,
    account_ids     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    problems        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_refresh_at BIGINT,
    next_probe_at   BIGINT
);
CREATE INDEX connections_next_refresh ON connections (next_refresh_at);
CREATE INDEX connections_next_probe ON connections (next_probe_at);

CREATE TABLE token_sets (
    connection_id      TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    access_token_ct    BLOB NOT NULL,
    refresh_token_ct   BLOB,
    token_type         TEXT,
    scopes             TEXT NOT NULL,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT,
    refresh_expires_at BIGINT,
    version            BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE pending_authorizations (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    verifier_ct   BLOB,
    scopes        TEXT NOT NULL,
    browser_hash  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX pending_expires ON pending_authorizations (expires_at);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT,
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    details       TEXT NOT NULL
);
CREATE INDEX events_connection ON events (connection_id, id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL,
    role         TEXT NOT NULL,
    label        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret_ct   BLOB NOT NULL,
    enabled     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    payload         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    status          TEXT NOT NULL,
    last_error      TEXT,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON webhook_deliveries (status, next_attempt_at);
