//! The proxy's own outbound client: a pooled hyper-util client (HTTP/1.1 keep-alive to each
//! platform host) behind the [`Transport`] trait, with the trust, timeouts and redirect rule of
//! the reqwest client it replaces (issue 19: reqwest's per-call work, two URL parses among it, was
//! a quarter of a proxied call).
//!
//! Same as that reqwest client (`reqwest 0.12`, `rustls-tls`): rustls with the ring provider,
//! Mozilla's roots from `webpki-roots` and nothing else, TLS 1.2 and 1.3, SNI, ALPN `http/1.1`;
//! `TCP_NODELAY` and reqwest's TCP keep-alive and user timeout; a connect timeout over the TCP
//! connection and the TLS handshake; a read timeout on the answer's head and between the body's
//! chunks; up to [`PooledClient::MAX_IDLE_PER_HOST`] idle connections per host kept 90 s; an
//! `Accept: */*` when the caller sent none; redirects are never followed (hyper follows none:
//! hardening rule 7). Bodies stream both ways; the engine applies its limits as before.

use crate::call::{SendError, Transport};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::ResponseBuilderExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type HyperClient = Client<TimedConnector, reqwest::Body>;

/// A pooled HTTP/1.1 client for calls to the platforms; cheap to share (`Arc` inside).
///
/// Each thread that calls gets its own pool (up to [`PooledClient::MAX_THREAD_POOLS`] threads;
/// calls from any further thread share one). A connection's task runs on the runtime that opened
/// it, so with one pool per thread a call made on one of the daemon's HTTP serving threads
/// (`tokenwarden_http::Shards`, one single-threaded runtime each) is written, answered and read
/// on that thread, never handed to another core and woken back (issue 19). It also means a
/// serving thread never depends on a connection whose task lives on another.
#[derive(Clone)]
pub struct PooledClient {
    pools: Arc<Pools>,
    read_timeout: Duration,
}

struct Pools {
    /// Tells this client's entry in a thread's [`LAST_POOL`] from another client's.
    id: usize,
    connector: TimedConnector,
    /// For threads beyond [`PooledClient::MAX_THREAD_POOLS`].
    shared: Arc<HyperClient>,
    per_thread: parking_lot::RwLock<Vec<(std::thread::ThreadId, Arc<HyperClient>)>>,
}

static NEXT_POOLS_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The pool this thread used last, and whose: a call finds its own without a lock.
    static LAST_POOL: std::cell::RefCell<Option<(usize, std::sync::Weak<HyperClient>)>> =
        const { std::cell::RefCell::new(None) };
}

impl Pools {
    fn build(connector: TimedConnector) -> HyperClient {
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(PooledClient::IDLE_TIMEOUT)
            .pool_max_idle_per_host(PooledClient::MAX_IDLE_PER_HOST)
            .build(connector)
    }

    /// This thread's client.
    fn here(&self) -> Arc<HyperClient> {
        let cached = LAST_POOL.with_borrow(|last| match last {
            Some((id, pool)) if *id == self.id => pool.upgrade(),
            _ => None,
        });
        if let Some(pool) = cached {
            return pool;
        }
        let me = std::thread::current().id();
        let found = self
            .per_thread
            .read()
            .iter()
            .find(|(t, _)| *t == me)
            .map(|(_, p)| p.clone());
        let pool = found.unwrap_or_else(|| {
            let mut all = self.per_thread.write();
            if all.len() >= PooledClient::MAX_THREAD_POOLS {
                return self.shared.clone();
            }
            let pool = Arc::new(Self::build(self.connector.clone()));
            all.push((me, pool.clone()));
            pool
        });
        LAST_POOL.set(Some((self.id, Arc::downgrade(&pool))));
        pool
    }
}

impl std::fmt::Debug for PooledClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledClient")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

/// How the [`PooledClient`] waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing a TCP connection.
    pub connect: Duration,
    /// The answer's head, and each gap between the body's chunks.
    pub read: Duration,
}

impl PooledClient {
    /// Idle keep-alive connections kept per host.
    pub const MAX_IDLE_PER_HOST: usize = 256;
    /// How long an idle connection is kept (reqwest's default).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Threads that get a pool of their own; calls from any further thread share one.
    pub const MAX_THREAD_POOLS: usize = 64;

    /// A client with `timeouts`.
    pub fn new(timeouts: Timeouts) -> Result<PooledClient, ClientError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.connect));
        // reqwest's TCP settings: keep-alive probes after 15 s idle, every 15 s, 3 of them; and
        // unacknowledged data gives up after 30 s.
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_keepalive_interval(Some(Duration::from_secs(15)));
        http.set_keepalive_retries(Some(3));
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let https = TimedConnector {
            inner: https,
            timeout: timeouts.connect,
        };
        Ok(PooledClient {
            pools: Arc::new(Pools {
                id: NEXT_POOLS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                shared: Arc::new(Pools::build(https.clone())),
                connector: https,
                per_thread: parking_lot::RwLock::new(Vec::new()),
            }),
            read_timeout: timeouts.read,
        })
    }
}

