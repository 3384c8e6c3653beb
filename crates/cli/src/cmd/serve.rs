//! `tokenwarden serve`: the daemon.

use crate::data_dir;
use crate::definitions;
use crate::settings::{self, Settings};
use anyhow::{Context as _, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokenwarden_core::clock::{Clock, ScaledClock, SystemClock};
use tokenwarden_core::id::{AppId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_server::alerts;
use tokenwarden_server::daemon::Daemon;
use tokenwarden_store::{ApiKeyRole, App, KeySource, Keyring, StoreError};

/// Run the daemon: OAuth connect/callback, the token API and the refresh scheduler.
///
/// With --sandbox the platform emulator runs in-process, every platform points at it, and a demo
/// app is registered for each, so everything works without credentials. For the real platforms,
/// register your apps in a configuration file (`tokenwarden config example`).
#[derive(Debug, clap::Args)]
#[command(after_help = RETENTION_HELP)]
pub struct Args {
    /// A configuration file (TOML). Flags and TOKENWARDEN_* variables override it.
    #[arg(long, env = "TOKENWARDEN_CONFIG", value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TOKENWARDEN_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Where the embedded database, the master key file and the admin key file live
    /// [default: tokenwarden-data].
    #[arg(long, env = "TOKENWARDEN_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… [default: SQLite in the data directory].
    #[arg(long, env = "TOKENWARDEN_DATABASE_URL")]
    pub(crate) database: Option<String>,
    /// The URL people use to reach this daemon (for callback and re-authorization links).
    #[arg(long, env = "TOKENWARDEN_PUBLIC_URL")]
    pub(crate) public_url: Option<url::Url>,
    /// Run the platform emulator in-process and point every platform at it.
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Address of the in-process sandbox.
    #[arg(long, default_value = "127.0.0.1:8181", requires = "sandbox")]
    pub(crate) sandbox_listen: SocketAddr,
    /// Make time run this many times faster (sandbox only), so a one-hour token lives seconds.
    #[arg(long, default_value_t = 1.0, requires = "sandbox")]
    pub(crate) time_scale: f64,
    /// Log lines on stderr: readable text, or one JSON object per line for a log collector.
    /// The level is set with TOKENWARDEN_LOG or RUST_LOG (e.g. `info`, `tokenwarden_engine=debug`).
    #[arg(long, env = "TOKENWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Start even when the master key file can be read by group or others (logs a warning).
    #[arg(long, env = "TOKENWARDEN_ALLOW_INSECURE_KEY_FILE")]
    pub(crate) allow_insecure_key_file: bool,
    /// On Ctrl-C or SIGTERM, how many seconds to wait for requests and refreshes in flight
    /// before giving up (a refresh answer already received is stored first).
    #[arg(long, env = "TOKENWARDEN_DRAIN_TIMEOUT", default_value_t = 30)]
    pub(crate) drain_timeout: u64,
    /// Threads that serve HTTP requests, each with its own event loop, so a request stays on
    /// one thread from start to finish [default: one per CPU core]. 0 serves them on the
    /// shared worker threads, beside the scheduler and the monitor. At most 256.
    #[arg(
        long,
        env = "TOKENWARDEN_HTTP_THREADS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(0..=256)
    )]
    pub(crate) http_threads: Option<u16>,
}

/// What `serve --help` says about retention (the daemon deletes history; people should know).
const RETENTION_HELP: &str = "History is deleted once old, at start and then hourly: events after 30 days, finished webhook \
deliveries after 14 (a delivery still being retried never), expired authorizations at once. Set it \
with [retention] in the configuration file (`tokenwarden config example`), or with \
TOKENWARDEN_RETENTION_EVENTS and TOKENWARDEN_RETENTION_DELIVERIES, e.g. \"90d\", or \"off\" to keep forever.

