//! Proxy benchmark (not a test): throughput and added latency of `tokenwarden`'s `/proxy` route
//! against a fast upstream, side by side in the same run with nginx as a plain reverse proxy that
//! adds one header (`Authorization`) to the same upstream. The ratio is the figure.
//!
//! ```sh
//! apt-get install -y nginx-light wrk      # for the measurement only
//! cargo run --release -p tokenwarden-bench --bin proxy -- [--secs 5] [--runs 3] [--connections 1,32]
//! ```
//!
//! In one process: the upstream (axum, answers every path with a small JSON body) and the
//! daemon (`tokenwarden serve` minus the sandbox: SQLite store, API key check, token read,
//! classification, shaping) with a provider definition `bench` pointing at the upstream and no
//! published rate limits. nginx runs as a child process (`worker_processes auto`, upstream
//! keep-alive). A fourth target, the *floor*, is the daemon's own HTTP stack doing only what
//! nginx does (its serving threads and shortcut, its pooled outbound client; the path forwarded
//! with one header added, nothing else): what tokenwarden could reach if its own work cost
//! nothing. A fifth, *raw*, is no HTTP library at all on the same serving threads (`httparse` and
//! a per-thread pool of upstream sockets, one task per connection, `Content-Length` answers only):
//! what tokio and the kernel allow, the ceiling of any design on this runtime. `wrk` drives each
//! target in turn — direct to the upstream, through nginx, the floor, raw and tokenwarden — for
//! every concurrency, `--runs` times, and the medians are printed with four ratios:
//! tokenwarden / nginx (the issue's figure), floor / nginx (the stack's), raw / nginx (the
//! runtime's) and tokenwarden / floor (the daemon's own work). Added latency is a target's
//! percentile minus the direct one at the same concurrency.
//!
//! `--count N` measures instead the cost of one proxied call in instructions, which a loaded
//! machine does not change: no wrk, no nginx; `N` calls one after another over one connection with
//! a bare client (`tokenwarden_bench::fixed_count`), bracketed for callgrind, with the caches'
//! TTLs at an hour (valgrind runs the program some 50× slower). The count includes the in-process
//! upstream's work: compare counts with each other, not with nginx. `--count N --floor` counts
//! the floor the same way, `--count N --raw` raw.
//! `valgrind --tool=callgrind --compress-strings=no --dump-before='*callgrind_start*'
//!  --dump-after='*callgrind_stop*' target/release/proxy --count 4000`: the second dump
//! (`callgrind.out.<pid>.2`) holds the `N` requests and nothing else; docs/BENCHMARKS.md has the
//! script that divides and sorts it.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use anyhow::{Context, Result, bail};
use axum::Router;
use chrono::Utc;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::{Endpoints, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_server::daemon::{CacheConfig, Daemon};
use tokenwarden_store::{ApiKeyRole, Keyring};

struct Args {
    secs: u64,
    runs: usize,
    connections: Vec<u32>,
    count: Option<u32>,
    /// `--count` measures the floor (below) instead of tokenwarden.
    floor: bool,
    /// `--count` measures raw (below) instead of tokenwarden.
    raw: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        secs: 5,
        runs: 3,
        connections: vec![1, 32],
        count: None,
        floor: false,
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value()?.parse().context("--secs")?,
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--connections" => {
                a.connections = value()?
                    .split(',')
                    .map(|c| c.trim().parse().context("--connections"))
                    .collect::<Result<_>>()?
            }
            "--count" => a.count = Some(value()?.parse().context("--count")?),
            "--floor" => a.floor = true,
            "--raw" => a.raw = true,
            "-h" | "--help" => {
                println!(
                    "proxy [--secs S] [--runs N] [--connections 1,32] [--count N [--floor | --raw]]"
                );
                std::process::exit(0);
            }
            other => {
                bail!(
                    "unknown argument {other:?}; expected --secs, --runs, --connections, --count, --floor, --raw"
                )
            }
        }
    }
    Ok(a)
}

const BODY: &str = r#"{"request_status":"SUCCESS","request_id":"5f1c","me":{"id":"8a7f7f4e-0c2b-4f59-9d38-3d4a9d0f1a11","display_name":"bench"}}"#;

fn definition(base: &str) -> String {
    format!(
        r#"
id = "bench"
name = "Benchmark upstream"
docs_url = "https://example.invalid/docs"

[authorize]
url = "https://example.invalid/authorize"

[token.exchange]
method = "POST"
url = "https://example.invalid/token"
encoding = "form"
params = {{ grant_type = "authorization_code", code = "{{code}}" }}

[refresh]
style = "none"
token_expires = false
margin = "0s"

[api]
base_url = "{base}"
probe = {{ method = "GET", path = "/me" }}
"#
    )
}

