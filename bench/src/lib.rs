//! Helpers the benchmark binaries share: obtaining a real grant at the sandbox (the authorize
//! page's approve POST, then the code exchange through [`OAuthClient`]), storing it as an active
//! connection through the [`Store`] API, peak memory, and the median.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::policy;
use tokenwarden_core::provider::Provider;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_oauth::{AppCredentials, OAuthClient};
use tokenwarden_store::{App, Store};

/// What it takes to connect accounts of one provider's demo app at the sandbox.
#[derive(Debug, Clone)]
pub struct Connector {
    /// A plain client for the authorize POST (no redirects followed).
    pub http: reqwest::Client,
    /// The daemon's provider client, for the code exchange.
    pub oauth: OAuthClient,
    /// Where tokens and connections go.
    pub store: Arc<dyn Store>,
    /// The provider, pointed at the sandbox.
    pub provider: Arc<Provider>,
    /// The demo app (`demo-<provider>` / `demo-<provider>-secret`) as the daemon knows it.
    pub app: App,
    /// The clock the daemon and the sandbox share.
    pub clock: Arc<dyn Clock>,
}

impl Connector {
    /// A connector with its own HTTP client.
    pub fn new(
        store: Arc<dyn Store>,
        provider: Arc<Provider>,
        app: App,
        clock: Arc<dyn Clock>,
    ) -> Result<Connector> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()?;
        let oauth = OAuthClient::new(clock.clone())?;
        Ok(Connector {
            http,
            oauth,
            store,
            provider,
            app,
            clock,
        })
    }

    fn creds(&self) -> AppCredentials {
        AppCredentials {
            client_id: self.app.client_id.clone(),
            client_secret: self.app.client_secret.clone(),
            redirect_uri: self.app.redirect_uri.clone(),
            user_agent: self.app.user_agent.clone(),
        }
    }

    /// Approves at the sandbox's authorize page as `account` and exchanges the code: a real
    /// grant, as a person's click would make it.
    pub async fn grant(&self, account: &str) -> Result<TokenSet> {
        let creds = self.creds();
        let state = format!("bench-{account}");
        let authorize = self.oauth.authorize_url(
            &self.provider,
            &creds,
            &state,
            &self.provider.spec.authorize.default_scopes,
            None,
        );
        let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        form.push(("decision".into(), "approve".into()));
        form.push(("account".into(), account.into()));
        let r = self
            .http
            .post(format!(
                "{}{}",
                authorize.origin().ascii_serialization(),
                authorize.path()
            ))
            .form(&form)
            .send()
            .await
            .context("authorize POST")?;
        if r.status().as_u16() != 302 {
            bail!("the authorize POST answered {}", r.status());
        }
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("the authorize POST sent no Location")?;
        let callback = url::Url::parse(location).context("the authorize Location")?;
        let code = callback
            .query_pairs()
            .find(|(k, _)| k == "code" || k == "auth_code")
            .map(|(_, v)| v.into_owned())
            .context("no code in the redirect")?;
        let grant = self
            .oauth
            .exchange_code(&self.provider, &creds, &Secret::new(code), None)
            .await
            .map_err(|e| anyhow::anyhow!("code exchange: {e}"))?;
        Ok(grant.tokens)
    }

    /// Stores `tokens` as the active connection `id` and schedules its refresh by the provider's
    /// policy (margin and jitter), as the callback does. Returns the refresh deadline.
    pub async fn save(
        &self,
        id: &ConnectionId,
        tokens: &TokenSet,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let now = self.clock.now();
        let conn = Connection {
            id: id.clone(),
            provider: self.app.provider.clone(),
            app: self.app.id.clone(),
            state: ConnectionState::Active,
            environment: Environment::Production,
            region: None,
            api_base: self.provider.spec.api.base_url.to_string(),
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: tokens.scopes.clone(),
            problems: vec![],
            created_at: now,
            updated_at: now,
        };
        self.store.put_connection(&conn).await?;
        let stored = self.store.put_initial_tokens(id, tokens).await?;
        let due = policy::refresh_due_at(
            &self.provider.spec.refresh,
            &stored.set,
            rand::random::<f64>(),
        );
        self.store.set_next_refresh(id, due).await?;
        Ok(due)
    }
}

/// The demo app the sandbox registers for `provider`, as the daemon stores it.
pub fn demo_app(
    provider: &str,
    redirect_uri: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<App> {
    Ok(App {
        provider: tokenwarden_core::id::ProviderId::parse(provider)?,
        id: tokenwarden_core::id::AppId::parse("demo")?,
        client_id: format!("demo-{provider}"),
        client_secret: Secret::new(format!("demo-{provider}-secret")),
        redirect_uri: redirect_uri.to_string(),
        developer_token: None,
        user_agent: None,
        refresh_token_ends_after: None,
        identity: None,
        environment: tokenwarden_core::connection::Environment::Production,
        region: None,
        created_at: now,
        updated_at: now,
    })
}

/// Peak resident memory of this process (`VmHWM` in /proc/self/status), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A number that differs between runs and processes, for scratch names (not for secrets).
pub fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0x7fff_ffff
}

