//! Store benchmark (not a test): token-set reads and lease + fenced-commit round trips per second
//! on each backend, median of several runs.
//!
//! `cargo run --release -p tokenwarden-bench --bin store -- [--postgres URL] [--runs N] [--secs S]`
//!
//! SQLite runs on a fresh file in the temporary directory (WAL, synchronous=FULL, so every commit
//! is an fsync). PostgreSQL: URL names a server and a database to connect to for administration
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); the benchmark creates a scratch database
//! `tw_bench_<random>` beside it and drops it at the end.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenwarden_bench::{ScratchPostgres, rand_u32};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_store::{Keyring, Store};

struct Args {
    postgres: Option<String>,
    runs: usize,
    secs: f64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        postgres: None,
        runs: 5,
        secs: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--postgres" => a.postgres = Some(value()?),
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--secs" => a.secs = value()?.parse().context("--secs")?,
            "-h" | "--help" => {
                println!("store [--postgres URL] [--runs N] [--secs S]");
                std::process::exit(0);
            }
            other => {
                bail!("unknown argument {other:?}; expected --postgres URL, --runs N, --secs S")
            }
        }
    }
    Ok(a)
}

fn tokens(i: u64) -> TokenSet {
    let now = Utc::now();
    TokenSet {
        access_token: Secret::new(format!(
            "bench-access-token-{i:012}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        )),
        refresh_token: Some(Secret::new(format!(
            "bench-refresh-token-{i:012}-yyyyyyyyyyyyyyyyyyyyyyyy"
        ))),
        token_type: Some("Bearer".into()),
        scopes: vec!["snapchat-marketing-api".into()],
        issued_at: now,
        expires_at: Some(now + TimeDelta::hours(1)),
        refresh_expires_at: None,
        token_secret: None,
    }
}

async fn seed(store: &dyn Store, id: &str) -> Result<ConnectionId> {
    let now = Utc::now();
    let c = Connection {
        id: ConnectionId::parse(id)?,
        provider: ProviderId::parse("snapchat")?,
        app: AppId::parse("bench")?,
        state: ConnectionState::Active,
        environment: Environment::Production,
        region: None,
        api_base: "https://adsapi.snapchat.com".into(),
        account_ids: vec![],
        account: None,
        end_user: None,
        scopes: vec![],
        problems: vec![],
        created_at: now,
        updated_at: now,
    };
    store.put_connection(&c).await?;
    store.put_initial_tokens(&c.id, &tokens(0)).await?;
    Ok(c.id)
}

/// Runs `op` from `tasks` tasks for `secs`; operations per second.
async fn rate<F, Fut>(tasks: usize, secs: f64, op: F) -> Result<f64>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut hs = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        hs.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                op(t, n).await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for h in hs {
        total += h.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench_backend(
    name: &str,
    url: &str,
    a: &Args,
) -> Result<Vec<(String, String, f64, f64, f64)>> {
    let store = tokenwarden_store::open(url, Keyring::generate("bench")?)
        .await
        .with_context(|| format!("opening {name}"))?;
    let tag = format!("{:08x}", rand_u32());
    let tasks = 8;
    let mut ids = Vec::new();
    for t in 0..tasks {
        ids.push(seed(&*store, &format!("bench-{tag}-{t}")).await?);
    }
    let ids = Arc::new(ids);
    let mut rows = Vec::new();
    let cases: [(&str, usize, bool); 4] = [
        ("token read (decrypt), 1 task", 1, false),
        ("token read (decrypt), 8 tasks", tasks, false),
        ("lease + commit, 1 task", 1, true),
        ("lease + commit, 8 tasks (own conn each)", tasks, true),
    ];
    for (label, n_tasks, write) in cases {
        let mut results = Vec::new();
        for _ in 0..a.runs {
            let (s, ids) = (store.clone(), ids.clone());
            let r = rate(n_tasks, a.secs, move |t, i| {
                let (s, ids) = (s.clone(), ids.clone());
                async move {
                    let c = &ids[t];
                    if write {
                        let lease = s
                            .acquire_refresh_lease(
                                c,
                                &format!("bench-{t}"),
                                Duration::from_secs(30),
                            )
                            .await?
                            .context("lease unexpectedly held")?;
                        s.commit_refresh(&lease, &tokens(i), None).await?;
                    } else {
                        s.get_tokens(c).await?.context("no tokens")?;
                    }
                    Ok(())
                }
            })
            .await?;
            results.push(r);
        }
        let min = results.iter().cloned().fold(f64::MAX, f64::min);
        let max = results.iter().cloned().fold(0.0, f64::max);
        rows.push((
            name.to_string(),
            label.to_string(),
            median(results),
            min,
            max,
        ));
    }
    for id in ids.iter() {
        store.delete_connection(id).await?;
    }
    Ok(rows)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let dir = std::env::temp_dir().join(format!("tw-bench-{}", rand_u32()));
    std::fs::create_dir_all(&dir)?;
    let sqlite_url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let mut rows = bench_backend("sqlite", &sqlite_url, &a).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let (Ok(r), Some(admin)) = (&mut rows, &a.postgres) {
        let scratch = ScratchPostgres::create(admin).await?;
        let result = bench_backend("postgres", &scratch.url, &a).await;
        scratch.drop().await?;
        r.extend(result?);
    }
    let rows = rows?;
    println!(
        "store benchmark: median of {} runs x {:.1}s (ops/s; min-max in brackets); {} cores",
        a.runs,
        a.secs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "| backend  | operation                                  | median ops/s | range           |"
    );
    println!(
        "|----------|--------------------------------------------|-------------:|-----------------|"
    );
    for (b, op, med, min, max) in rows {
        println!("| {b:<8} | {op:<42} | {med:>12.0} | {min:>6.0}-{max:<8.0} |");
    }
    Ok(())
}
