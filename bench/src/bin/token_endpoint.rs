//! Token endpoint benchmark (not a test): requests per second and p50/p99 latency of
//! `GET /v1/connections/{id}/token` for a cached (fresh) token, side by side in the same run with
//! nginx serving a small static file (the same JSON body) on the same machine. Both are loaded by
//! the same `wrk` with the same threads, connections and request (the Authorization header is
//! sent to both); runs alternate tokenwarden, nginx, tokenwarden, nginx … and the figures are
//! medians. The ratio is the figure that counts.
//!
//! `cargo run --release -p tokenwarden-bench --bin token_endpoint -- [--rounds 5] [--secs 10]
//!  [--connections 64] [--threads 2] [--cache-off]`
//!
//! `--count N` measures instead the cost of one request in instructions, which a loaded machine
//! does not change: no wrk, no nginx; `N` fetches one after another over one connection with a
//! bare client (`tokenwarden_bench::fixed_count`), bracketed for callgrind, with the caches' TTLs
//! at an hour (valgrind runs the program some 50× slower) so that every fetch is the cached one:
//! `valgrind --tool=callgrind --compress-strings=no --dump-before='*callgrind_start*'
//!  --dump-after='*callgrind_stop*' target/release/token_endpoint --count 4000`: the second dump
//! (`callgrind.out.<pid>.2`) holds the `N` requests and nothing else; docs/BENCHMARKS.md has the
//! script that divides and sorts it.
//!
//! The daemon runs with its default caches (a verified API key and a fresh token set are served
//! from memory for 1 s and 5 s); `--cache-off` runs it with both off, as every request read the
//! store before the caches existed.
//!
//! Needs `wrk` and `nginx` on PATH (`apt-get install -y nginx wrk`). The daemon runs in this process
//! (the same `Daemon` as `tokenwarden serve --sandbox`: SQLite store, sandbox platforms in-process,
//! the system clock); one Snapchat connection is made through the sandbox's authorize page and
//! code exchange, and a token-reader API key fetches its token. nginx runs as a child with a
//! configuration written to a temporary directory, listening on 127.0.0.1 on a free port.

use anyhow::{Context, Result, bail};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_bench::{Connector, median};
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::Registry;
use tokenwarden_server::daemon::{CacheConfig, Daemon};
use tokenwarden_store::{ApiKeyRole, Keyring};

const PROVIDER: &str = "snapchat";

#[derive(Debug, Clone, Copy)]
struct Args {
    rounds: usize,
    secs: u64,
    connections: u32,
    threads: u32,
    cache_off: bool,
    count: Option<u32>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        rounds: 5,
        secs: 10,
        connections: 64,
        threads: 2,
        cache_off: false,
        count: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value()?.parse().context("--rounds")?,
            "--secs" => a.secs = value()?.parse().context("--secs")?,
            "--connections" => a.connections = value()?.parse().context("--connections")?,
            "--threads" => a.threads = value()?.parse().context("--threads")?,
            "--cache-off" => a.cache_off = true,
            "--count" => a.count = Some(value()?.parse().context("--count")?),
            "-h" | "--help" => {
                println!(
                    "token_endpoint [--rounds N] [--secs S] [--connections C] [--threads T] [--cache-off] [--count N]"
                );
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {other:?}; expected --rounds N, --secs S, --connections C, --threads T, --cache-off, --count N"
            ),
        }
    }
    if a.rounds == 0 || a.secs == 0 || a.connections == 0 || a.threads == 0 {
        bail!("--rounds, --secs, --connections and --threads must be at least 1");
    }
    if a.threads > a.connections {
        bail!("wrk needs at least as many connections as threads");
    }
    Ok(a)
}

/// Fails with the install command when a tool is missing.
fn require(tool: &str, version_flag: &str) -> Result<()> {
    match Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{tool} is not installed; install it with: apt-get install -y nginx wrk (Debian/Ubuntu)"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot run {tool}")),
    }
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `1.23ms`, `456.00us`, `1.01s` → milliseconds.
fn parse_latency(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * factor)
}

/// Reads wrk's `--latency` report; fails if any response was not 2xx or a socket failed.
fn parse_wrk(out: &str) -> Result<Run> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_latency(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_latency(v);
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            bail!("wrk saw failed responses: {t}");
        } else if t.starts_with("Socket errors:") {
            bail!("wrk saw socket errors: {t}");
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_ms), Some(p99_ms)) => Ok(Run {
            rps,
            p50_ms,
            p99_ms,
        }),
        _ => bail!("cannot read wrk's report:\n{out}"),
    }
}

