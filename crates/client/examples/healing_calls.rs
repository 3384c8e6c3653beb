//! Calls a platform API for one connection from a Rust program, through the healing middleware,
//! sharing the store (and so the tokens and refresh leases) of a `tokenwarden serve` daemon.
//!
//! ```sh
//! # terminal 1: the daemon with the sandbox; connect a Snapchat connection with its link
//! cargo run --release -- serve --sandbox
//! # terminal 2: three calls, printing what the middleware did
//! cargo run -p tokenwarden-client --example healing_calls -- \
//!     --data-dir tokenwarden-data --sandbox http://127.0.0.1:8181 \
//!     --connection <id> /me /me /me
//! # break the token or throttle in between and watch the calls heal:
//! curl -s -X POST http://127.0.0.1:8181/_sandbox/faults/snapchat/throttle -d '{"next":2}' \
//!     -H 'content-type: application/json'
//! ```
//!
//! `--database URL` overrides the data directory's SQLite file; the master key comes from
//! `TOKENWARDEN_MASTER_KEY` or `<data-dir>/master.key`, as for the daemon. Without `--sandbox` the
//! providers' real API hosts are used.

use std::path::PathBuf;
use std::sync::Arc;
use tokenwarden_client::{EngineConfig, ForConnection, Healing, Report};
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Registry;
use tokenwarden_store::Keyring;

#[derive(Default)]
struct Args {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    sandbox: Option<String>,
    connection: Option<String>,
    paths: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--data-dir" => a.data_dir = Some(value("--data-dir")?.into()),
            "--database" => a.database = Some(value("--database")?),
            "--sandbox" => a.sandbox = Some(value("--sandbox")?),
            "--connection" => a.connection = Some(value("--connection")?),
            p if p.starts_with('/') => a.paths.push(p.to_string()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().map_err(|e| {
        format!("{e}\nusage: healing_calls [--data-dir DIR] [--database URL] [--sandbox URL] --connection ID /path...")
    })?;
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from("tokenwarden-data"));
    let database = a.database.unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rw",
            data_dir.join("tokenwarden.db").display()
        )
    });
    let (keys, _) = Keyring::from_env_or_file(
        std::env::var("TOKENWARDEN_MASTER_KEY").ok().as_deref(),
        &data_dir.join("master.key"),
        false,
    )?;
    let store = tokenwarden_store::open(&database, keys).await?;
    let mut registry = Registry::builtin()?;
    if let Some(sb) = &a.sandbox {
        // Point every platform at the sandbox, as `serve --sandbox` does.
        let ids: Vec<String> = registry.iter().map(|p| p.spec.id.to_string()).collect();
        for id in ids {
            if let Some(p) = registry.get(&id) {
                let moved = p.with_origin(&url::Url::parse(&format!(
                    "{}/{id}",
                    sb.trim_end_matches('/')
                ))?);
                registry.replace(moved);
            }
        }
    }
    let connection = ConnectionId::parse(a.connection.ok_or("--connection is required")?)?;
    let conn = store
        .get_connection(&connection)
        .await?
        .ok_or("no such connection")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = Healing::embedded(
        store,
        Arc::new(registry),
        clock,
        &format!("example-{}", std::process::id()),
        EngineConfig::default(),
    )?
    .client(tokenwarden_client::http_client()?);
    let paths = if a.paths.is_empty() {
        vec!["/me".to_string()]
    } else {
        a.paths
    };
    for path in paths {
        let url = format!("{}{path}", conn.api_base.trim_end_matches('/'));
        match http
            .get(&url)
            .with_extension(ForConnection(connection.clone()))
            .send()
            .await
        {
            Ok(resp) => {
                let r = resp.extensions().get::<Report>().cloned();
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if let Some(r) = r {
                    println!(
                        "{path}: {status} kind={} action={} attempts={} waited={}ms refreshed={}",
                        r.classification.kind,
                        r.action,
                        r.attempts,
                        r.waited.as_millis(),
                        r.refreshed
                    );
                }
                println!("  {}", body.chars().take(200).collect::<String>());
            }
            Err(e) => println!("{path}: {e}"),
        }
    }
    Ok(())
}
