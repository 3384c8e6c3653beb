//! Assembles a running daemon: the server, the scheduler, the monitor, the webhook outbox, the
//! retention pass, the key-file follower and (for `serve --sandbox`) the platform emulator
//! in-process, with every platform pointed at it by one setting and a demo app each.

use crate::ServerState;
use std::sync::Arc;
use tokenwarden_core::clock::Clock;
#[cfg(feature = "sandbox")]
use tokenwarden_core::id::{AppId, ProviderId};
use tokenwarden_core::provider::Registry;
#[cfg(feature = "sandbox")]
use tokenwarden_core::secret::Secret;
use tokenwarden_engine::{CachedStore, TokenService};
use tokenwarden_oauth::OAuthClient;
use tokenwarden_store::{App, Store, StoreError};
use url::Url;

pub use tokenwarden_engine::BodyLimits;
pub use tokenwarden_engine::CacheConfig;

/// What a daemon needs.
#[derive(Debug)]
pub struct Daemon {
    /// Where the API and connect flow listen.
    pub listener: tokio::net::TcpListener,
    /// Where the in-process sandbox listens; `None` for the real platforms.
    pub sandbox_listener: Option<tokio::net::TcpListener>,
    /// Apps to register (from the configuration), in addition to the sandbox's demo apps.
    pub apps: Vec<App>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Provider definitions (they are pointed at the sandbox here).
    pub providers: Registry,
    /// The clock both the daemon and the sandbox read.
    pub clock: Arc<dyn Clock>,
    /// How much faster than real time the clock runs.
    pub time_scale: f64,
    /// The public URL, when it differs from the listener's address.
    pub public_url: Option<Url>,
    /// Names this replica in leases.
    pub owner: String,
    /// The key file to follow for rotations (none when the keys come from the environment).
    pub key_file: Option<std::path::PathBuf>,
    /// How often (real time) the monitor looks for due probes; default 5 s divided by the time scale.
    pub probe_poll: Option<std::time::Duration>,
    /// Where webhooks may be delivered.
    pub webhooks: crate::webhooks::WebhookPolicy,
    /// How long history (events, finished webhook deliveries) is kept.
    pub retention: crate::retention::Retention,
    /// The API-key and token caches in front of the store ([`CacheConfig::default`]: 1 s for
    /// tokens, 5 s for keys; [`CacheConfig::OFF`] reads the store on every call). Everything in
    /// the daemon goes through them, so its own writes invalidate them at once; another replica's
    /// are seen within the TTLs.
    pub cache: CacheConfig,
    /// The largest request and response bodies the forwarding proxy passes
    /// ([`BodyLimits::default`]: 1 GiB each).
    pub proxy_limits: BodyLimits,
    /// Threads that serve HTTP requests, each with its own single-threaded runtime, so a request
    /// never moves between threads (`tokenwarden serve` starts one per core); 0 serves them on
    /// the runtime that starts the daemon, beside the background work.
    pub http_threads: usize,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// IO (binding, addresses).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A URL could not be formed.
    #[error("bad URL: {0}")]
    Url(#[from] url::ParseError),
    /// The in-process sandbox's books could not be read back.
    #[cfg(feature = "sandbox")]
    #[error(transparent)]
    SandboxLedger(#[from] tokenwarden_sandbox::LedgerFileError),
    /// An in-process sandbox was asked for (a `sandbox_listener`) in a build without one.
    #[error(
        "this build has no in-process sandbox: it was built without the cargo feature `sandbox`, which the default build enables"
    )]
    NoSandbox,
}

/// Where an in-process sandbox keeps its books between runs.
#[cfg(feature = "sandbox")]
pub use tokenwarden_sandbox::LedgerFile as SandboxLedger;

/// Where an in-process sandbox keeps its books between runs: in a build without the `sandbox`
/// feature there is no sandbox, and no value of this type.
#[cfg(not(feature = "sandbox"))]
#[derive(Debug)]
pub enum SandboxLedger {}

/// A running daemon.
#[derive(Debug)]
pub struct Running {
    /// The daemon's base URL (ends with `/`).
    pub base: String,
    /// The sandbox's base URL (no trailing `/`), when one runs in-process.
    pub sandbox_base: Option<String>,
    /// The shared state (store, token service, …).
    pub state: ServerState,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The in-process sandbox: stopped after everything else (see [`Running::stop`]).
    sandbox: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
    /// The HTTP serving threads: what requests opened on them (pooled outbound connections,
    /// database connections) lives there, so they end last (see [`Running::stop`]).
    shards: Option<tokenwarden_http::Shards>,
}

impl Running {
    /// A receiver that changes when the daemon is told to stop, for tasks started beside it.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// A task started beside the daemon (e.g. the alert notifier); [`Running::stop`] waits for it.
    pub fn adopt(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Stops accepting, finishes requests and refreshes in flight, and waits for everything.
    /// The in-process sandbox stands for the platforms, which do not stop when tokenwarden does:
    /// it stops last, so a refresh in flight when the stop came (one that has taken its lease but
    /// not yet connected) still reaches it and its answer is stored.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some((stop, task)) = self.sandbox {
            let _ = stop.send(true);
            let _ = task.await;
        }
        drop(self.shards);
    }
}

