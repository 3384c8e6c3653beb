//! Refresh storm benchmark (not a test): N connections (default 100,000) whose tokens all expire
//! within the same scaled hour, refreshed ahead of expiry by the daemon's own scheduler while the
//! sandbox's token endpoint is throttled to the platform's published limit.
//!
//! `cargo run --release -p tokenwarden-bench --bin storm -- [--connections 100000]
//!  [--provider snapchat] [--rate 20] [--scale 8] [--lifetime 4h] [--concurrency 32]
//!  [--store URL]`
//!
//! How it runs, all in this process:
//! 1. The sandbox serves on loopback behind a recording layer that notes, for every refresh-token
//!    call to the token endpoint, the sandbox time, the answer, and which refresh token it was.
//! 2. Seeding, with the clock held: N real grants (authorize approve POST + code exchange, many at
//!    once); the clock is stepped by one hour / N after each exchange, so the N tokens are issued
//!    evenly over one hour and, living `--lifetime`, all expire within one hour. Each is stored as
//!    an active connection with `put_connection`, `put_initial_tokens` and `set_next_refresh`
//!    (`policy::refresh_due_at`: the provider's margin and jitter), like the callback does.
//! 3. The `Daemon` (server, scheduler, monitor, webhooks) starts on that store (SQLite file by
//!    default) with every provider pointed at the sandbox and the demo app registered.
//! 4. The throttle is set at the sandbox (`rate_per_sec`, target `token`) and the held clock is
//!    released where issuing ended: from then on it is a `ScaledClock` running `--scale` times
//!    faster than real time, and the scheduler sees the whole crowd at once.
//! 5. The run ends when every connection's refresh token has been used once successfully, or
//!    when sandbox time passes the last original expiry by ten minutes.
//!
//! It reports how many connections were refreshed before their token expired (must be all), the
//! refreshes per sandbox second at the sandbox (peak, against the limit), the sandbox's
//! `rate_limited_sent` (must be 0), connection states afterwards, wall times and peak memory
//! (`VmHWM` of this process, which holds the daemon, the sandbox and the benchmark's own records).

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
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenwarden_bench::{Connector, demo_app, peak_rss_kib};
use tokenwarden_core::clock::{Clock, ScaledClock};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Registry;
use tokenwarden_server::daemon::Daemon;
use tokenwarden_store::Keyring;

#[derive(Debug, Clone)]
struct Args {
    connections: usize,
    provider: String,
    rate: f64,
    scale: f64,
    lifetime: Duration,
    concurrency: usize,
    store: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        connections: 100_000,
        provider: "snapchat".into(),
        rate: 20.0,
        scale: 8.0,
        lifetime: Duration::from_secs(4 * 3600),
        concurrency: 32,
        store: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = value()?.parse().context("--connections")?,
            "--provider" => a.provider = value()?,
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--scale" => a.scale = value()?.parse().context("--scale")?,
            "--lifetime" => {
                a.lifetime = tokenwarden_core::span::parse(&value()?).context("--lifetime")?
            }
            "--concurrency" => a.concurrency = value()?.parse().context("--concurrency")?,
            "--store" => a.store = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "storm: N connections whose tokens all expire within one scaled hour, refreshed by \
                     the daemon's scheduler against the sandbox\n\n\
                     --connections N   how many (default 100000)\n\
                     --provider P      snapchat or tiktok (default snapchat)\n\
                     --rate R          the token endpoint's limit at the sandbox, refreshes per \
                     sandbox second (default 20, Snapchat's published app limit)\n\
                     --scale S         how much faster than real time the clock runs (default 8)\n\
                     --lifetime D      how long the first tokens live (default 4h; at least 75m)\n\
                     --concurrency C   grants issued at once while seeding (default 32)\n\
                     --store URL       sqlite://… or postgres://… (default: SQLite in a temp dir)"
                );
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {other:?}; expected --connections, --provider, --rate, --scale, \
                 --lifetime, --concurrency or --store"
            ),
        }
    }
    if a.connections == 0 || a.concurrency == 0 {
        bail!("--connections and --concurrency must be at least 1");
    }
    if !(a.rate.is_finite() && a.rate > 0.0) {
        bail!("--rate must be a positive number of refreshes per sandbox second");
    }
    if !(a.scale.is_finite() && a.scale >= 1.0) {
        bail!("--scale must be at least 1");
    }
    // The grants are issued over one hour; they must not come due before seeding ends.
    if a.lifetime < Duration::from_secs(3600 + 15 * 60) {
        bail!("--lifetime must be at least 75m, so no token comes due while the others are issued");
    }
    if !matches!(a.provider.as_str(), "snapchat" | "tiktok") {
        bail!(
            "--provider must be snapchat or tiktok (refresh-token grants sent as a form, which the \
             recording layer reads)"
        );
    }
    Ok(a)
}

