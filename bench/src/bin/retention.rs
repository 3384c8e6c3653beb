//! Retention benchmark (not a test): how long `Store::prune_events` takes to delete a month's
//! worth of old events, and what it does meanwhile to the writes refreshes make (one event
//! appended every few milliseconds, each a durable commit), deleted in batches of `--batch` rows
//! per statement as the daemon does, and for contrast in one statement. Also the cost of a pass
//! with nothing to delete (the hourly case once caught up).
//!
//! `cargo run --release -p tokenwarden-bench --bin retention -- [--events N] [--batch B]
//!  [--postgres URL]`
//!
//! Each case seeds `--events` rows (90 % older than the retention, the oldest ids first, as in a
//! daemon that has run for months) with one bulk statement, then prunes. SQLite runs on a fresh
//! file in the temporary directory (WAL, synchronous=FULL, busy_timeout 10 s: a write waiting
//! longer fails). PostgreSQL: URL names a server and a database to connect to for administration;
//! a scratch database `tw_bench_<random>` is created beside it and dropped at the end.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokenwarden_bench::{ScratchPostgres, rand_u32};
use tokenwarden_store::sql::SqlStore;
use tokenwarden_store::{Backend, Coordination, Keyring, NewEvent, Store};

struct Args {
    events: i64,
    batch: i64,
    postgres: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        events: 1_000_000,
        batch: 5_000,
        postgres: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value()?.parse().context("--events")?,
            "--batch" => a.batch = value()?.parse().context("--batch")?,
            "--postgres" => a.postgres = Some(value()?),
            "-h" | "--help" => {
                println!("retention [--events N] [--batch B] [--postgres URL]");
                std::process::exit(0);
            }
            other => {
                bail!("unknown argument {other:?}; expected --events N, --batch B, --postgres URL")
            }
        }
    }
    if a.events < 10 || a.batch < 1 {
        bail!("--events must be at least 10 and --batch at least 1");
    }
    Ok(a)
}

/// `n` events, the oldest 90 % at `old`, the rest at `recent`, in one statement.
async fn seed(s: &SqlStore, n: i64, old: DateTime<Utc>, recent: DateTime<Utc>) -> Result<()> {
    let rows = "SELECT 'bench-' || (i % 1000), CASE WHEN i <= $2 THEN $3 ELSE $4 END, 'refreshed', \
                'token refreshed ahead of expiry', '{\"version\":2,\"proactive\":true}'";
    let sql = match s.backend() {
        Backend::Sqlite => format!(
            "INSERT INTO events (connection_id, at, kind, message, details)
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             {rows} FROM n"
        ),
        Backend::Postgres => format!(
            "INSERT INTO events (connection_id, at, kind, message, details)
             {rows} FROM generate_series(1, $1::bigint) AS g(i)"
        ),
    };
    sqlx::query(&sql)
        .bind(n)
        .bind(n * 9 / 10)
        .bind(old.timestamp_millis())
        .bind(recent.timestamp_millis())
        .execute(s.pool())
        .await?;
    if s.backend() == Backend::Postgres {
        sqlx::query("ANALYZE events").execute(s.pool()).await?;
    }
    Ok(())
}

/// Latencies (ms) of the appends made while `work` ran, and how many failed.
async fn beside<F, Fut, T>(store: Arc<dyn Store>, work: F) -> Result<(T, Vec<f64>, usize)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut ms, mut failed) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let e = NewEvent::new(None, Utc::now(), "refreshed", "token refreshed");
                match store.append_event(&e).await {
                    Ok(_) => ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ms, failed)
        }
    });
    let out = work().await;
    stop.store(true, Ordering::Relaxed);
    let (ms, failed) = writer.await?;
    Ok((out?, ms, failed))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Row {
    backend: String,
    case: String,
    deleted: u64,
    secs: f64,
    writes: Vec<f64>,
    failed: usize,
}

async fn bench_backend(name: &str, url: &str, a: &Args) -> Result<Vec<Row>> {
    let sql = Arc::new(
        SqlStore::open(url, Keyring::generate("bench")?)
            .await
            .with_context(|| format!("opening {name}"))?,
    );
    let store: Arc<dyn Store> = sql.clone();
    let now = Utc::now();
    let cutoff = now - TimeDelta::days(30);
    let mut rows = Vec::new();
    // The writes alone, for comparison.
    let ((), alone, failed) = beside(store.clone(), || async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    })
    .await?;
    rows.push(Row {
        backend: name.into(),
        case: "no prune (writes alone, 3 s)".into(),
        deleted: 0,
        secs: 3.0,
        writes: alone,
        failed,
    });
    for (case, batch) in [
        (format!("batches of {}", a.batch), a.batch),
        ("one statement".to_string(), a.events),
    ] {
        sqlx::query("DELETE FROM events")
            .execute(sql.pool())
            .await?;
        seed(
            &sql,
            a.events,
            now - TimeDelta::days(40),
            now - TimeDelta::hours(1),
        )
        .await?;
        let t = Instant::now();
        let (deleted, writes, failed) = beside(store.clone(), || async {
            Ok(store.prune_events(cutoff, batch).await?)
        })
        .await?;
        rows.push(Row {
            backend: name.into(),
            case,
            deleted,
            secs: t.elapsed().as_secs_f64(),
            writes,
            failed,
        });
        // Caught up: what the hourly pass costs when there is nothing old (index seek).
        let t = Instant::now();
        let again = store.prune_events(cutoff, batch).await?;
        rows.push(Row {
            backend: name.into(),
            case: format!("  then a pass with nothing old ({again} deleted)"),
            deleted: again,
            secs: t.elapsed().as_secs_f64(),
            writes: Vec::new(),
            failed: 0,
        });
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
        "retention benchmark: {} events, 90 % older than the retention; an event appended every \
         5 ms beside the prune; {} cores",
        a.events,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "| backend  | case                                      | deleted | seconds | rows/s | writes | write p50 ms | p99 ms | max ms | failed |"
    );
    println!(
        "|----------|-------------------------------------------|--------:|--------:|-------:|-------:|-------------:|-------:|-------:|-------:|"
    );
    for mut r in rows {
        let rate = if r.deleted > 0 {
            format!("{:.0}", r.deleted as f64 / r.secs)
        } else {
            "-".into()
        };
        let n = r.writes.len();
        let (p50, p99, max) = (
            pct(&mut r.writes, 0.5),
            pct(&mut r.writes, 0.99),
            pct(&mut r.writes, 1.0),
        );
        println!(
            "| {:<8} | {:<41} | {:>7} | {:>7.3} | {:>6} | {:>6} | {:>12.1} | {:>6.1} | {:>6.0} | {:>6} |",
            r.backend, r.case, r.deleted, r.secs, rate, n, p50, p99, max, r.failed
        );
    }
    Ok(())
}