fn with_slash(u: &Url) -> String {
    let s = u.to_string();
    if s.ends_with('/') { s } else { format!("{s}/") }
}

impl Daemon {
    /// Starts everything; an in-process sandbox forgets its grants and tokens when it stops.
    pub async fn start(self) -> Result<Running, StartError> {
        self.start_with_sandbox_ledger(None).await
    }

    /// Starts everything; an in-process sandbox restores its books from `ledger` and keeps them
    /// there, so the connections made through it still refresh after a restart (`serve
    /// --sandbox` passes a file in its data directory). Ignored without a sandbox.
    pub async fn start_with_sandbox_ledger(
        self,
        ledger: Option<SandboxLedger>,
    ) -> Result<Running, StartError> {
        let addr = self.listener.local_addr()?;
        let public_url = match self.public_url {
            Some(u) => u,
            None => Url::parse(&format!("http://{addr}"))?,
        };
        let base = with_slash(&public_url);
        #[cfg_attr(not(feature = "sandbox"), allow(unused_mut))]
        let mut registry = self.providers;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.changed().await;
        };
        let mut tasks = Vec::new();
        // From here on every reader and writer in the daemon shares the one cached view.
        let cached = CachedStore::new(self.store, self.clock.clone(), self.cache);
        let store: Arc<dyn Store> = cached.clone();
        #[cfg_attr(not(feature = "sandbox"), allow(unused_mut))]
        let mut sandbox_base = None;
        #[cfg_attr(not(feature = "sandbox"), allow(unused_mut))]
        let mut sandbox_task = None;
        #[cfg(not(feature = "sandbox"))]
        if self.sandbox_listener.is_some() || ledger.is_some() {
            return Err(StartError::NoSandbox);
        }
        #[cfg(feature = "sandbox")]
        if let Some(sandbox_listener) = self.sandbox_listener {
            let ids: Vec<String> = registry.iter().map(|p| p.spec.id.to_string()).collect();
            let now = self.clock.now();
            let sb_base = format!("http://{}", sandbox_listener.local_addr()?);
            let mut config = tokenwarden_sandbox::SandboxConfig {
                time_scale: self.time_scale,
                demo_redirect_uris: ids
                    .iter()
                    .map(|id| format!("{base}callback/{id}"))
                    .collect(),
                ..Default::default()
            };
            // Each demo app (the daemon's app `demo`) calls back here when a user removes it,
            // where the definition says the platform has such a callback: so a grant revoked at
            // the sandbox turns its connection `reauth_required` at once.
            for app in &mut config.apps {
                let id = app.provider.id();
                let calls_back = registry
                    .get(id)
                    .is_some_and(|p| p.spec.callbacks.deauthorize.is_some());
                if calls_back
                    && app.client_id == format!("demo-{id}")
                    && app.provider.deauthorize_callback().is_some()
                {
                    app.deauthorize_url = Some(format!("{base}callbacks/{id}/demo/deauthorize"));
                }
            }
            let sandbox = match ledger {
                None => tokenwarden_sandbox::Sandbox::new(config, self.clock.clone()),
                Some(file) => {
                    let path = file.path().to_path_buf();
                    let (sandbox, resumed) = tokenwarden_sandbox::Sandbox::with_ledger_file(
                        config,
                        self.clock.clone(),
                        file,
                    )?;
                    match resumed {
                        tokenwarden_sandbox::Resumed::Fresh => tracing::info!(
                            path = %path.display(),
                            "the sandbox starts with empty books and keeps them in this file"
                        ),
                        tokenwarden_sandbox::Resumed::Restored {
                            grants,
                            access_tokens,
                            refresh_tokens,
                        } => tracing::info!(
                            path = %path.display(),
                            grants,
                            access_tokens,
                            refresh_tokens,
                            "the sandbox resumed its grants and tokens"
                        ),
                    }
                    sandbox
                }
            };
            let (sandbox_stop, sandbox_stop_rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn({
                let stopped = until_stopped(sandbox_stop_rx);
                async move {
                    if let Err(e) = sandbox.serve(sandbox_listener, stopped).await {
                        tracing::error!(error = %e, "the sandbox stopped");
                    }
                }
            });
            sandbox_task = Some((sandbox_stop, task));
            for id in &ids {
                let Some(p) = registry.get(id) else { continue };
                let moved = p.with_origin(&Url::parse(&format!("{sb_base}/{id}"))?);
                registry.replace(moved);
                let (Ok(provider), Ok(app_id)) =
                    (ProviderId::parse(id.as_str()), AppId::parse("demo"))
                else {
                    continue;
                };
                let app = App {
                    provider,
                    id: app_id,
                    client_id: format!("demo-{id}"),
                    client_secret: Secret::new(format!("demo-{id}-secret")),
                    redirect_uri: format!("{base}callback/{id}"),
                    // The sandbox's own developer token for platforms that need one.
                    developer_token: tokenwarden_sandbox::demo_developer_token(id.as_str())
                        .map(Secret::new),
                    environment: tokenwarden_core::connection::Environment::Production,
                    region: None,
                    user_agent: None,
                    refresh_token_ends_after: None,
                    identity: None,
                    created_at: now,
                    updated_at: now,
                };
                store.put_app(&app).await?;
            }
            sandbox_base = Some(sb_base);
        }
        for app in &self.apps {
            store.put_app(app).await?;
        }
        let providers = Arc::new(registry);
        let oauth = OAuthClient::new(self.clock.clone())
            .map_err(|e| StartError::Client(e.without_url().to_string()))?;
        let tokens = Arc::new(
            TokenService::new(
                store.clone(),
                oauth.clone(),
                providers.clone(),
                self.clock.clone(),
                self.owner.clone(),
            )
            .with_cache(cached),
        );
        let engine = Arc::new(tokenwarden_engine::Engine::new(
            store.clone(),
            tokens.clone(),
            providers.clone(),
            self.clock.clone(),
            tokenwarden_engine::EngineConfig {
                time_scale: self.time_scale,
                // Replicas share PostgreSQL and must share the platforms' limits; one process
                // owns a SQLite database (the data directory's lock), so memory is the whole
                // truth there and costs no write per call.
                shared_rate_budget: store.backend() == tokenwarden_store::Backend::Postgres,
                ..Default::default()
            }
            .with_limits(self.proxy_limits),
        ));
        let proxy = tokenwarden_proxy::Proxy::new(engine, public_url.clone())
            .map_err(|e| StartError::Client(e.to_string()))?;
        let state = ServerState::new(crate::Shared {
            store,
            tokens,
            oauth,
            providers,
            clock: self.clock,
            public_url,
            wake: Arc::new(tokio::sync::Notify::new()),
            webhooks: self.webhooks,
            dashboard: Arc::new(crate::dashboard::Dashboard::default()),
            limits: Arc::default(),
            proxy: Arc::new(proxy),
            connect: Arc::new(crate::connect_session::ConnectPolicy::default()),
            callbacks: Arc::default(),
        });
        state.dashboard.set_time_scale(self.time_scale);
        crate::metrics::install();
        if let Some(path) = self.key_file {
            tasks.push(tokio::spawn(crate::keyfile::watch(
                state.store.clone(),
                path,
                stop_rx.clone(),
            )));
        }
        let scheduler = tokio::spawn(crate::scheduler::run(
            state.clone(),
            self.owner,
            self.time_scale,
            stop_rx.clone(),
        ));
        // The monitor looks for due probes every few seconds of real time (less with a scaled clock).
        let poll = self.probe_poll.unwrap_or_else(|| {
            std::time::Duration::from_secs(5)
                .div_f64(self.time_scale.max(1.0))
                .max(std::time::Duration::from_millis(50))
        });
        tasks.push(tokio::spawn(crate::monitor::run(
            state.clone(),
            poll,
            stop_rx.clone(),
        )));
        // Deliveries are looked for every second of real time (less with a scaled clock).
        let webhook_poll = std::time::Duration::from_secs(1)
            .div_f64(self.time_scale.max(1.0))
            .max(std::time::Duration::from_millis(50));
        tasks.push(tokio::spawn(crate::webhooks::run(
            state.clone(),
            webhook_poll,
            stop_rx.clone(),
        )));
        // Replicas on one database follow each other's pauses (an app's exhausted quota) about
        // every second of real time, so the others wait without each spending a call to learn it.
        if state.proxy.engine().config().shared_rate_budget {
            let engine = state.proxy.engine().clone();
            let every = std::time::Duration::from_secs(1)
                .div_f64(self.time_scale.max(1.0))
                .max(std::time::Duration::from_millis(50));
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    engine.shaper().follow_holds().await;
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }));
        }
        // Old history is deleted at start and then hourly in the clock's time.
        tasks.push(tokio::spawn(crate::retention::run(
            state.clone(),
            self.retention,
            self.time_scale,
            stop_rx.clone(),
        )));
        let router = crate::routes(state.clone());
        let shards = match self.http_threads {
            0 => None,
            n => Some(tokenwarden_http::Shards::start(n)?),
        };
        let server_task = tokio::spawn({
            let stopped = until_stopped(stop_rx.clone());
            let listener = self.listener;
            let limits = tokenwarden_http::Limits::default();
            let shards = shards.as_ref().map(|s| s.handles().to_vec());
            async move {
                let served = match shards {
                    None => tokenwarden_http::serve(listener, router, limits, stopped).await,
                    Some(shards) => {
                        tokenwarden_http::serve_sharded(listener, router, limits, stopped, &shards)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "the server stopped");
                }
            }
        });
        tasks.extend([server_task, scheduler]);
        Ok(Running {
            base,
            sandbox_base,
            state,
            stop,
            tasks,
            sandbox: sandbox_task,
            shards,
        })
    }
}