/// reqwest's: the ring provider (unless the process installed another), TLS 1.2 and 1.3, the
/// webpki roots only, no client certificate, SNI on.
fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(ClientError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.enable_sni = true;
    // ALPN stays empty here: hyper-rustls sets `http/1.1` (HTTP/1 only is enabled).
    Ok(tls)
}

/// The TLS configuration could not be built (a crypto provider without TLS 1.2 or 1.3).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the outbound client: {0}")]
pub struct ClientError(rustls::Error);

/// The connect timeout over the TCP connection and the TLS handshake together, as reqwest's.
#[derive(Clone)]
struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for TimedConnector {
    type Response = <HttpsConnector<HttpConnector> as tower_service::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r,
                Err(_) => Err(BoxError::from("connecting timed out")),
            }
        })
    }
}

/// The engine's transport over a [`PooledClient`].
#[derive(Debug)]
pub struct PooledTransport<'a>(pub &'a PooledClient);

fn send_error(e: &hyper_util::client::legacy::Error) -> SendError {
    // hyper-util's own words (no URL: it never puts one in its errors), with the cause's kind.
    let message = match std::error::Error::source(e) {
        Some(cause) => format!("error sending request: {cause}"),
        None => format!("error sending request: {e}"),
    };
    SendError {
        connect: e.is_connect(),
        message,
    }
}

#[async_trait::async_trait]
impl Transport for PooledTransport<'_> {
    async fn send(&mut self, req: reqwest::Request) -> Result<reqwest::Response, SendError> {
        let url = req.url().clone();
        let mut req: http::Request<reqwest::Body> = match req.try_into() {
            Ok(r) => r,
            Err(e) => return Err(SendError::from_reqwest(e)),
        };
        if let http::header::Entry::Vacant(v) = req.headers_mut().entry(http::header::ACCEPT) {
            v.insert(http::HeaderValue::from_static("*/*"));
        }
        // hyper-util would write `Host` from the URI on every call (a `format!` and a validation
        // pass); the same value, kept per thread while the calls go to the same host.
        if let Some(host) = host_header(&url) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let read = self.0.read_timeout;
        let client = self.0.pools.here();
        let resp = match tokio::time::timeout(read, client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(send_error(&e)),
            Err(_) => {
                return Err(SendError {
                    connect: false,
                    message: "error sending request: operation timed out".into(),
                });
            }
        };
        let (parts, body) = resp.into_parts();
        let body = reqwest::Body::wrap(ReadTimeout {
            inner: body,
            timeout: read,
            sleep: None,
        });
        // The answer carries the URL it came from, as reqwest's do (no parse: the request's).
        let mut answer = http::Response::builder()
            .url(url)
            .body(body)
            .map_err(|_| SendError {
                connect: false,
                message: "error reading the answer".into(),
            })?;
        *answer.status_mut() = parts.status;
        *answer.version_mut() = parts.version;
        *answer.headers_mut() = parts.headers;
        answer.extensions_mut().extend(parts.extensions);
        Ok(reqwest::Response::from(answer))
    }
}

