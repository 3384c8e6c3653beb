//! Chaos benchmark (not a test; issue 14 item 5): several `tokenwarden serve` processes on one
//! PostgreSQL database keep N connections alive through several token lifetimes at a platform
//! that rotates refresh tokens and allows no reuse, while a driver kills a replica with SIGKILL,
//! freezes one with SIGSTOP for twice the refresh lease and resumes it, and stops one with
//! SIGTERM, every few seconds, restarting them.
//!
//! `cargo build --release -p tokenwarden -p tokenwarden-bench && ./target/release/chaos
//!  [--replicas 3] [--connections 10000] [--lifetime 10m] [--rate 100] [--duration 25m]
//!  [--every 5s] [--readers 4] [--no-chaos] [--database postgres://postgres@127.0.0.1:5432/postgres]`
//!
//! How it runs:
//! 1. The sandbox runs in this process (real time) behind a recording layer that sees every
//!    refresh-token call to Snapchat's token endpoint and its answer: which refresh token was
//!    spent, which one was issued, and when. Rotation is on with no reuse grace, so a refresh
//!    token used twice is refused: a second use is a connection lost.
//! 2. A fresh PostgreSQL database; N real grants (authorize approve + code exchange) stored as
//!    active connections through the store API, with access tokens living `--lifetime`.
//! 3. `--replicas` `tokenwarden serve` processes (the release binary beside this one) share the
//!    database and the master key; Snapchat's definition is pointed at the sandbox and its
//!    published limits are set to `--rate` per second (the sandbox throttles at the same rate).
//! 4. `--readers` tasks read tokens through random live replicas all along (the callers).
//! 5. Every `--every`, one of SIGKILL (restart after 1 s), SIGSTOP (for twice the 45 s lease,
//!    then SIGCONT) or SIGTERM (wait for the exit, restart), in turn, on a random replica.
//! 6. After `--duration`, chaos stops, every replica is resumed, and after one more lifetime the
//!    figures are taken: each connection's token is read through the API and tried at the
//!    platform.
//!
//! Figures: tokens lost (a connection whose stored token the platform refuses at the end),
//! connections `reauth_required`, refresh-token reuses the platform saw, platform seconds over
//! the rate limit, duplicate refreshes (a refresh of a token issued less than a quarter of a
//! lifetime earlier), callers served and failed, token-read latency p50/p99, and each replica's
//! peak memory (VmHWM, read from /proc before each stop).

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use parking_lot::Mutex;
use sqlx::Connection as _;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenwarden_bench::{Connector, demo_app, median};
use tokenwarden_core::clock::Clock;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Registry;
use tokenwarden_store::Keyring;

const LEASE: Duration = Duration::from_secs(45);

#[derive(Debug, Clone)]
struct Args {
    replicas: usize,
    connections: usize,
    lifetime: Duration,
    rate: f64,
    duration: Duration,
    every: Duration,
    readers: usize,
    chaos: bool,
    database: String,
}

