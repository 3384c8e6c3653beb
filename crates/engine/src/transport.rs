//! The proxy's own outbound client: HTTP/1.1 keep-alive connections to each platform host, kept
//! per thread, behind the [`Transport`] trait, with the trust, timeouts and redirect rule of the
//! reqwest client it replaces (issue 19: reqwest's per-call work, two URL parses among it, was a
//! quarter of a proxied call; hyper-util's pool after it hashed the host three times a call and
//! spawned a task per call to take the connection back).
//!
//! Same as that reqwest client (`reqwest 0.12`, `rustls-tls`): rustls with the ring provider,
//! Mozilla's roots from `webpki-roots` and nothing else, TLS 1.2 and 1.3, SNI, ALPN `http/1.1`;
//! `TCP_NODELAY` and reqwest's TCP keep-alive and user timeout; a connect timeout over the TCP
//! connection and the TLS handshake; a read timeout on the answer's head and between the body's
//! chunks; up to [`PooledClient::MAX_IDLE_PER_HOST`] idle connections per host kept 90 s; an
//! `Accept: */*` when the caller sent none; redirects are never followed (hyper follows none:
//! hardening rule 7). Bodies stream both ways; the engine applies its limits as before.
//!
//! A connection goes back to its thread's pool when its answer's body has been read to the end
//! (hyper then has it ready for the next request); an answer dropped before its end closes it. A
//! request that a reused connection refused before sending anything (the platform closed it
//! while it was idle) goes out again on another, as hyper-util's client did.

use crate::call::{SendError, Transport};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::ResponseBuilderExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type Sender = SendRequest<reqwest::Body>;

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
    shared: Arc<ThreadPool>,
    per_thread: parking_lot::RwLock<Vec<(std::thread::ThreadId, Arc<ThreadPool>)>>,
}

static NEXT_POOLS_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The pool this thread used last, and whose: a call finds its own without a lock.
    static LAST_POOL: std::cell::RefCell<Option<(usize, std::sync::Weak<ThreadPool>)>> =
        const { std::cell::RefCell::new(None) };
}

/// One thread's idle connections, by origin (`scheme://host[:port]`). A handful of origins per
/// daemon: a vector searched by comparing text, no hashing.
#[derive(Default)]
struct ThreadPool {
    idle: parking_lot::Mutex<Vec<(Arc<str>, Vec<Idle>)>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl ThreadPool {
    /// An idle connection to `origin` that can take a request now, newest first. Closed and
    /// expired ones are let go; one whose last answer hyper has not finished with stays.
    fn checkout(&self, origin: &str) -> Option<(Arc<str>, Sender)> {
        let mut all = self.idle.lock();
        let (key, list) = all.iter_mut().find(|(o, _)| &**o == origin)?;
        let now = Instant::now();
        list.retain(|i| !i.sender.is_closed() && now - i.since < PooledClient::IDLE_TIMEOUT);
        let at = list.iter().rposition(|i| i.sender.is_ready())?;
        Some((key.clone(), list.remove(at).sender))
    }

    /// `sender`'s connection is idle again.
    fn put(&self, origin: Arc<str>, sender: Sender) {
        let mut all = self.idle.lock();
        let now = Instant::now();
        let list = match all.iter().position(|(o, _)| *o == origin) {
            Some(at) => &mut all[at].1,
            None => {
                all.push((origin, Vec::new()));
                let last = all.len() - 1;
                &mut all[last].1
            }
        };
        list.retain(|i| !i.sender.is_closed() && now - i.since < PooledClient::IDLE_TIMEOUT);
        if list.len() >= PooledClient::MAX_IDLE_PER_HOST {
            list.remove(0);
        }
        list.push(Idle { sender, since: now });
    }

    /// The origin's key, shared with the pool's entry when there is one.
    fn key(&self, origin: &str) -> Arc<str> {
        self.idle
            .lock()
            .iter()
            .find(|(o, _)| &**o == origin)
            .map_or_else(|| Arc::from(origin), |(o, _)| o.clone())
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().iter().map(|(_, l)| l.len()).sum()
    }
}

impl Pools {
    /// This thread's pool.
    fn here(&self) -> Arc<ThreadPool> {
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
            let pool = Arc::new(ThreadPool::default());
            all.push((me, pool.clone()));
            pool
        });
        LAST_POOL.set(Some((self.id, Arc::downgrade(&pool))));
        pool
    }

    /// A new connection to `uri`'s origin, its task spawned on this thread's runtime.
    async fn connect(&self, uri: http::Uri) -> Result<Sender, SendError> {
        use tower_service::Service;
        let connected = |e: &dyn std::fmt::Display| SendError {
            connect: true,
            message: format!("error sending request: {e}"),
        };
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| connected(&*e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| connected(&e))?;
        tokio::spawn(async move {
            // Its end (closed by either side, or failed) is seen by the sender: nothing to do.
            let _ = conn.await;
        });
        Ok(sender)
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
                shared: Arc::new(ThreadPool::default()),
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

/// The origin a connection is pooled under: scheme, host and port as the URL writes them (a
/// default port left out), never its user info.
fn origin(url: &url::Url) -> std::borrow::Cow<'_, str> {
    if url.username().is_empty() && url.password().is_none() {
        std::borrow::Cow::Borrowed(&url[..url::Position::AfterPort])
    } else {
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        std::borrow::Cow::Owned(format!("{}://{authority}", url.scheme()))
    }
}