thread_local! {
    /// The `Host` header last written on this thread, and the URL part it was written from.
    static LAST_HOST: std::cell::RefCell<Option<(String, http::HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `Host` as hyper-util writes it: the host, and the port when it is not the scheme's default
/// (`Url` leaves a default port out). The caller's own `Host` never reaches here
/// (`headers::outbound` drops it).
fn host_header(url: &url::Url) -> Option<http::HeaderValue> {
    url.host_str()?;
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    LAST_HOST.with_borrow_mut(|last| match last {
        Some((seen, value)) if seen == authority => Some(value.clone()),
        _ => {
            let value = http::HeaderValue::from_str(authority).ok()?;
            *last = Some((authority.to_string(), value.clone()));
            Some(value)
        }
    })
}

/// A response body that fails when no chunk arrives within `timeout` of the last (reqwest's read
/// timeout on the body).
struct ReadTimeout {
    inner: hyper::body::Incoming,
    timeout: Duration,
    /// Armed while a frame is awaited; `None` between frames so that a body read at once costs
    /// no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("operation timed out while reading the answer")]
struct BodyTimedOut;

impl HttpBody for ReadTimeout {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.sleep = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + timeout))
                });
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn client(read: Duration) -> PooledClient {
        PooledClient::new(Timeouts {
            connect: Duration::from_secs(5),
            read,
        })
        .unwrap()
    }

    /// An upstream that answers each connection's first request with `answer` and hands back
    /// the request's head.
    async fn upstream(
        answer: &'static str,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    // Each request on the connection (keep-alive), bodies never sent.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                        buf.clear();
                        if answer.is_empty() {
                            // An answer that never comes: held open until the client leaves.
                            let _ = s.read(&mut chunk).await;
                            return;
                        }
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, rx)
    }

    fn get(url: &str) -> reqwest::Request {
        reqwest::Request::new(reqwest::Method::GET, url::Url::parse(url).unwrap())
    }

    #[tokio::test]
    async fn a_redirect_is_handed_back_not_followed() {
        let (elsewhere, mut hits) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let answer: &'static str = Box::leak(
            format!("HTTP/1.1 302 Found\r\nlocation: {elsewhere}/x\r\ncontent-length: 0\r\n\r\n")
                .into_boxed_str(),
        );
        let (base, _) = upstream(answer).await;
        let c = client(Duration::from_secs(30));
        let r = PooledTransport(&c)
            .send(get(&format!("{base}/a")))
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.url().as_str(), format!("{base}/a"));
        assert!(hits.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn accept_is_added_only_when_the_caller_sent_none() {
        let (base, mut seen) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let c = client(Duration::from_secs(30));
        let r = PooledTransport(&c)
            .send(get(&format!("{base}/a")))
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        let head = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
        let mut req = get(&format!("{base}/b"));
        req.headers_mut()
            .insert("accept", http::HeaderValue::from_static("application/json"));
        PooledTransport(&c).send(req).await.unwrap();
        let head = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("\r\naccept: application/json\r\n"), "{head}");
        assert!(!head.contains("*/*"), "{head}");
    }

    #[test]
    fn host_is_what_hyper_util_would_write() {
        for (url, host) in [
            ("http://127.0.0.1:8080/a", "127.0.0.1:8080"),
            ("https://ads.example.com/v1?x=1", "ads.example.com"),
            ("https://ads.example.com:443/v1", "ads.example.com"),
            ("http://ads.example.com:80/v1", "ads.example.com"),
            ("http://ads.example.com:443/v1", "ads.example.com:443"),
            ("https://ads.example.com:8443/v1", "ads.example.com:8443"),
            ("https://[::1]:9000/", "[::1]:9000"),
            ("https://user:pw@ads.example.com/", "ads.example.com"),
            ("https://ads.example.com/again", "ads.example.com"),
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert_eq!(host_header(&parsed).unwrap(), host, "{url}");
            // The same as hyper-util's own, from the URI the request is sent with.
            let uri: http::Uri = url.parse().unwrap();
            let theirs = match (uri.port_u16(), uri.scheme_str()) {
                (Some(443), Some("https")) | (Some(80), Some("http")) | (None, _) => {
                    uri.host().unwrap().to_string()
                }
                (Some(p), _) => format!("{}:{p}", uri.host().unwrap()),
            };
            assert_eq!(theirs, host, "{url}");
        }
    }

    #[tokio::test]
    async fn host_follows_the_target_from_call_to_call() {
        let (a, mut seen_a) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let (b, mut seen_b) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let c = client(Duration::from_secs(30));
        for first in [true, false, true] {
            let (base, seen) = if first {
                (&a, &mut seen_a)
            } else {
                (&b, &mut seen_b)
            };
            PooledTransport(&c)
                .send(get(&format!("{base}/x")))
                .await
                .unwrap();
            let head = seen.recv().await.unwrap().to_ascii_lowercase();
            let want = format!("\r\nhost: {}\r\n", base.trim_start_matches("http://"));
            assert!(head.contains(&want), "{head}");
            assert_eq!(head.matches("\r\nhost:").count(), 1, "{head}");
        }
    }

    #[tokio::test]
    async fn an_answer_that_never_comes_is_a_send_error_not_a_hang() {
        let (base, _) = upstream("").await;
        let c = client(Duration::from_millis(200));
        let e = PooledTransport(&c)
            .send(get(&format!("{base}/a")))
            .await
            .unwrap_err();
        assert!(!e.connect);
        assert!(e.message.contains("timed out"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_instead_of_ending_short() {
        let (base, _) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf").await;
        let c = client(Duration::from_millis(200));
        let r = PooledTransport(&c)
            .send(get(&format!("{base}/a")))
            .await
            .unwrap();
        assert!(r.bytes().await.is_err());
    }

    #[tokio::test]
    async fn a_tls_handshake_that_never_finishes_is_a_connect_error() {
        // Accepts TCP, never answers the ClientHello.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let c = PooledClient::new(Timeouts {
            connect: Duration::from_millis(200),
            read: Duration::from_secs(60),
        })
        .unwrap();
        let e = PooledTransport(&c)
            .send(get(&format!("https://{addr}/a")))
            .await
            .unwrap_err();
        assert!(e.connect, "{}", e.message);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = client(Duration::from_secs(30));
        let e = PooledTransport(&c)
            .send(get(&format!("http://{addr}/a")))
            .await
            .unwrap_err();
        assert!(e.connect, "{}", e.message);
        assert!(!e.message.contains(&addr.to_string()), "{}", e.message);
    }
}