/// Held while seeding (moved only by the benchmark), then released to run as a [`ScaledClock`].
#[derive(Debug)]
struct StormClock(RwLock<Phase>);

#[derive(Debug)]
enum Phase {
    Held(DateTime<Utc>),
    Running(ScaledClock, TimeDelta),
}

impl StormClock {
    fn advance(&self, by: TimeDelta) {
        if let Phase::Held(t) = &mut *self.0.write() {
            *t += by;
        }
    }

    /// From now on the clock runs `scale` times faster than real time, from where it was held.
    fn release(&self, scale: f64) {
        let mut phase = self.0.write();
        if let Phase::Held(t) = *phase {
            let scaled = ScaledClock::new(Utc::now(), scale);
            *phase = Phase::Running(scaled, t - scaled.now());
        }
    }
}

impl Clock for StormClock {
    fn now(&self) -> DateTime<Utc> {
        match &*self.0.read() {
            Phase::Held(t) => *t,
            Phase::Running(c, offset) => c.now() + *offset,
        }
    }
}

/// What the sandbox saw of refresh-token calls.
#[derive(Debug, Default)]
struct Seen {
    /// Sandbox second → (refreshed, refused as rate-limited, other answers).
    per_second: BTreeMap<i64, (u32, u32, u32)>,
    /// Refresh token → sandbox time of its first successful refresh.
    first_ok: HashMap<String, DateTime<Utc>>,
    /// Refresh token → successful refreshes with it.
    ok_by_token: HashMap<String, u32>,
    ok: u64,
    limited: u64,
    other: u64,
}

#[derive(Debug)]
struct Recorder {
    token_path: String,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

/// The recording layer in front of the sandbox: reads the form of each refresh-token call to the
/// token endpoint and notes the answer at the sandbox's time.
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
    if let Some(rt) = refresh {
        let now = rec.clock.now();
        let status = resp.status().as_u16();
        let mut seen = rec.seen.lock();
        let bucket = seen.per_second.entry(now.timestamp()).or_default();
        match status {
            200 => {
                bucket.0 += 1;
                seen.ok += 1;
                *seen.ok_by_token.entry(rt.clone()).or_default() += 1;
                seen.first_ok.entry(rt).or_insert(now);
            }
            429 => {
                bucket.1 += 1;
                seen.limited += 1;
            }
            _ => {
                bucket.2 += 1;
                seen.other += 1;
            }
        }
    }
    resp
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let started = Instant::now();
    let n = a.connections;
    let sandbox_provider = tokenwarden_sandbox::Provider::parse(&a.provider)
        .context("the sandbox does not know that provider")?;

    // One hour of issuing, in whole seconds, from a round origin.
    let t0 = DateTime::from_timestamp(Utc::now().timestamp() / 3600 * 3600, 0)
        .context("clock origin")?;
    let storm_clock = Arc::new(StormClock(RwLock::new(Phase::Held(t0))));
    let clock: Arc<dyn Clock> = storm_clock.clone();

    // The sandbox, behind the recording layer.
    let redirect_uri = format!("http://127.0.0.1:9/callback/{}", a.provider);
    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sb_base = format!("http://{}", sandbox_listener.local_addr()?);
    let mut config = tokenwarden_sandbox::SandboxConfig {
        time_scale: a.scale,
        demo_redirect_uris: vec![redirect_uri.clone()],
        ..Default::default()
    };
    config.access_lifetimes.insert(sandbox_provider, a.lifetime);
    let sandbox = tokenwarden_sandbox::Sandbox::new(config, clock.clone());