fn wrk(a: &Args, script: &std::path::Path, url: &str, secs: u64) -> Result<Run> {
    let out = Command::new("wrk")
        .arg(format!("-t{}", a.threads))
        .arg(format!("-c{}", a.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk")?;
    if !out.status.success() {
        bail!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// nginx as a child process, stopped (gracefully) on drop.
struct Nginx {
    child: Child,
    prefix: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts nginx serving `body` as `/token.json` from `dir`; returns it and the file's URL.
fn start_nginx(dir: &std::path::Path, body: &[u8]) -> Result<(Nginx, String)> {
    use std::os::unix::fs::PermissionsExt;
    // nginx's workers run as `nobody` when started by root: they must be able to read the file.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("token.json"), body)?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "worker_processes auto;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           default_type application/json;\n\
           keepalive_requests 100000000;\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             root {d}/www;\n\
           }}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok((
        Nginx {
            child,
            prefix: dir.to_path_buf(),
        },
        format!("http://127.0.0.1:{port}/token.json"),
    ))
}

async fn wait_until_served(http: &reqwest::Client, url: &str, want: &[u8]) -> Result<()> {
    for _ in 0..100 {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
            && r.bytes().await.is_ok_and(|b| b.as_ref() == want)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not serve the expected body within 5 s")
}

fn line(name: &str, runs: &[Run]) -> (f64, f64, f64) {
    let rps = median(&runs.iter().map(|r| r.rps).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let p50 = median(&runs.iter().map(|r| r.p50_ms).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let p99 = median(&runs.iter().map(|r| r.p99_ms).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
    println!(
        "| {name} | {rps:.0} | {p50:.3} | {p99:.3} | {} |",
        all.join(", ")
    );
    (rps, p50, p99)
}

fn main() -> Result<()> {
    tokenwarden_bench::runtime()?.block_on(run())
}

async fn run() -> Result<()> {
    let a = args()?;
    if a.count.is_none() {
        require("wrk", "-v")?;
        require("nginx", "-v")?;
    }

    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let store = tokenwarden_store::open(&url, Keyring::generate("bench")?).await?;
    let (_, reader) = store
        .create_api_key(ApiKeyRole::TokenReader, "bench", clock.now())
        .await?;
    let running = Daemon {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sandbox_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
        apps: vec![],
        store: store.clone(),
        providers: Registry::builtin()?,
        clock: clock.clone(),
        time_scale: 1.0,
        public_url: None,
        owner: "bench".into(),
        key_file: None,
        probe_poll: Some(Duration::from_secs(3600)),
        webhooks: tokenwarden_server::webhooks::WebhookPolicy {
            allow_private: false,
        },
        retention: tokenwarden_server::retention::Retention::default(),
        cache: if a.cache_off {
            CacheConfig::OFF
        } else if a.count.is_some() {
            tokenwarden_bench::counting_cache()
        } else {
            CacheConfig::default()
        },
        proxy_limits: Default::default(),
        http_threads: tokenwarden_bench::http_threads(),
    }
    .start()
    .await?;

    // One real connection: approve at the sandbox, exchange the code, store it.
    let provider = running
        .state
        .providers
        .get(PROVIDER)
        .context("no snapchat provider")?
        .clone();
    let app = store
        .get_app(&ProviderId::parse(PROVIDER)?, &AppId::parse("demo")?)
        .await?
        .context("the daemon registered no demo app")?;
    let connector = Connector::new(store.clone(), provider, app, clock.clone())?;
    let id = ConnectionId::parse("bench-token")?;
    let tokens = connector.grant("bench-user").await?;
    connector.save(&id, &tokens).await?;

    // The token endpoint answers with that token; nginx will serve the very same body.
    let token_url = format!("{}v1/connections/{}/token", running.base, id.as_str());
    let http = reqwest::Client::new();
    let r = http
        .get(&token_url)
        .bearer_auth(reader.expose())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the token endpoint answered {}", r.status());
    }
    let body = r.bytes().await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    if v.get("access_token").and_then(|t| t.as_str()) != Some(tokens.access_token.expose()) {
        bail!("the token endpoint did not hand out the stored token");
    }

    if let Some(n) = a.count {
        let auth = format!("Bearer {}", reader.expose());
        let url = token_url.clone();
        tokio::task::spawn_blocking(move || {
            tokenwarden_bench::fixed_count(&url, Some(&auth), 200, n)
        })
        .await??;
        println!("{n} fetches of a cached token made");
        running.stop().await;
        return Ok(());
    }

    let (nginx, nginx_url) = start_nginx(dir.path(), &body)?;
    wait_until_served(&http, &nginx_url, &body).await?;

    // The same request shape for both: the Authorization header is sent to nginx too.
    let script = dir.path().join("auth.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
            reader.expose()
        ),
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o600))?;
    }

    println!(
        "wrk -t{} -c{} -d{}s --latency; {} rounds, alternating; body {} bytes; caches {}",
        a.threads,
        a.connections,
        a.secs,
        a.rounds,
        body.len(),
        if a.cache_off { "off" } else { "on" }
    );
    // Warm both up (connection pools, page cache, SQLite cache); discarded.
    let run = |url: String, secs: u64| {
        let script = script.clone();
        tokio::task::spawn_blocking(move || wrk(&a, &script, &url, secs))
    };
    run(token_url.clone(), 2).await??;
    run(nginx_url.clone(), 2).await??;
    let mut tw = Vec::new();
    let mut ng = Vec::new();
    for round in 1..=a.rounds {
        let t = run(token_url.clone(), a.secs).await??;
        let n = run(nginx_url.clone(), a.secs).await??;
        println!(
            "round {round}: tokenwarden {:.0} req/s p50 {:.3} ms p99 {:.3} ms | nginx {:.0} req/s p50 {:.3} ms p99 {:.3} ms",
            t.rps, t.p50_ms, t.p99_ms, n.rps, n.p50_ms, n.p99_ms
        );
        tw.push(t);
        ng.push(n);
    }
    println!();
    println!("| server | median req/s | median p50 ms | median p99 ms | req/s per run |");
    println!("|---|--:|--:|--:|---|");
    let (trps, tp50, tp99) = line("tokenwarden `GET /v1/connections/{id}/token`", &tw);
    let (nrps, np50, np99) = line("nginx static file (same body)", &ng);
    println!();
    println!(
        "tokenwarden / nginx: throughput {:.2}×, p50 {:.2}×, p99 {:.2}×",
        trps / nrps,
        tp50 / np50,
        tp99 / np99
    );
    drop(nginx);
    running.stop().await;
    Ok(())
}