fn args() -> Result<Args> {
    let mut a = Args {
        replicas: 3,
        connections: 10_000,
        lifetime: Duration::from_secs(600),
        rate: 100.0,
        duration: Duration::from_secs(25 * 60),
        every: Duration::from_secs(5),
        readers: 4,
        chaos: true,
        database: std::env::var("TOKENWARDEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    };
    let span = |v: String| tokenwarden_core::span::parse(&v).map_err(anyhow::Error::msg);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--replicas" => a.replicas = value()?.parse().context("--replicas")?,
            "--connections" => a.connections = value()?.parse().context("--connections")?,
            "--lifetime" => a.lifetime = span(value()?).context("--lifetime")?,
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--duration" => a.duration = span(value()?).context("--duration")?,
            "--every" => a.every = span(value()?).context("--every")?,
            "--readers" => a.readers = value()?.parse().context("--readers")?,
            "--no-chaos" => a.chaos = false,
            "--database" => a.database = value()?,
            "-h" | "--help" => {
                println!(
                    "chaos: replicas of `tokenwarden serve` on one PostgreSQL keep connections alive \
                     at a platform with rotating refresh tokens and no reuse grace, while replicas \
                     are killed, frozen and stopped\n\n\
                     --replicas R      serve processes (default 3)\n\
                     --connections N   connections (default 10000)\n\
                     --lifetime D      access-token lifetime at the platform (default 10m)\n\
                     --rate R          the platform's token-endpoint limit per second, published \
                     in the definition and enforced by the sandbox (default 100)\n\
                     --duration D      how long the chaos lasts (default 25m)\n\
                     --every D         one chaos action this often (default 5s)\n\
                     --readers K       concurrent callers reading tokens (default 4)\n\
                     --no-chaos        no signals: one steady run (with --replicas 1, the daemon's \
                     own memory)\n\
                     --database URL    PostgreSQL server (a fresh database is created and dropped)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if a.replicas == 0 || a.connections == 0 {
        bail!("--replicas and --connections must be at least 1");
    }
    if !(a.rate.is_finite() && a.rate >= 1.0) {
        bail!("--rate must be at least 1 per second");
    }
    if a.lifetime < Duration::from_secs(120) {
        bail!("--lifetime must be at least 2m");
    }
    Ok(a)
}

/// The platform's clock: real time, except while seeding, when it is set back so the grants
/// are issued over the half lifetime before the run (their tokens then end spread over the
/// second half of the first lifetime, as tokens of connections made at different times do).
#[derive(Debug, Default)]
struct SeedClock(parking_lot::RwLock<Option<DateTime<Utc>>>);

impl Clock for SeedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.read().unwrap_or_else(Utc::now)
    }
}

/// What the platform saw of refresh-token calls.
#[derive(Debug, Default)]
struct Seen {
    /// Second → refresh calls (any answer).
    per_second: BTreeMap<i64, u32>,
    /// Refresh token → when the platform issued it (grants and refreshes).
    issued: HashMap<String, DateTime<Utc>>,
    /// Refresh tokens spent by a successful refresh.
    spent: HashMap<String, DateTime<Utc>>,
    ok: u64,
    /// Refresh calls with a refresh token already spent (refused: no reuse grace).
    reuses: u64,
    limited: u64,
    other: u64,
    /// Successful refreshes of a token issued less than a quarter of a lifetime earlier.
    early: u64,
}

#[derive(Debug)]
struct Recorder {
    token_path: String,
    quarter: TimeDelta,
    /// The platform's clock: a refresh token issued while seeding was issued at the set-back
    /// time the sandbox answered with, not at the real time of the answer.
    clock: Arc<SeedClock>,
    seen: Mutex<Seen>,
}

async fn record(State(rec): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST || req.uri().path() != rec.token_path {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        let mut r = Response::new(Body::from("body too large"));
        *r.status_mut() = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        return r;
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let refresh = (form.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .then(|| form.get("refresh_token").cloned())
        .flatten();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let now = rec.clock.now();
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let issued = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
    {
        let mut seen = rec.seen.lock();
        if let Some(rt) = &refresh {
            *seen.per_second.entry(now.timestamp()).or_default() += 1;
            if seen.spent.contains_key(rt) {
                seen.reuses += 1;
            }
            match status.as_u16() {
                200 => {
                    seen.ok += 1;
                    seen.spent.insert(rt.clone(), now);
                    if seen
                        .issued
                        .get(rt)
                        .is_some_and(|at| now - *at < rec.quarter)
                    {
                        seen.early += 1;
                    }
                }
                429 => seen.limited += 1,
                _ => seen.other += 1,
            }
        }
        if status.is_success()
            && let Some(new) = issued
        {
            seen.issued.insert(new, now);
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A `tokenwarden serve` process.
struct Replica {
    n: usize,
    child: Option<Child>,
    base: String,
    peak_kib: u64,
    stopped: bool,
}

struct Cluster {
    bin: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    database: String,
    key: String,
    replicas: Vec<Replica>,
    bases: Arc<Mutex<Vec<Option<String>>>>,
}

impl Cluster {
    fn spawn(&mut self, n: usize) -> Result<()> {
        let data = self.dir.join(format!("data-{n}"));
        let listen = self
            .replicas
            .get(n)
            .and_then(|r| r.base.strip_prefix("http://"))
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let mut child = Command::new(&self.bin)
            .args(["serve", "--listen", &listen, "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--database", &self.database])
            .env("TOKENWARDEN_MASTER_KEY", &self.key)
            .env("NO_COLOR", "1")
            .env("TOKENWARDEN_LOG", "warn")
            .env_remove("TOKENWARDEN_PROVIDERS_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(
                self.dir.join(format!("replica-{n}.log")),
            )?))
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let base = loop {
            let line = lines
                .next()
                .context("serve exited before printing its address")??;
            if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .context("address")?
                    .to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        if n < self.replicas.len() {
            let r = &mut self.replicas[n];
            r.child = Some(child);
            r.base = base.clone();
            r.stopped = false;
        } else {
            self.replicas.push(Replica {
                n,
                child: Some(child),
                base: base.clone(),
                peak_kib: 0,
                stopped: false,
            });
        }
        self.bases.lock().resize(self.replicas.len(), None);
        self.bases.lock()[n] = Some(base);
        Ok(())
    }

    fn note_memory(&mut self, n: usize) {
        let r = &mut self.replicas[n];
        if let Some(c) = &r.child
            && let Some(k) = vm_hwm(c.id())
        {
            r.peak_kib = r.peak_kib.max(k);
        }
    }

    fn signal(&self, n: usize, sig: &str) {
        if let Some(c) = &self.replicas[n].child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    fn down(&mut self, n: usize) {
        self.bases.lock()[n] = None;
    }
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

#[derive(Debug, Default)]
struct Calls {
    served: AtomicU64,
    failed: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    /// Failures by cause ("timeout", "connect", "503 token_unavailable", …) and the seconds into
    /// the chaos when each cause was first and last seen.
    causes: Mutex<BTreeMap<String, (u64, f64, f64)>>,
}

impl Calls {
    fn failed_with(&self, cause: String, at: f64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut causes = self.causes.lock();
        let e = causes.entry(cause).or_insert((0, at, at));
        e.0 += 1;
        e.2 = at;
    }
}

/// Why a token read failed: the transport's failure, or the status and the API's error code.
async fn failure_cause(answer: reqwest::Result<reqwest::Response>) -> Option<String> {
    let r = match answer {
        Ok(r) if r.status().is_success() => return None,
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Some("timeout (5 s)".into()),
        Err(e) if e.is_connect() => return Some("connect".into()),
        Err(_) => return Some("transport".into()),
    };
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let code = body
        .pointer("/error/code")
        .or_else(|| body.get("error"))
        .or_else(|| body.get("code"))
        .and_then(|c| c.as_str())
        .unwrap_or("-");
    Some(format!("{status} {code}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let started = Instant::now();
    let bin = std::env::current_exe()?
        .parent()
        .context("the benchmark's directory")?
        .join("tokenwarden");
    if !bin.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p tokenwarden`",
            bin.display()
        );
    }
    let seed_clock = Arc::new(SeedClock::default());
    let clock: Arc<dyn Clock> = seed_clock.clone();

    // The platform, behind the recording layer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sb = format!("http://{}", listener.local_addr()?);
    let redirect_uri = "http://127.0.0.1:9/callback/snapchat".to_string();
    let mut config = tokenwarden_sandbox::SandboxConfig {
        demo_redirect_uris: vec![redirect_uri.clone()],
        ..Default::default()
    };
    config
        .access_lifetimes
        .insert(tokenwarden_sandbox::Provider::Snapchat, a.lifetime);
    let sandbox = tokenwarden_sandbox::Sandbox::new(config, clock.clone());
    let mut registry = Registry::builtin()?;
    let moved = registry
        .get("snapchat")
        .context("snapchat")?
        .with_origin(&url::Url::parse(&format!("{sb}/snapchat"))?);
    registry.replace(moved);
    let provider = registry.get("snapchat").context("snapchat")?.clone();
    let token_path = provider
        .spec
        .token
        .refresh
        .as_ref()
        .context("refresh endpoint")?
        .url
        .path()
        .to_string();
    let recorder = Arc::new(Recorder {
        token_path,
        quarter: TimeDelta::from_std(a.lifetime / 4)?,
        clock: seed_clock.clone(),
        seen: Mutex::new(Seen::default()),
    });
    let router = sandbox.router().layer(axum::middleware::from_fn_with_state(
        recorder.clone(),
        record,
    ));
    tokio::spawn(tokenwarden_http::serve(
        listener,
        router,
        tokenwarden_http::Limits::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    http.post(format!("{sb}/_sandbox/faults/snapchat/rotation"))
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await?
        .error_for_status()
        .context("turning rotation on")?;

    // A fresh database.
    let db_name = format!("tw_chaos_{}", rand::random::<u32>());
    let mut admin = sqlx::PgConnection::connect(&a.database)
        .await
        .with_context(|| format!("PostgreSQL at {}", a.database))?;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .await?;
    let db_url = format!(
        "{}/{db_name}",
        a.database.rsplit_once('/').context("database URL")?.0
    );
    let result = run(
        &a,
        &bin,
        &sb,
        &db_url,
        &http,
        &recorder,
        &provider,
        &redirect_uri,
        &seed_clock,
    )
    .await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    result?;
    println!(
        "| total wall time | {:.0} s |",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    a: &Args,
    bin: &Path,
    sb: &str,
    db_url: &str,
    http: &reqwest::Client,
    recorder: &Arc<Recorder>,
    provider: &Arc<tokenwarden_core::provider::Provider>,
    redirect_uri: &str,
    seed_clock: &Arc<SeedClock>,
) -> Result<()> {
    let clock: Arc<dyn Clock> = seed_clock.clone();
    let keys = Keyring::generate("chaos")?;
    let key_text = keys.to_file_text().to_string();
    let store = tokenwarden_store::open(db_url, keys).await?;
    let app = demo_app("snapchat", redirect_uri, Utc::now())?;
    store.put_app(&app).await?;
    let connector = Connector::new(store.clone(), provider.clone(), app, clock.clone())?;
    let seed_started = Instant::now();
    let n = a.connections;
    let origin = Utc::now() - TimeDelta::from_std(a.lifetime / 2)?;
    let step = TimeDelta::from_std(a.lifetime / 2)? / i32::try_from(n).unwrap_or(i32::MAX);
    let mut seeded = futures::stream::iter(0..n)
        .map(|i| {
            let connector = connector.clone();
            *seed_clock.0.write() = Some(origin + step * i32::try_from(i).unwrap_or(i32::MAX));
            async move {
                let tokens = connector.grant(&format!("acct{i:06}")).await?;
                let id = ConnectionId::parse(format!("chaos-{i:06}"))?;
                connector.save(&id, &tokens).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32);
    let mut done = 0usize;
    while let Some(r) = seeded.next().await {
        r?;
        done += 1;
    }
    drop(seeded);
    *seed_clock.0.write() = None;
    println!(
        "chaos: seeded {done} connections in {:.1}s; access tokens live {}s; rotation on, no reuse grace; limit {}/s",
        seed_started.elapsed().as_secs_f64(),
        a.lifetime.as_secs(),
        a.rate
    );
    drop(connector);
    drop(store);

    // The replicas' configuration: Snapchat at the sandbox, its published limits at --rate.
    let dir = tempfile::tempdir()?;
    let providers = dir.path().join("providers");
    std::fs::create_dir(&providers)?;
    let shipped = Command::new(bin)
        .args(["providers", "show", "snapchat"])
        .output()?;
    let text = String::from_utf8(shipped.stdout)?
        .replace("https://accounts.snapchat.com", &format!("{sb}/snapchat"))
        .replace("https://adsapi.snapchat.com", &format!("{sb}/snapchat"))
        .replace(
            "scope = \"app\"\nrequests = 20\n",
            &format!("scope = \"app\"\nrequests = {}\n", a.rate.round() as u64),
        );
    if !text.contains(&format!("requests = {}\n", a.rate.round() as u64)) {
        bail!("could not set the app rate limit in snapchat's definition");
    }
    std::fs::write(providers.join("snapchat.toml"), text)?;
    std::fs::write(dir.path().join("secret"), "demo-snapchat-secret\n")?;
    let config = dir.path().join("tw.toml");
    std::fs::write(
        &config,
        format!(
            "providers_dir = {:?}\nallow_insecure_endpoints = true\n\n[[apps]]\nprovider = \"snapchat\"\nid = \"demo\"\nclient_id = \"demo-snapchat\"\nclient_secret_file = {:?}\nredirect_uri = {redirect_uri:?}\n",
            providers.display().to_string(),
            dir.path().join("secret").display().to_string()
        ),
    )?;
    let throttle_for = (a.duration + a.lifetime * 3).as_secs();
    http.post(format!("{sb}/_sandbox/faults/snapchat/throttle"))
        .json(&serde_json::json!({"rate_per_sec": a.rate, "for": throttle_for, "target": "token"}))
        .send()
        .await?
        .error_for_status()
        .context("setting the throttle")?;

    let mut cluster = Cluster {
        bin: bin.to_path_buf(),
        config,
        dir: dir.path().to_path_buf(),
        database: db_url.to_string(),
        key: key_text,
        replicas: Vec::new(),
        bases: Arc::new(Mutex::new(Vec::new())),
    };
    for i in 0..a.replicas {
        cluster.spawn(i)?;
    }
    let admin_key = std::fs::read_to_string(dir.path().join("data-0/admin.key"))
        .context("replica 0's admin key")?
        .trim()
        .to_string();

    // The callers.
    let calls = Arc::new(Calls::default());
    let started = Instant::now();
    let running = Arc::new(AtomicBool::new(true));
    let mut readers = Vec::new();
    for _ in 0..a.readers {
        let (calls, running, bases, http, key) = (
            calls.clone(),
            running.clone(),
            cluster.bases.clone(),
            http.clone(),
            admin_key.clone(),
        );
        readers.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let live: Vec<String> = bases.lock().iter().flatten().cloned().collect();
                if live.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let base = &live[rand::random_range(0..live.len())];
                let id = format!("chaos-{:06}", rand::random_range(0..n));
                let t = Instant::now();
                let answer = http
                    .get(format!("{base}v1/connections/{id}/token"))
                    .bearer_auth(&key)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match failure_cause(answer).await {
                    None => {
                        calls.served.fetch_add(1, Ordering::Relaxed);
                        calls
                            .latencies_ms
                            .lock()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Some(cause) => {
                        calls.failed_with(cause, started.elapsed().as_secs_f64());
                    }
                }
                // Callers, not a load test: leave the machine to the replicas.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    // The chaos.
    let chaos_started = Instant::now();
    let mut actions = BTreeMap::<&str, u32>::new();
    let mut frozen: Vec<(usize, Instant)> = Vec::new();
    let mut turn = 0u32;
    let mut last_print = Instant::now();
    while chaos_started.elapsed() < a.duration {
        tokio::time::sleep(a.every).await;
        for i in 0..cluster.replicas.len() {
            cluster.note_memory(i);
        }
        // Resume what has been frozen for twice the lease.
        let thawed: Vec<usize> = frozen
            .iter()
            .filter(|(_, at)| at.elapsed() >= LEASE * 2)
            .map(|(i, _)| *i)
            .collect();
        for i in thawed {
            cluster.signal(i, "-CONT");
            cluster.replicas[i].stopped = false;
            let base = cluster.replicas[i].base.clone();
            cluster.bases.lock()[i] = Some(base);
            frozen.retain(|(j, _)| *j != i);
        }
        if last_print.elapsed() >= Duration::from_secs(60) {
            last_print = Instant::now();
            let s = recorder.seen.lock();
            println!(
                "  {:.0}s: refreshes ok {}, reuses {}, 429 {}, callers served {} failed {}",
                chaos_started.elapsed().as_secs_f64(),
                s.ok,
                s.reuses,
                s.limited,
                calls.served.load(Ordering::Relaxed),
                calls.failed.load(Ordering::Relaxed)
            );
        }
        if !a.chaos {
            continue;
        }
        let candidates: Vec<usize> = (0..cluster.replicas.len())
            .filter(|i| !cluster.replicas[*i].stopped)
            .collect();
        // Keep at least one replica serving.
        if candidates.len() < 2 {
            continue;
        }
        let i = candidates[rand::random_range(0..candidates.len())];
        let r_n = cluster.replicas[i].n;
        match turn % 3 {
            0 => {
                *actions.entry("SIGKILL").or_default() += 1;
                cluster.down(r_n);
                cluster.signal(r_n, "-KILL");
                if let Some(mut c) = cluster.replicas[r_n].child.take() {
                    let _ = c.wait();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                cluster.spawn(r_n)?;
            }
            1 => {
                *actions.entry("SIGSTOP").or_default() += 1;
                cluster.down(r_n);
                cluster.signal(r_n, "-STOP");
                cluster.replicas[r_n].stopped = true;
                frozen.push((r_n, Instant::now()));
            }
            _ => {
                *actions.entry("SIGTERM").or_default() += 1;
                cluster.down(r_n);
                cluster.signal(r_n, "-TERM");
                if let Some(mut c) = cluster.replicas[r_n].child.take() {
                    let _ = tokio::task::spawn_blocking(move || c.wait()).await;
                }
                cluster.spawn(r_n)?;
            }
        }
        turn += 1;
    }
    for (i, _) in frozen.drain(..) {
        cluster.signal(i, "-CONT");
        cluster.replicas[i].stopped = false;
        let base = cluster.replicas[i].base.clone();
        cluster.bases.lock()[i] = Some(base);
    }
    running.store(false, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    let served_during = calls.served.load(Ordering::Relaxed);
    let failed_during = calls.failed.load(Ordering::Relaxed);
    // Calm: one more lifetime with everyone up, so every connection is refreshed at least once
    // more after the last signal.
    println!("  chaos over; one more lifetime with every replica up");
    let calm_until = Instant::now() + a.lifetime;
    while Instant::now() < calm_until {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for i in 0..cluster.replicas.len() {
            cluster.note_memory(i);
        }
    }

    // Every connection's token, read through the API and tried at the platform.
    let base = cluster.replicas[0].base.clone();
    let me = format!(
        "{}{}",
        provider.spec.api.base_url.as_str().trim_end_matches('/'),
        provider.spec.api.probe.path
    );
    let lost = AtomicU64::new(0);
    let unreadable = AtomicU64::new(0);
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let (http, base, key, me, lost, unreadable) =
                (http, &base, &admin_key, &me, &lost, &unreadable);
            async move {
                let id = format!("chaos-{i:06}");
                let token = match http
                    .get(format!("{base}v1/connections/{id}/token"))
                    .bearer_auth(key)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["access_token"].as_str().map(str::to_owned)),
                    _ => None,
                };
                let Some(token) = token else {
                    unreadable.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                // The platform's answer decides: 401/403 is a token it refuses; a throttled or
                // failed call is asked again.
                for attempt in 0..20u32 {
                    match http.get(me).bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                            lost.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1)))
                                .await
                        }
                    }
                }
                unreadable.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let mut pg = sqlx::PgConnection::connect(db_url).await?;
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM connections GROUP BY state ORDER BY state")
            .fetch_all(&mut pg)
            .await?;
    for i in 0..cluster.replicas.len() {
        cluster.note_memory(i);
        cluster.signal(i, "-TERM");
    }
    for r in &mut cluster.replicas {
        if let Some(mut c) = r.child.take() {
            let _ = tokio::task::spawn_blocking(move || c.wait()).await;
        }
    }

    let seen = recorder.seen.lock();
    let over = seen
        .per_second
        .values()
        .filter(|k| f64::from(**k) > a.rate)
        .count();
    let peak = seen.per_second.values().max().copied().unwrap_or(0);
    let mut lat = calls.latencies_ms.lock().clone();
    lat.sort_by(f64::total_cmp);
    println!();
    println!("| figure | value |");
    println!("|---|--:|");
    println!(
        "| replicas / connections / lifetime / limit | {} / {n} / {} s / {}/s |",
        a.replicas,
        a.lifetime.as_secs(),
        a.rate
    );
    println!(
        "| chaos: {} s, one action every {} s | {} |",
        a.duration.as_secs(),
        a.every.as_secs(),
        if a.chaos {
            actions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "none (--no-chaos)".into()
        }
    );
    println!(
        "| **tokens lost** (the platform refuses the connection's token at the end) | {} |",
        lost.load(Ordering::Relaxed)
    );
    println!(
        "| tokens that could not be read through the API or tried at the platform at the end | {} |",
        unreadable.load(Ordering::Relaxed)
    );
    println!(
        "| connection states at the end | {} |",
        by_state
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| **refresh-token reuses seen by the platform** | {} |",
        seen.reuses
    );
    println!(
        "| refresh calls: ok / 429 / other | {} / {} / {} |",
        seen.ok, seen.limited, seen.other
    );
    println!(
        "| **duplicate refreshes** (a token refreshed within a quarter lifetime of its issue) | {} |",
        seen.early
    );
    println!(
        "| **seconds over the platform's limit** / seconds with refresh calls / peak calls in a second | {over} / {} / {peak} |",
        seen.per_second.len()
    );
    println!("| callers served / failed during the chaos | {served_during} / {failed_during} |");
    for (cause, (count, first, last)) in calls.causes.lock().iter() {
        println!(
            "| failed: {cause} (first / last seen, s into the chaos) | {count} ({first:.0} / {last:.0}) |"
        );
    }
    println!(
        "| token read latency during the chaos, p50 / p99 / max (ms) | {:.1} / {:.1} / {:.1} |",
        median(&lat).unwrap_or(f64::NAN),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    println!(
        "| peak memory per replica process (VmHWM, MiB) | {} |",
        cluster
            .replicas
            .iter()
            .map(|r| format!("{:.0}", r.peak_kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