    let mut registry = Registry::builtin()?;
    let ids: Vec<String> = registry.iter().map(|p| p.spec.id.to_string()).collect();
    for id in &ids {
        if let Some(p) = registry.get(id) {
            let moved = p.with_origin(&url::Url::parse(&format!("{sb_base}/{id}"))?);
            registry.replace(moved);
        }
    }
    let provider = registry
        .get(&a.provider)
        .context("no such provider")?
        .clone();
    let token_path = provider
        .spec
        .token
        .refresh
        .as_ref()
        .context("the provider cannot refresh")?
        .url
        .path()
        .to_string();
    let recorder = Arc::new(Recorder {
        token_path,
        clock: clock.clone(),
        seen: Mutex::new(Seen::default()),
    });
    let router = sandbox.router().layer(axum::middleware::from_fn_with_state(
        recorder.clone(),
        record,
    ));
    let (stop_sandbox, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sandbox_task = tokio::spawn(tokenwarden_http::serve(
        sandbox_listener,
        router,
        tokenwarden_http::Limits::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // The daemon.
    let dir = tempfile::tempdir()?;
    let store_url = a
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display()));
    let store = tokenwarden_store::open(&store_url, Keyring::generate("bench")?).await?;
    let app = demo_app(&a.provider, &redirect_uri, clock.now())?;

    // Seeding, with the clock held and stepped so the N tokens are issued evenly over one hour.
    println!(
        "storm: {n} {} connections, tokens living {}s, issued over one hour; token endpoint \
         throttled to {} refreshes per sandbox second; time scale {}; store {}",
        a.provider,
        a.lifetime.as_secs(),
        a.rate,
        a.scale,
        if a.store.is_some() {
            "from --store"
        } else {
            "SQLite file in a temporary directory"
        }
    );
    let connector = Connector::new(store.clone(), provider.clone(), app.clone(), clock.clone())?;
    let step = TimeDelta::microseconds((3_600_000_000f64 / n as f64) as i64);
    let seed_started = Instant::now();
    // Refresh token → (connection, original expiry, refresh deadline).
    let mut expiry: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> = HashMap::with_capacity(n);
    let mut seeded = futures::stream::iter(0..n)
        .map(|i| {
            let connector = connector.clone();
            let storm_clock = storm_clock.clone();
            async move {
                let tokens = connector.grant(&format!("acct{i:06}")).await?;
                storm_clock.advance(step);
                let id = ConnectionId::parse(format!("storm-{i:06}"))?;
                let due = connector.save(&id, &tokens).await?;
                let rt = tokens
                    .refresh_token
                    .as_ref()
                    .context("the grant carried no refresh token")?
                    .expose()
                    .to_string();
                let exp = tokens.expires_at.context("the token has no expiry")?;
                let due = due.context("the connection got no refresh deadline")?;
                anyhow::Ok((rt, exp, due))
            }
        })
        .buffer_unordered(a.concurrency);
    while let Some(r) = seeded.next().await {
        let (rt, exp, due) = r?;
        expiry.insert(rt, (exp, due));
        if expiry.len().is_multiple_of(10_000) {
            println!(
                "  seeded {} in {:.1}s",
                expiry.len(),
                seed_started.elapsed().as_secs_f64()
            );
        }
    }
    let seed_secs = seed_started.elapsed().as_secs_f64();
    let first_due = expiry
        .values()
        .map(|v| v.1)
        .min()
        .context("nothing seeded")?;
    let first_exp = expiry
        .values()
        .map(|v| v.0)
        .min()
        .context("nothing seeded")?;
    let last_exp = expiry
        .values()
        .map(|v| v.0)
        .max()
        .context("nothing seeded")?;
    println!(
        "seeded {n} in {seed_secs:.1}s ({:.0}/s); expiries {} … {} (sandbox time), first refresh due {}",
        n as f64 / seed_secs,
        first_exp,
        last_exp,
        first_due
    );

    // The daemon starts once the grants are issued: its scheduler must not run on a held clock.
    let running = Daemon {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sandbox_listener: None,
        apps: vec![app],
        store: store.clone(),
        providers: registry,
        clock: clock.clone(),
        time_scale: a.scale,
        public_url: None,
        owner: "storm".into(),
        key_file: None,
        // The storm measures refreshes; health probes would add API calls, not token calls.
        probe_poll: Some(Duration::from_secs(86_400)),
        webhooks: tokenwarden_server::webhooks::WebhookPolicy {
            allow_private: false,
        },
        retention: tokenwarden_server::retention::Retention::default(),
        cache: Default::default(),
        proxy_limits: Default::default(),
        http_threads: tokenwarden_bench::http_threads(),
    }
    .start()
    .await?;

    // The platform's limit, then let time run.
    let http = reqwest::Client::new();
    let throttle_for = (last_exp - first_due).num_seconds() + 4 * 3600;
    let r = http
        .post(format!("{sb_base}/_sandbox/faults/{}/throttle", a.provider))
        .json(&serde_json::json!({"rate_per_sec": a.rate, "for": throttle_for, "target": "token"}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("setting the throttle failed: {}", r.status());
    }
    http.post(format!("{sb_base}/_sandbox/counters/reset"))
        .send()
        .await?
        .error_for_status()?;
    // Time runs on from the end of the issuing hour: the scheduler sees the whole crowd at once.
    storm_clock.release(a.scale);
    running.state.wake.notify_one();
    let storm_started = Instant::now();
    let give_up = last_exp + TimeDelta::minutes(10);
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = recorder.seen.lock().first_ok.len();
        let now = clock.now();
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  {:.0}s: sandbox time {}, {} of {n} refreshed",
                storm_started.elapsed().as_secs_f64(),
                now.format("%H:%M:%S"),
                done
            );
        }
        if done >= n || now > give_up {
            break;
        }
    }
    let storm_secs = storm_started.elapsed().as_secs_f64();
    // Stop the daemon first (it finishes refreshes in flight), so the counters are final.
    running.stop().await;
    let counters: serde_json::Value = http
        .get(format!("{sb_base}/_sandbox/counters"))
        .send()
        .await?
        .json()
        .await?;
    let pc = &counters["providers"][a.provider.as_str()];
    let states = {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for c in store.list_connections().await? {
            *by.entry(c.state.to_string()).or_default() += 1;
        }
        by
    };
    let _ = stop_sandbox.send(());
    let _ = sandbox_task.await;

    // The figures.
    let seen = recorder.seen.lock();
    let mut before = 0usize;
    let mut late = 0usize;
    let mut leads = Vec::with_capacity(n);
    let mut after_due = Vec::with_capacity(n);
    for (rt, (exp, due)) in &expiry {
        match seen.first_ok.get(rt) {
            Some(at) if at < exp => {
                before += 1;
                leads.push((*exp - *at).num_milliseconds() as f64 / 1000.0);
                after_due.push((*at - *due).num_milliseconds() as f64 / 1000.0);
            }
            Some(_) => late += 1,
            None => {}
        }
    }
    let never = n - before - late;
    // Every token lives longer than the run, so each connection needs exactly one refresh: a
    // second success with an original refresh token, or any success with a refresh token that
    // a refresh in this run issued (rotating tokens), is a duplicate refresh.
    let mut duplicates = 0u64;
    let mut twice = 0usize;
    for (rt, k) in &seen.ok_by_token {
        if expiry.contains_key(rt) {
            duplicates += u64::from(k.saturating_sub(1));
            twice += usize::from(*k > 1);
        } else {
            duplicates += u64::from(*k);
            twice += 1;
        }
    }
    leads.sort_by(f64::total_cmp);
    after_due.sort_by(f64::total_cmp);
    let peak_ok = seen.per_second.values().map(|b| b.0).max().unwrap_or(0);
    let peak_attempts = seen
        .per_second
        .values()
        .map(|b| b.0 + b.1 + b.2)
        .max()
        .unwrap_or(0);
    let busy_secs = seen.per_second.len();
    let over = seen
        .per_second
        .values()
        .filter(|b| f64::from(b.0 + b.1 + b.2) > a.rate)
        .count();
    println!();
    println!("| figure | value |");
    println!("|---|--:|");
    println!("| connections | {n} |");
    println!("| refreshed before expiry | {before} |");
    println!("| refreshed only after expiry | {late} |");
    println!("| not refreshed by the end | {never} |");
    println!(
        "| **duplicate refreshes** (refreshes beyond one per connection) / connections refreshed twice | {duplicates} / {twice} |"
    );
    println!(
        "| lead before expiry, min / p1 / median (sandbox s) | {:.0} / {:.0} / {:.0} |",
        pct(&leads, 0.0),
        pct(&leads, 0.01),
        pct(&leads, 0.5)
    );
    println!(
        "| refresh relative to its deadline (negative: early), min / median / max (sandbox s) | {:.0} / {:.0} / {:.0} |",
        pct(&after_due, 0.0),
        pct(&after_due, 0.5),
        pct(&after_due, 1.0)
    );
    println!(
        "| refreshes at the sandbox per sandbox second: peak (limit) | {peak_ok} ({}) |",
        a.rate
    );
    println!("| token-endpoint refresh calls per sandbox second, peak | {peak_attempts} |");
    println!("| sandbox seconds with calls / over the limit | {busy_secs} / {over} |");
    println!(
        "| refresh calls seen: ok / 429 / other | {} / {} / {} |",
        seen.ok, seen.limited, seen.other
    );
    println!(
        "| sandbox counters: token calls by grant type | {} |",
        pc["token_calls_by_grant_type"]
    );
    println!(
        "| sandbox counters: `rate_limited_sent` / `too_many_requests_sent` | {} / {} |",
        pc["rate_limited_sent"], pc["too_many_requests_sent"]
    );
    println!(
        "| connection states afterwards | {} |",
        states
            .iter()
            .map(|(s, c)| format!("{s} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| seeding wall time | {seed_secs:.1} s |");
    println!(
        "| storm wall time (release to last refresh) | {storm_secs:.1} s = {:.0} sandbox s |",
        storm_secs * a.scale
    );
    println!(
        "| total wall time | {:.1} s |",
        started.elapsed().as_secs_f64()
    );
    println!(
        "| peak memory (VmHWM of the process) | {} MiB |",
        peak_rss_kib().map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0))
    );
    Ok(())
}