async fn serve(router: Router) -> Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, router).await });
    Ok(format!("http://{addr}"))
}

/// One wrk run: requests/s, p50 and p99 in microseconds, non-2xx count.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn micros(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * mult)
}

fn wrk(url: &str, connections: u32, secs: u64, header: Option<&str>) -> Result<Figures> {
    let threads = connections.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.args([
        "--latency",
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{secs}s"),
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Figures {
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        errors: 0,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => f.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => f.p50_us = micros(v).unwrap_or(0.0),
            ["99%", v] => f.p99_us = micros(v).unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => f.errors = n.parse().unwrap_or(0),
            ["Socket", "errors:", ..] => f.errors += 1,
            _ => {}
        }
    }
    if f.rps == 0.0 {
        bail!("wrk printed no figures for {url}:\n{text}");
    }
    Ok(f)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The nginx master (and its configuration, to stop it with `-s stop` so that its workers go too).
struct Nginx(std::process::Child, std::path::PathBuf);

impl Drop for Nginx {
    fn drop(&mut self) {
        let stopped = Command::new("nginx")
            .args(["-p", &self.1.display().to_string(), "-c"])
            .arg(self.1.join("nginx.conf"))
            .args(["-s", "stop"])
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn nginx(dir: &std::path::Path, upstream: &str) -> Result<(Nginx, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let up = upstream.trim_start_matches("http://");
    let conf = format!(
        r#"worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream platform {{ server {up}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://platform;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-access-token";
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new("nginx")
        .args(["-p", &dir.display().to_string(), "-c"])
        .arg(&path)
        .args(["-g", "daemon off;"])
        .spawn()
        .context("starting nginx (apt-get install -y nginx-light)")?;
    let guard = Nginx(child, dir.to_path_buf());
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((guard, format!("http://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nginx did not start; see {}/error.log", dir.display())
}

/// The floor: the same serving stack as the daemon (its HTTP serving threads, its
/// [`Shortcut`](tokenwarden_http::Shortcut) before the router, its pooled outbound client) doing
/// nothing but what nginx's configuration does: forward the path with one header added and hand
/// the answer back. No API key, no token read, no classification, no shaping. The gap between it
/// and tokenwarden is the daemon's own work; the gap between it and nginx is the stack's.
struct Floor {
    client: tokenwarden_engine::PooledClient,
    upstream: url::Url,
}

impl tokenwarden_http::Shortcut for Floor {
    fn answer(
        &self,
        req: axum::extract::Request,
        _peer: std::net::SocketAddr,
    ) -> Result<tokenwarden_http::Answer, axum::extract::Request> {
        // As the daemon does (`engine::target::build`): the path set on the parsed base.
        let mut url = self.upstream.clone();
        url.set_path(req.uri().path());
        let client = self.client.clone();
        Ok(tokenwarden_http::Answer::Pending(Box::pin(async move {
            use axum::response::IntoResponse;
            use tokenwarden_engine::call::Transport;
            let mut out = reqwest::Request::new(reqwest::Method::GET, url);
            out.headers_mut().insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_static("Bearer bench-access-token"),
            );
            let answer = match tokenwarden_engine::PooledTransport(&client).send(out).await {
                Ok(a) => a,
                Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.message).into_response(),
            };
            let (parts, mut answer) = answer.into_parts();
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await {
                let Ok(chunk) = chunk else {
                    return axum::http::StatusCode::BAD_GATEWAY.into_response();
                };
                body.extend_from_slice(&chunk);
            }
            let mut resp = axum::response::Response::new(axum::body::Body::from(body));
            *resp.status_mut() = parts.status;
            *resp.headers_mut() = parts.headers;
            resp
        })))
    }
}

/// Starts the floor on its own serving threads (as many as the daemon's); its base URL, and what
/// keeps it running.
async fn floor(upstream: &str) -> Result<(String, tokenwarden_http::Shards)> {
    let shards = tokenwarden_http::Shards::start(tokenwarden_bench::http_threads())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let client = tokenwarden_engine::PooledClient::new(tokenwarden_engine::transport::Timeouts {
        connect: Duration::from_secs(10),
        read: Duration::from_secs(30),
    })?;
    let routes = tokenwarden_http::Routes::with_shortcut(
        Router::new(),
        Floor {
            client,
            upstream: url::Url::parse(upstream)?,
        },
    );
    let handles = shards.handles().to_vec();
    tokio::spawn(async move {
        tokenwarden_http::serve_sharded(
            listener,
            routes,
            tokenwarden_http::Limits::default(),
            std::future::pending(),
            &handles,
        )
        .await
    });
    Ok((base, shards))
}

fn main() -> Result<()> {
    tokenwarden_bench::runtime()?.block_on(run())
}

async fn run() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let upstream =
        serve(Router::new().fallback(|| async { ([("content-type", "application/json")], BODY) }))
            .await?;
    let api_base = format!("{upstream}/api");

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let store = tokenwarden_store::open(&url, Keyring::generate("k1")?).await?;
    let (_, key) = store
        .create_api_key(ApiKeyRole::TokenReader, "bench", clock.now())
        .await?;
    let now = Utc::now();
    let id = ConnectionId::parse("bench")?;
    store
        .put_connection(&Connection {
            id: id.clone(),
            provider: ProviderId::parse("bench")?,
            app: AppId::parse("bench")?,
            state: ConnectionState::Active,
            environment: Environment::Production,
            region: None,
            api_base: api_base.clone(),
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: vec![],
            problems: vec![],
            created_at: now,
            updated_at: now,
        })
        .await?;
    store
        .put_initial_tokens(
            &id,
            &TokenSet {
                access_token: Secret::new("bench-access-token"),
                refresh_token: None,
                token_type: None,
                scopes: vec![],
                issued_at: now,
                expires_at: None,
                refresh_expires_at: None,
                token_secret: None,
            },
        )
        .await?;
    let d = Daemon {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sandbox_listener: None,
        apps: vec![],
        store,
        // The bench upstream is plain http on loopback: allowed explicitly.
        providers: Registry::with_files_allowing(
            [("bench.toml".to_string(), definition(&api_base))],
            Endpoints::AllowHttp,
        )?,
        clock,
        time_scale: 1.0,
        public_url: None,
        owner: "bench".into(),
        key_file: None,
        probe_poll: Some(Duration::from_secs(3600)),
        webhooks: tokenwarden_server::webhooks::WebhookPolicy::default(),
        retention: tokenwarden_server::retention::Retention::default(),
        cache: if a.count.is_some() {
            tokenwarden_bench::counting_cache()
        } else {
            CacheConfig::default()
        },
        proxy_limits: Default::default(),
        http_threads: tokenwarden_bench::http_threads(),
    }
    .start()
    .await?;
    if let (Some(n), true) = (a.count, a.floor) {
        let (base, _shards) = floor(&upstream).await?;
        let url = format!("{base}/api/me");
        tokio::task::spawn_blocking(move || tokenwarden_bench::fixed_count(&url, None, 200, n))
            .await??;
        println!("{n} calls through the floor made");
        drop(d);
        return Ok(());
    }
    if let (Some(n), true) = (a.count, a.raw) {
        let (base, _shards) = raw::start(&upstream).await?;
        let url = format!("{base}/api/me");
        tokio::task::spawn_blocking(move || tokenwarden_bench::fixed_count(&url, None, 200, n))
            .await??;
        println!("{n} calls through raw made");
        drop(d);
        return Ok(());
    }
    if let Some(n) = a.count {
        let auth = format!("Bearer {}", key.expose());
        let url = format!("{}proxy/bench/me", d.base);
        tokio::task::spawn_blocking(move || {
            tokenwarden_bench::fixed_count(&url, Some(&auth), 200, n)
        })
        .await??;
        println!("{n} proxied calls made");
        drop(d);
        return Ok(());
    }
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let (_nginx, nginx_base) = nginx(&nginx_dir, &upstream)?;

    let (floor_base, _floor_shards) = floor(&upstream).await?;
    let (raw_base, _raw_shards) = raw::start(&upstream).await?;

    let auth = format!("Authorization: Bearer {}", key.expose());
    let targets: [(&str, String, Option<&str>); 5] = [
        ("direct", format!("{api_base}/me"), None),
        ("nginx", format!("{nginx_base}/api/me"), None),
        ("floor", format!("{floor_base}/api/me"), None),
        ("raw", format!("{raw_base}/api/me"), None),
        (
            "tokenwarden",
            format!("{}proxy/bench/me", d.base),
            Some(&auth),
        ),
    ];
    // A proxied call must work before it is measured.
    let check = reqwest::Client::new()
        .get(&targets[4].1)
        .bearer_auth(key.expose())
        .send()
        .await?;
    if !check.status().is_success() {
        bail!("the proxy answered {} to the first call", check.status());
    }

    println!(
        "{} s per run, {} runs, medians; added = target − direct at the same concurrency",
        a.secs, a.runs
    );
    println!("| concurrency | target | req/s | p50 | p99 | added p50 | added p99 | non-2xx |");
    println!("|--:|---|--:|--:|--:|--:|--:|--:|");
    for &c in &a.connections {
        let mut all: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
        for _ in 0..a.runs {
            for (i, (_, url, header)) in targets.iter().enumerate() {
                let url = url.clone();
                let header = header.map(str::to_string);
                let secs = a.secs;
                let f = tokio::task::spawn_blocking(move || wrk(&url, c, secs, header.as_deref()))
                    .await??;
                all[i].push(f);
            }
        }
        let med = |i: usize| Figures {
            rps: median(all[i].iter().map(|f| f.rps).collect()),
            p50_us: median(all[i].iter().map(|f| f.p50_us).collect()),
            p99_us: median(all[i].iter().map(|f| f.p99_us).collect()),
            errors: all[i].iter().map(|f| f.errors).sum(),
        };
        let direct = med(0);
        let mut rows = Vec::new();
        for (i, (name, _, _)) in targets.iter().enumerate() {
            let m = med(i);
            println!(
                "| {c} | {name} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} |",
                m.rps,
                m.p50_us,
                m.p99_us,
                m.p50_us - direct.p50_us,
                m.p99_us - direct.p99_us,
                m.errors
            );
            rows.push(m);
        }
        let (ng, fl, rw, tw) = (rows[1], rows[2], rows[3], rows[4]);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        for (name, x, y) in [
            ("tokenwarden / nginx", tw, ng),
            ("floor / nginx", fl, ng),
            ("raw / nginx", rw, ng),
            ("tokenwarden / floor", tw, fl),
        ] {
            println!(
                "| {c} | **{name}** | {:.2}× | | | {:.2}× | {:.2}× | |",
                ratio(x.rps, y.rps),
                ratio(x.p50_us - direct.p50_us, y.p50_us - direct.p50_us),
                ratio(x.p99_us - direct.p99_us, y.p99_us - direct.p99_us),
            );
        }
    }
    drop(_nginx);
    drop(_floor_shards);
    // The daemon's graceful stop would wait for idle keep-alive connections; a benchmark just ends.
    drop(d);
    Ok(())
}

/// The ceiling (a measurement, not a design: it trusts the upstream and knows only `GET` and
/// `Content-Length`): a proxy with no HTTP library at all on the same serving threads. Each
/// connection is one task that parses the request head with `httparse`, writes the upstream
/// request on a per-thread pooled connection, reads the answer's head and `Content-Length` body
/// and writes the bytes back. No task hops, no channels, no header maps: the least a tokio
/// program can do for a proxied call. The gap between it and nginx is tokio's (and the
/// kernel's, for its I/O pattern); between it and the floor, the HTTP stack's.
mod raw {
    use std::cell::RefCell;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    thread_local! {
        static POOL: RefCell<Vec<TcpStream>> = const { RefCell::new(Vec::new()) };
    }

    pub async fn start(upstream: &str) -> anyhow::Result<(String, tokenwarden_http::Shards)> {
        let shards = tokenwarden_http::Shards::start(tokenwarden_bench::http_threads())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let up: SocketAddr = upstream.trim_start_matches("http://").parse()?;
        for h in shards.handles() {
            let l = listener.try_clone()?;
            h.spawn(async move {
                let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                    return;
                };
                while let Ok((s, _)) = l.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = conn(s, up).await;
                    });
                }
            });
        }
        Ok((base, shards))
    }

    async fn conn(mut s: TcpStream, up: SocketAddr) -> std::io::Result<()> {
        let host = up.to_string();
        let mut inb = bytes::BytesMut::with_capacity(4096);
        let mut out: Vec<u8> = Vec::with_capacity(512);
        let mut resp = bytes::BytesMut::with_capacity(4096);
        loop {
            // The request's head.
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&inb) {
                    Ok(httparse::Status::Complete(n)) => {
                        out.clear();
                        out.extend_from_slice(b"GET ");
                        out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
                        out.extend_from_slice(host.as_bytes());
                        out.extend_from_slice(
                            b"\r\nauthorization: Bearer bench-access-token\r\n\r\n",
                        );
                        let _ = inb.split_to(n);
                        break;
                    }
                    Ok(httparse::Status::Partial) => {
                        if s.read_buf(&mut inb).await? == 0 {
                            return Ok(());
                        }
                    }
                    Err(_) => return Ok(()),
                }
            }
            let mut u = match POOL.with(|p| p.borrow_mut().pop()) {
                Some(u) => u,
                None => {
                    let u = TcpStream::connect(up).await?;
                    u.set_nodelay(true)?;
                    u
                }
            };
            u.write_all(&out).await?;
            resp.clear();
            let total = loop {
                if u.read_buf(&mut resp).await? == 0 {
                    return Ok(());
                }
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Response::new(&mut headers);
                if let Ok(httparse::Status::Complete(n)) = r.parse(&resp) {
                    let len = r
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                        .unwrap_or(0);
                    break n + len;
                }
            };
            while resp.len() < total {
                if u.read_buf(&mut resp).await? == 0 {
                    return Ok(());
                }
            }
            s.write_all(&resp).await?;
            POOL.with(|p| p.borrow_mut().push(u));
        }
    }
}