/// A PostgreSQL database of its own for one benchmark run, created through `admin` (a URL to any
/// database of the server) and dropped by [`ScratchPostgres::drop`].
pub struct ScratchPostgres {
    admin: sqlx::PgConnection,
    name: String,
    /// The scratch database's URL (the admin URL with the database name replaced).
    pub url: String,
}

impl std::fmt::Debug for ScratchPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchPostgres")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScratchPostgres {
    /// Creates `tw_bench_<random>` on the server `admin` points at.
    pub async fn create(admin: &str) -> Result<ScratchPostgres> {
        use sqlx::Connection as _;
        let name = format!("tw_bench_{}", rand_u32());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .with_context(|| format!("connecting to {admin}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let (base, query) = admin
            .split_once('?')
            .map_or((admin, None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Ok(ScratchPostgres {
            admin: conn,
            name,
            url,
        })
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop(mut self) -> Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await?;
        Ok(())
    }
}

/// Marks where `valgrind --tool=callgrind --dump-before='*callgrind_start*'` starts counting anew.
#[inline(never)]
pub fn callgrind_start() {
    // A body of its own: two identical functions would be folded into one symbol.
    std::hint::black_box(1u8);
}

/// Marks where `valgrind --tool=callgrind --dump-after='*callgrind_stop*'` writes its counts.
#[inline(never)]
pub fn callgrind_stop() {
    std::hint::black_box(2u8);
}

/// The caches for a `--count` run: the defaults with an hour's TTL, so that under valgrind (some
/// 50× slower) every request is the cached one, as nearly every request is at full speed.
pub fn counting_cache() -> tokenwarden_server::daemon::CacheConfig {
    tokenwarden_server::daemon::CacheConfig {
        token_ttl: std::time::Duration::from_secs(3600),
        api_key_ttl: std::time::Duration::from_secs(3600),
        ..Default::default()
    }
}

/// For instruction counts (`--count N` of the token endpoint and proxy benchmarks): sends `warm`
/// and then `n` GET requests to `http://host:port/path` one after another over one keep-alive
/// connection, with a bare HTTP/1.1 client that costs a few thousand instructions a request, so
/// that what callgrind counts between [`callgrind_start`] and [`callgrind_stop`] is the server's
/// work (and the loopback syscalls). Every answer must be a 2xx. Blocking: call it off the runtime.
pub fn fixed_count(url: &str, authorization: Option<&str>, warm: u32, n: u32) -> Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not http://"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let stream = std::net::TcpStream::connect(host)?;
    stream.set_nodelay(true)?;
    let mut request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(a) = authorization {
        request.push_str(&format!("Authorization: {a}\r\n"));
    }
    request.push_str("\r\n");
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut one = |reader: &mut BufReader<std::net::TcpStream>| -> Result<()> {
        writer.write_all(request.as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status line: {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("the connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        match (length, chunked) {
            (Some(n), false) => {
                body.resize(n, 0);
                reader.read_exact(&mut body)?;
            }
            (_, true) => loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                body.resize(size + 2, 0);
                reader.read_exact(&mut body)?;
                if size == 0 {
                    break;
                }
            },
            (None, false) => bail!("an answer with neither a length nor chunks"),
        }
        if !(200..300).contains(&status) {
            bail!("answered {status}");
        }
        Ok(())
    };
    for _ in 0..warm {
        one(&mut reader)?;
    }
    callgrind_start();
    for _ in 0..n {
        one(&mut reader)?;
    }
    callgrind_stop();
    Ok(())
}

/// The daemon's HTTP serving threads, as `tokenwarden serve` chooses them (one per core), or
/// `TW_HTTP_THREADS` (0: requests served on the shared runtime's workers, as before issue 19's
/// per-thread serving).
pub fn http_threads() -> usize {
    std::env::var("TW_HTTP_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
}

/// The benchmarks' runtime: tokio's multi-thread runtime as `tokenwarden serve` builds it, with
/// `TW_WORKERS`, `TW_EVENT_INTERVAL` and `TW_GLOBAL_QUEUE_INTERVAL` to try other settings.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    let env = |name: &str| -> Option<u32> { std::env::var(name).ok().and_then(|v| v.parse().ok()) };
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = env("TW_WORKERS") {
        b.worker_threads(n as usize);
    }
    if let Some(n) = env("TW_EVENT_INTERVAL") {
        b.event_interval(n);
    }
    if let Some(n) = env("TW_GLOBAL_QUEUE_INTERVAL") {
        b.global_queue_interval(n);
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }
}