/// What a failed send says: hyper's own words (no URL: it never puts one in its errors).
fn send_error(e: &hyper::Error) -> SendError {
    SendError {
        connect: false,
        message: format!("error sending request: {e}"),
    }
}

impl PooledTransport<'_> {
    /// Sends `req` on an idle connection to `url`'s origin, or a new one; a request a reused
    /// connection handed back unsent goes on the next. The answer, and the connection to give
    /// back once its body has been read.
    async fn exchange(
        &self,
        url: &url::Url,
        mut req: http::Request<reqwest::Body>,
    ) -> Result<(http::Response<hyper::body::Incoming>, Keep), SendError> {
        let pool = self.0.pools.here();
        let origin = origin(url);
        // The connector dials the whole URI; the connection is sent the path and query only.
        let dial = req.uri().clone();
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(path);
        loop {
            let (key, mut sender, reused) = match pool.checkout(&origin) {
                Some((key, sender)) => (key, sender, true),
                None => {
                    let sender = self.0.pools.connect(dial.clone()).await?;
                    (pool.key(&origin), sender, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let keep = Keep {
                        pool: pool.clone(),
                        origin: key,
                        sender,
                    };
                    return Ok((resp, keep));
                }
                Err(mut e) => match e.take_message() {
                    // Nothing was sent: the platform had closed the idle connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(send_error(e.error())),
                },
            }
        }
    }
}

/// A connection lent to one answer, to go back to its pool when the answer's body has ended.
struct Keep {
    pool: Arc<ThreadPool>,
    origin: Arc<str>,
    sender: Sender,
}

