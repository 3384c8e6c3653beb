//! `tokenwarden serve`: the daemon.

use crate::definitions;
use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokenwarden_core::clock::{Clock, ScaledClock};
use tokenwarden_server::daemon::SandboxedDaemon;
use tokenwarden_store::{ApiKeyRole, KeySource, Keyring};

/// Run the daemon: OAuth connect/callback, the token API and the refresh scheduler.
///
/// With --sandbox the platform emulator runs in-process, every platform points at it, and a demo
/// app is registered for each, so everything works without credentials.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TOKENWARDEN_LISTEN")]
    listen: SocketAddr,
    /// Where the embedded database, the master key file and the admin key file live.
    #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://… (default: SQLite in the data directory).
    #[arg(long, env = "TOKENWARDEN_DATABASE_URL")]
    database: Option<String>,
    /// The URL people use to reach this daemon (for callback and re-authorization links).
    #[arg(long, env = "TOKENWARDEN_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Run the platform emulator in-process and point every platform at it.
    #[arg(long)]
    sandbox: bool,
    /// Address of the in-process sandbox.
    #[arg(long, default_value = "127.0.0.1:8181", requires = "sandbox")]
    sandbox_listen: SocketAddr,
    /// Make time run this many times faster (sandbox only), so a one-hour token lives seconds.
    #[arg(long, default_value_t = 1.0, requires = "sandbox")]
    time_scale: f64,
}

fn read_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
    if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
        bail!("--time-scale must be 1 or more");
    }
    if !args.sandbox {
        bail!(
            "this build serves the sandbox platforms only: run `tokenwarden serve --sandbox`. \
             Registering your own apps (client id, secret, redirect URI) for the real platforms arrives with the configuration file."
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, providers_dir))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args, providers_dir: Option<&Path>) -> Result<()> {
    let providers = definitions::load(providers_dir)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let key_file = args.data_dir.join("master.key");
    let (keys, source) = Keyring::from_env_or_file(
        read_env("TOKENWARDEN_MASTER_KEY").as_deref(),
        &key_file,
        true,
    )?;
    match &source {
        KeySource::Created(p) => println!(
            "Created a master key at {} (mode 0600). Keep it: without it the stored tokens cannot be read.",
            p.display()
        ),
        KeySource::File(p) => println!("Master key: {}", p.display()),
        KeySource::Env => println!("Master key: from TOKENWARDEN_MASTER_KEY"),
    }
    let database = args.database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            args.data_dir.join("tokenwarden.db").display()
        )
    });
    let store = tokenwarden_store::open(&database, keys)
        .await
        .context("cannot open the store")?;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(Utc::now(), args.time_scale));

    let admin_key_file = args.data_dir.join("admin.key");
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

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let sandbox_listener = tokio::net::TcpListener::bind(args.sandbox_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the sandbox (use --sandbox-listen)",
                args.sandbox_listen
            )
        })?;
    let owner = format!("{}-{}", hostname(), std::process::id());
    let running = SandboxedDaemon {
        listener,
        sandbox_listener,
        store,
        providers,
        clock,
        time_scale: args.time_scale,
        public_url: args.public_url.clone(),
        owner,
        key_file: (!matches!(source, KeySource::Env)).then(|| key_file.clone()),
    }
    .start()
    .await?;

    let base = &running.base;
    let sandbox = &running.sandbox_base;
    let key = admin_key_file.display();
    println!();
    println!(
        "tokenwarden is serving on {base} (sandbox platforms at {sandbox}, time x{})",
        args.time_scale
    );
    println!();
    println!(
        "1. Connect a sandbox account (open in a browser, press Approve on the sandbox's page):"
    );
    for p in running.state.providers.iter() {
        println!(
            "     {base}connect/{id}?connection_id=demo-{id}",
            id = p.spec.id
        );
    }
    println!("2. Fetch a token that is always fresh:");
    println!(
        "     curl -s -H \"Authorization: Bearer $(cat {key})\" {base}v1/connections/demo-snapchat/token"
    );
    println!("3. See every connection and its state:");
    println!("     curl -s -H \"Authorization: Bearer $(cat {key})\" {base}v1/connections");
    println!("4. Break things on purpose at the sandbox, e.g. an outage or a revoked grant:");
    println!(
        "     curl -s -X POST {sandbox}/_sandbox/faults/snapchat/outage -H 'content-type: application/json' -d '{{\"for\":\"5m\"}}'"
    );
    println!(
        "     curl -s {sandbox}/_sandbox/grants   then   curl -s -X POST {sandbox}/_sandbox/grants/GRANT_ID/revoke"
    );
    println!();
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("Stopping: finishing requests and refreshes in flight…");
    running.stop().await;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tokenwarden".into())
}