The proxy passes request and response bodies up to 1GiB each: set them with [proxy] max_request_bytes and \
max_response_bytes, or TOKENWARDEN_PROXY_MAX_REQUEST_BYTES and TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES, e.g. \"64MiB\". \
Provider definitions must use https endpoints; allow plain http (a test server, an emulator) with \
allow_insecure_endpoints = true or TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS=true.";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (coloured on a terminal unless NO_COLOR is set).
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's log subscriber: one line per event on stderr.
fn init_logs(format: LogFormat, spec: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    const DEFAULT: &str = "info,sqlx=warn,hyper=warn";
    let spec = spec.map_or_else(|| DEFAULT.to_string(), str::to_string);
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("the log filter {spec:?} does not parse ({e}); using {DEFAULT:?}");
        EnvFilter::new(DEFAULT)
    });
    // `debug` means tokenwarden's debug lines, not one line per SQL query (sqlx logs every
    // statement at debug): the driver and the HTTP stack stay at warn unless the filter names them.
    let filter = [("sqlx", "sqlx=warn"), ("hyper", "hyper=warn")]
        .into_iter()
        .filter(|(target, _)| !spec.contains(target))
        .fold(filter, |f, (_, directive)| {
            f.add_directive(directive.parse().expect("a valid directive"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("logging is not set up: {e}");
    }
}

/// Writes a secret file readable only by its owner.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Runs the command.
pub fn run(args: Args, providers_dir: Option<&Path>) -> Result<ExitCode> {
    if args.sandbox && !cfg!(feature = "sandbox") {
        bail!(
            "--sandbox runs the platform emulator in-process, and this build of tokenwarden leaves it out (built without the cargo feature `sandbox`); build with the default features (cargo build --release) to use it"
        );
    }
    let settings = Settings::load(&args, providers_dir)?;
    init_logs(settings.log.0, settings.log.1.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> Result<()> {
    let providers =
        definitions::load_allowing(settings.providers_dir.as_deref(), settings.endpoints)?;
    let data_dir = settings.data_dir.clone();
    let database = settings.database.clone();
    let time_scale = settings.time_scale();
    data_dir::create_private(&data_dir)?;
    let database = database.unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("tokenwarden.db").display()
        )
    });
    let sqlite = data_dir::sqlite_file(&database);
    // One daemon per SQLite database: two would each run a scheduler over the same rows. Held
    // until `serve` returns; the kernel drops it if the process dies.
    let _lock = match &sqlite {
        Some(_) => Some(data_dir::lock(&data_dir)?),
        None => None,
    };
    if let Some(db) = &sqlite {
        data_dir::prepare_sqlite(db)?;
    }
    let key_file = data_dir.join("master.key");
    let (store, source) = open_store(
        &database,
        &key_file,
        settings.master_key.as_ref().map(Secret::expose),
        settings.allow_insecure_key_file,
    )
    .await?;
    if let Some(db) = &sqlite {
        data_dir::keep_sqlite_private(db)?;
    }
    store.set_key_loader(key_loader(&source));
    match &source {
        KeySource::Created(p) => println!(
            "Created a master key at {} (mode 0600). Keep it: without it the stored tokens cannot be read.",
            p.display()
        ),
        KeySource::File(p) => println!("Master key: {}", p.display()),
        KeySource::Env => println!("Master key: from {}", settings::MASTER_KEY_ENV),
    }
    // The in-process sandbox keeps its books in the data directory, so a restart leaves the
    // connections made through it working (issue 15, item 3).
    #[cfg(feature = "sandbox")]
    let (sandbox_ledger, saved_at) = {
        let ledger = if settings.sandbox.is_some() {
            Some(tokenwarden_sandbox::LedgerFile::open(
                data_dir.join(data_dir::SANDBOX_LEDGER_FILE),
            )?)
        } else {
            None
        };
        let saved_at = ledger.as_ref().and_then(|l| l.saved_at());
        (ledger, saved_at)
    };
    #[cfg(not(feature = "sandbox"))]
    let (sandbox_ledger, saved_at): (_, Option<chrono::DateTime<chrono::Utc>>) = (None, None);
    // A scaled clock resumes where the sandbox's last run left it: started from the wall clock
    // again, it would put every token issued in that run in the future.
    let start = saved_at.map_or_else(|| SystemClock.now(), |saved| saved.max(SystemClock.now()));
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(start, time_scale));

    let admin_key_file = data_dir.join("admin.key");
    let live_keys = store
        .list_api_keys()
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .count();
    if live_keys == 0 || !admin_key_file.exists() {
        let (_, key) = store
            .create_api_key(ApiKeyRole::Admin, "created by serve", clock.now())
            .await?;
        write_private(&admin_key_file, key.expose())?;
        println!(
            "Created an admin API key in {} (mode 0600).",
            admin_key_file.display()
        );
    }

    let listen = settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let public_url = settings.public_url.clone();
    let effective_public = match &public_url {
        Some(u) => u.clone(),
        None => url::Url::parse(&format!("http://{}", listener.local_addr()?))?,
    };
    let now = clock.now();
    let apps: Vec<App> = settings
        .apps(&providers, &effective_public)?
        .into_iter()
        .map(|a| -> Result<App> {
            Ok(App {
                provider: ProviderId::parse(a.provider.as_str())?,
                id: AppId::parse(a.id.as_str())?,
                client_id: a.client_id,
                client_secret: a.client_secret,
                redirect_uri: a.redirect_uri,
                developer_token: a.developer_token,
                environment: a.environment,
                region: a.region,
                user_agent: a.user_agent,
                refresh_token_ends_after: a.refresh_token_ends_after,
                identity: a.identity,
                created_at: now,
                updated_at: now,
            })
        })
        .collect::<Result<_>>()?;
    if apps.is_empty() && settings.sandbox.is_none() {
        println!(
            "No apps are configured, so nothing can be connected yet: add [[apps]] to a configuration file (`tokenwarden config example`) and pass --config, or run with --sandbox."
        );
    }
    let sandbox_listener = match settings.sandbox {
        Some(sandbox) => Some(
            tokio::net::TcpListener::bind(sandbox.listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} for the sandbox (use --sandbox-listen)",
                        sandbox.listen
                    )
                })?,
        ),
        None => None,
    };
    let owner = format!("{}-{}", hostname(), std::process::id());
    let mut running = Daemon {
        listener,
        sandbox_listener,
        apps,
        store,
        providers,
        clock,
        time_scale,
        public_url,
        owner,
        key_file: (!matches!(source, KeySource::Env)).then(|| key_file.clone()),
        probe_poll: None,
        webhooks: settings.webhooks,
        retention: settings.retention,
        cache: settings.cache,
        proxy_limits: settings.proxy_limits,
        http_threads: settings.http_threads,
    }
    .start_with_sandbox_ledger(sandbox_ledger)
    .await?;
    running
        .state
        .dashboard
        .set_idle_timeout(settings.idle_timeout);
    running
        .state
        .limits
        .set_trusted_proxies(settings.trusted_proxies);
    running
        .state
        .dashboard
        .set_password(settings.dashboard_password.as_ref().map(Secret::expose));
    running.state.connect.allow_return_to(&settings.return_to);
    let alerting = settings.alerts.is_some();
    if let Some((notifier, when)) = settings.alerts {
        let task = tokio::spawn(alerts::run(
            running.state.clone(),
            notifier,
            when,
            running.stopping(),
        ));
        running.adopt(task);
    }

    let base = &running.base;
    let key = admin_key_file.display();
    println!();
    match &running.sandbox_base {
        Some(sandbox) => println!(
            "tokenwarden is serving on {base} (sandbox platforms at {sandbox}, time x{})",
            time_scale
        ),
        None => println!("tokenwarden is serving on {base}"),
    }
    println!();
    let apps = running.state.store.list_apps(None).await?;
    println!(
        "1. Connect an account (open in a browser{}):",
        if running.sandbox_base.is_some() {
            ", press Approve on the sandbox's page"
        } else {
            ""
        }
    );
    // Each line is a connect session's single-use link, minted now for the person at this
    // terminal (the longest lifetime a session may have).
    for app in apps
        .iter()
        .filter(|a| running.sandbox_base.is_some() || a.id.as_str() != "demo")
    {
        let req = tokenwarden_server::connect_session::SessionRequest {
            provider: app.provider.to_string(),
            connection_id: Some(format!("{}-1", app.provider)),
            app: Some(app.id.to_string()),
            expires_in: Some(tokenwarden_server::connect_session::MAX_LIFETIME.num_seconds()),
            ..Default::default()
        };
        match tokenwarden_server::connect_session::mint(&running.state, req, "banner").await {
            Ok(m) => println!("     {}  ({} {})", m.url, app.provider, app.id),
            Err(e) => println!(
                "     ({} {}: no link: {})",
                app.provider,
                app.id,
                e.message()
            ),
        }
    }
    // The shell commands below reach this daemon as printed: `--url` when it is not where the
    // commands look by default.
    let target = if base.trim_end_matches('/') == super::remote::DEFAULT_URL {
        format!("--data-dir {}", data_dir.display())
    } else {
        format!(
            "--url {} --data-dir {}",
            base.trim_end_matches('/'),
            data_dir.display()
        )
    };
    println!("   Each link works once; more with `tokenwarden connect PROVIDER {target}`.");
    println!("2. Fetch a token that is always fresh:");
    println!(
        "     curl -s -H \"Authorization: Bearer $(cat {key})\" {base}v1/connections/CONNECTION_ID/token"
    );
    println!("3. See every connection and its state:  tokenwarden connections {target}");
    if let Some(sandbox) = &running.sandbox_base {
        println!("4. Break things on purpose at the sandbox, e.g. an outage or a revoked grant:");
        println!(
            "     curl -s -X POST {sandbox}/_sandbox/faults/snapchat/outage -H 'content-type: application/json' -d '{{\"for\":\"5m\"}}'"
        );
        println!(
            "     curl -s {sandbox}/_sandbox/grants   then   curl -s -X POST {sandbox}/_sandbox/grants/GRANT_ID/revoke"
        );
    }
    println!(
        "Dashboard: {base} (sign in with the key in {key}{}); metrics: {base}metrics (any API key).",
        if settings.dashboard_password.is_some() {
            " or the dashboard password"
        } else {
            ""
        }
    );
    if alerting {
        println!("Alerts go to the configured Slack-compatible webhook.");
    }
    println!();
    println!("Press Ctrl-C to stop (SIGTERM stops it the same way).");

    let signal = stop_signal().await?;
    println!("Stopping ({signal}): finishing requests and refreshes in flight…");
    tracing::info!(
        signal,
        "stopping: finishing requests and refreshes in flight"
    );
    let drain = settings.drain_timeout;
    if tokio::time::timeout(drain, running.stop()).await.is_err() {
        bail!(
            "gave up after {} s of waiting for requests and refreshes in flight (--drain-timeout)",
            drain.as_secs()
        );
    }
    println!("Stopped.");
    Ok(())
}