impl Keep {
    fn give_back(self) {
        self.pool.put(self.origin, self.sender);
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
        // Written from the URL, kept per thread while the calls go to the same host (hyper-util
        // wrote it from the URI with a `format!` and a validation pass on every call).
        if let Some(host) = host_header(&url) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let read = self.0.read_timeout;
        let (resp, keep) = match tokio::time::timeout(read, self.exchange(&url, req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SendError {
                    connect: false,
                    message: "error sending request: operation timed out".into(),
                });
            }
        };
        let (parts, body) = resp.into_parts();
        let mut keep = Some(keep);
        // An answer without a body (HEAD, 204, 304) has ended already.
        if body.is_end_stream()
            && let Some(k) = keep.take()
        {
            k.give_back();
        }
        let body = reqwest::Body::wrap(ReadTimeout {
            inner: body,
            timeout: read,
            sleep: None,
            keep,
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
    /// The connection, given back to its pool when the body ends (dropped with the body before
    /// that, it closes: hyper cannot reuse a connection whose answer was not read).
    keep: Option<Keep>,
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
                let ended = match &r {
                    None => true,
                    Some(Ok(_)) => this.inner.is_end_stream(),
                    Some(Err(_)) => {
                        // A broken answer: its connection is not given back.
                        this.keep = None;
                        false
                    }
                };
                if ended && let Some(k) = this.keep.take() {
                    k.give_back();
                }
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
        let (base, heads, _) = upstream_with(answer, None).await;
        (base, heads)
    }

    /// The upstream the tests call: it answers every request on a connection with `answer`
    /// (keep-alive; an empty `answer` never comes, the connection held open until the client
    /// leaves), closing a connection after `per_connection` answers when set, without saying so.
    /// Its base URL, the heads of the requests it read, and how many connections it accepted.
    async fn upstream_with(
        answer: &'static str,
        per_connection: Option<usize>,
    ) -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    // Each request on the connection, bodies never sent.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut answered = 0;
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
                            let _ = s.read(&mut chunk).await;
                            return;
                        }
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        answered += 1;
                        if per_connection == Some(answered) {
                            return;
                        }
                    }
                });
            }
        });
        (base, rx, accepted)
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

    /// [`upstream_with`], counting connections only.
    async fn counting_upstream(
        answer: &'static str,
        per_connection: Option<usize>,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let (base, _, accepted) = upstream_with(answer, per_connection).await;
        (base, accepted)
    }

    fn connections(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn one_connection_serves_call_after_call() {
        let (base, accepted) =
            counting_upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", None).await;
        let c = client(Duration::from_secs(30));
        for _ in 0..50 {
            let r = PooledTransport(&c)
                .send(get(&format!("{base}/a")))
                .await
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "ok");
        }
        assert_eq!(connections(&accepted), 1);
        assert_eq!(c.pools.here().idle_count(), 1);
    }

    #[tokio::test]
    async fn an_answer_without_a_body_gives_its_connection_back_at_once() {
        let (base, accepted) = counting_upstream("HTTP/1.1 204 No Content\r\n\r\n", None).await;
        let c = client(Duration::from_secs(30));
        for _ in 0..10 {
            let r = PooledTransport(&c)
                .send(get(&format!("{base}/a")))
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            drop(r);
        }
        assert_eq!(connections(&accepted), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_is_not_given_back() {
        let (base, accepted) = counting_upstream(
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789",
            None,
        )
        .await;
        let c = client(Duration::from_secs(30));
        for n in 1..=3 {
            let r = PooledTransport(&c)
                .send(get(&format!("{base}/a")))
                .await
                .unwrap();
            drop(r);
            assert_eq!(c.pools.here().idle_count(), 0);
            // The next call cannot have the unread one: a new connection each time.
            let r = PooledTransport(&c)
                .send(get(&format!("{base}/b")))
                .await
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "0123456789");
            assert_eq!(connections(&accepted), n + 1);
            // ... which, read to the end, serves the next round's first call.
        }
    }

    #[tokio::test]
    async fn a_connection_the_platform_closed_while_idle_costs_no_call() {
        // The upstream closes every connection after one answer without saying so, as a
        // platform's idle timeout does; every call, a POST among them, must still succeed.
        let (base, accepted) =
            counting_upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Some(1)).await;
        let c = client(Duration::from_secs(30));
        for i in 0..20 {
            let method = if i % 2 == 0 {
                reqwest::Method::GET
            } else {
                reqwest::Method::POST
            };
            let req = reqwest::Request::new(method, url::Url::parse(&format!("{base}/a")).unwrap());
            let r = PooledTransport(&c).send(req).await.unwrap();
            assert_eq!(r.text().await.unwrap(), "ok", "call {i}");
        }
        assert_eq!(connections(&accepted), 20);
    }

    #[tokio::test]
    async fn calls_at_once_open_connections_that_later_calls_reuse() {
        let (base, accepted) =
            counting_upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", None).await;
        let c = client(Duration::from_secs(30));
        for _ in 0..3 {
            let calls = (0..8).map(|_| {
                let c = c.clone();
                let url = format!("{base}/a");
                async move {
                    let r = PooledTransport(&c).send(get(&url)).await.unwrap();
                    r.text().await.unwrap()
                }
            });
            for text in futures::future::join_all(calls).await {
                assert_eq!(text, "ok");
            }
        }
        let opened = connections(&accepted);
        assert!((1..=8).contains(&opened), "{opened}");
        assert_eq!(c.pools.here().idle_count(), opened);
    }

    #[test]
    fn the_pool_key_is_the_origin_without_user_info() {
        for (url, want) in [
            (
                "https://ads.example.com/v1/me?x=1",
                "https://ads.example.com",
            ),
            ("https://ads.example.com:443/v1", "https://ads.example.com"),
            ("http://127.0.0.1:8080/a", "http://127.0.0.1:8080"),
            (
                "https://u:p@ads.example.com:8443/a",
                "https://ads.example.com:8443",
            ),
            ("https://[::1]:9000/", "https://[::1]:9000"),
        ] {
            assert_eq!(origin(&url::Url::parse(url).unwrap()), want, "{url}");
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
