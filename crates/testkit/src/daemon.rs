//! The daemon on loopback for integration tests: a fresh SQLite database in a temporary
//! directory, an admin and a token-reader API key, the in-process sandbox, port 0 of
//! `127.0.0.1` for both. The server's tests run it on a fake clock; the proxy's and the client's
//! on a scaled one (the sandbox's rate windows need time to move). Each test crate wraps the
//! [`Started`] in its own `World` of helpers.

use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::provider::Registry;
use tokenwarden_server::daemon::{Daemon, Running};
use tokenwarden_store::sql::SqlStore;
use tokenwarden_store::{ApiKeyRole, Keyring, Store};

/// How the daemon is started.
#[derive(Debug)]
pub struct Setup {
    /// The clock the daemon and the sandbox read.
    pub clock: Arc<dyn Clock>,
    /// How much faster than real time `clock` runs (1.0 for a fake clock).
    pub time_scale: f64,
    /// Provider definitions (pointed at the sandbox by the daemon).
    pub providers: Registry,
    /// The public URL, when it differs from the listener's address.
    pub public_url: Option<url::Url>,
    /// How often (real time) the health monitor looks for due probes.
    pub probe_poll: Duration,
    /// Whether webhooks may go to private addresses (the tests' receivers are on loopback).
    pub allow_private_webhooks: bool,
}

impl Setup {
    /// The built-in definitions, no public URL, a monitor that looks once an hour, webhooks to
    /// public addresses only.
    pub fn new(clock: Arc<dyn Clock>, time_scale: f64) -> Setup {
        Setup {
            clock,
            time_scale,
            providers: Registry::builtin().expect("the built-in definitions load"),
            public_url: None,
            probe_poll: Duration::from_secs(3600),
            allow_private_webhooks: false,
        }
    }
}

/// A running daemon and what a test needs beside it. Its `Debug` leaves the API keys out.
pub struct Started {
    /// The daemon.
    pub d: Running,
    /// Where it listens (differs from `d.base` when a public URL is set).
    pub addr: std::net::SocketAddr,
    /// An admin API key.
    pub admin: String,
    /// A token-reader API key.
    pub reader: String,
    /// The database's URL and keys, for a second handle on it (another replica's view).
    pub db_url: String,
    /// The keys the store encrypts with.
    pub keys: Keyring,
    /// The daemon's own store (its pool), to make the database misbehave.
    pub raw: Arc<SqlStore>,
    /// The temporary directory holding the database: removed when dropped.
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("base", &self.d.base)
            .field("addr", &self.addr)
            .field("db_url", &self.db_url)
            .finish_non_exhaustive()
    }
}

/// Starts the daemon as `setup` says.
pub async fn start(setup: Setup) -> Started {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let keys = Keyring::generate("k1").expect("a generated keyring");
    let raw = Arc::new(
        SqlStore::open(&db_url, keys.clone())
            .await
            .expect("the test database opens"),
    );
    let store: Arc<dyn Store> = raw.clone();
    let now = setup.clock.now();
    let (_, admin) = store
        .create_api_key(ApiKeyRole::Admin, "test", now)
        .await
        .expect("an admin key");
    let (_, reader) = store
        .create_api_key(ApiKeyRole::TokenReader, "test", now)
        .await
        .expect("a reader key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    let d = Daemon {
        listener,
        sandbox_listener: Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port for the sandbox"),
        ),
        apps: vec![],
        store,
        providers: setup.providers,
        clock: setup.clock,
        time_scale: setup.time_scale,
        public_url: setup.public_url,
        owner: "test-replica".into(),
        key_file: None,
        probe_poll: Some(setup.probe_poll),
        webhooks: tokenwarden_server::webhooks::WebhookPolicy {
            allow_private: setup.allow_private_webhooks,
        },
        retention: tokenwarden_server::retention::Retention::default(),
        cache: Default::default(),
        proxy_limits: Default::default(),
        // Served as `tokenwarden serve` serves (two threads of their own), so every test through
        // the testkit runs requests the way production does.
        http_threads: 2,
    }
    .start()
    .await
    .expect("the daemon starts");
    Started {
        d,
        addr,
        admin: admin.expose().to_string(),
        reader: reader.expose().to_string(),
        db_url,
        keys,
        raw,
        dir,
    }
}