/// Ctrl-C (SIGINT), or SIGTERM: what systemd, Docker and Kubernetes send to stop a service. Both
/// stop the daemon the same way: no new requests, those in flight and refreshes finish.
async fn stop_signal() -> Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("cannot wait for Ctrl-C")?;
                Ok("SIGINT")
            }
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}

/// Loads the master key and opens the store with it. A key is made only for a database that has
/// none: the new key opens the store first, and is written to `key_file` only once the database
/// has accepted it, so a database written under a lost key is never given a useless new one.
async fn open_store(
    database: &str,
    key_file: &Path,
    env_key: Option<&str>,
    allow_insecure_key_file: bool,
) -> Result<(Arc<dyn tokenwarden_store::Store>, KeySource)> {
    let open = |keys: Keyring| async move {
        tokenwarden_store::open(database, keys)
            .await
            .context("cannot open the store")
    };
    if let Some(env) = env_key {
        tracing::warn!(
            "the master key comes from the environment (TOKENWARDEN_MASTER_KEY), where other processes of this user, crash reports and shell history can see it; prefer a key file of mode 0600"
        );
        let (keys, source) = Keyring::from_env_or_file(Some(env), key_file, false)?;
        return Ok((open(keys).await?, source));
    }
    if key_file.exists() {
        data_dir::check_key_file(key_file, allow_insecure_key_file)?;
        let (keys, source) = Keyring::from_env_or_file(None, key_file, false)?;
        return Ok((open(keys).await?, source));
    }
    let keys = Keyring::generate(&tokenwarden_store::crypto::new_key_id())?;
    let store = match tokenwarden_store::open(database, keys.clone()).await {
        Ok(store) => store,
        // The fresh key is unknown to the database only if the database already holds secrets
        // under a key of its own (checked before anything is written).
        Err(StoreError::Crypto(_)) => bail!(
            "no master key: {} does not exist and TOKENWARDEN_MASTER_KEY is not set, but the database already holds secrets made with another key. \
Refusing to start rather than make a new key that cannot read them: put the original key file back at {}, or set TOKENWARDEN_MASTER_KEY to its contents",
            key_file.display(),
            key_file.display()
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("cannot open the store")),
    };
    data_dir::write_new_key(&keys, key_file)?;
    Ok((store, KeySource::Created(key_file.to_path_buf())))
}

/// Where this replica's keys come from, for a reload when a value names a key id it lacks
/// (another replica rotated) and for the message when the key is still missing.
fn key_loader(source: &KeySource) -> tokenwarden_store::KeyLoader {
    match source {
        KeySource::File(path) | KeySource::Created(path) => {
            let path = path.clone();
            tokenwarden_store::KeyLoader {
                source: format!("the key file {}", path.display()),
                load: Some(Arc::new(move || {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    Keyring::parse(&text).map_err(|e| e.to_string())
                })),
            }
        }
        KeySource::Env => tokenwarden_store::KeyLoader {
            source: "the TOKENWARDEN_MASTER_KEY environment variable, read once at start (set it to the key file's text with the new key and restart)".into(),
            load: None,
        },
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tokenwarden".into())
}
