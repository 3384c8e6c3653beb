//! The proxy's own outbound client: HTTP/1.1 keep-alive connections to each platform host, kept
//! per thread, behind the [`Transport`] trait, with the trust, timeouts and redirect rule of the
//! reqwest client it replaced (issue 19: reqwest's per-call work, two URL parses among it, was a
//! quarter of a proxied call; hyper-util's pool after it hashed the host three times a call and
//! spawned a task per call to take the connection back; hyper's client connection after that
//! ran a task per connection that each call reached through a channel and was answered through
//! another: 9,000 of the daemon's 78,000 instructions a call, and a sixth of the bare stack's
//! throughput).
//!
//! Same as that reqwest client (`reqwest 0.12`, `rustls-tls`): rustls with the ring provider,
//! Mozilla's roots from `webpki-roots` and nothing else, TLS 1.2 and 1.3, SNI, ALPN `http/1.1`;
//! `TCP_NODELAY` and reqwest's TCP keep-alive and user timeout; a connect timeout over the TCP
//! connection and the TLS handshake; a read timeout on the answer's head and between the body's
//! chunks; up to [`PooledClient::MAX_IDLE_PER_HOST`] idle connections per host kept 90 s; an
//! `Accept: */*` when the caller sent none; redirects are never followed (hardening rule 7).
//! Bodies stream both ways; the engine applies its limits as before.
//!
//! The call itself is written and read here, in the caller's task ([`crate::h1`] writes and
//! parses the bytes): no task, no channel, no wake-up of anything else. A connection goes back to
//! its thread's pool when its answer's body has been read to the end and the answer allowed
//! keep-alive; an answer dropped before its end, broken or framed doubtfully closes it. Before an
//! idle connection is used, the kernel is asked whether the platform has closed it (or sent
//! anything unasked) meanwhile; such a connection is let go and the request goes on another, so
//! a platform's idle timeout costs no call. A request body is written before the answer is read:
//! a platform that answers before reading a streamed body to its end (a 413, say) is seen only
//! once the body is written, or as the read timeout.

use crate::call::{Answer, AnswerBody, SendError, Transport};
use crate::h1::{self, Decoded, Framing, RequestFraming};
use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

/// A connection to a platform: its stream (TLS or not) and what has been read but not yet used.
struct Conn {
    io: TokioIo<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>>,
    read: BytesMut,
    /// The request being written; kept for the next one.
    write: Vec<u8>,
}

impl Conn {
    /// Whether the connection can carry a request now: the platform has neither closed it nor
    /// sent anything while it was idle. Asked of the kernel (a non-blocking peek), not of the
    /// runtime, which learns of a close only when it next polls for events.
    fn usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let tcp = match self.io.inner() {
            MaybeHttpsStream::Http(tcp) => tcp.inner(),
            MaybeHttpsStream::Https(tls) => tls.inner().get_ref().0.inner().inner(),
        };
        let tls = matches!(self.io.inner(), MaybeHttpsStream::Https(_));
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Closed (0), reset, or bytes nobody asked for.
            Ok(0) | Err(_) => return false,
            Ok(_) if !tls => return false,
            Ok(_) => {}
        }
        if !tls {
            return true;
        }
        // TLS: records the peek saw may be nothing (a session ticket) or the end (close_notify),
        // and rustls may hold decrypted bytes beyond the last answer that no peek sees. Let it
        // read: the connection is usable when nothing comes of it now.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut scratch = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut scratch);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// Reads more of the answer; 0 when the platform closed the connection.
    async fn fill(&mut self) -> std::io::Result<usize> {
        reserve(&mut self.read, 8 * 1024);
        self.io.read_buf(&mut self.read).await
    }
}

/// Room for the next read: about `want` bytes (what the answer has still to send, when known),
/// between 8 and 64 KiB, so that a large body is read in few system calls and a small one does
/// not cost a large buffer.
fn reserve(buf: &mut BytesMut, want: usize) {
    let want = want.clamp(8 * 1024, 64 * 1024);
    if buf.capacity() - buf.len() < want / 2 {
        buf.reserve(want);
    }
}

/// A pooled HTTP/1.1 client for calls to the platforms; cheap to share (`Arc` inside).
///
/// Each thread that calls gets its own pool (up to [`PooledClient::MAX_THREAD_POOLS`] threads;
/// calls from any further thread share one). With one pool per thread a call made on one of the
/// daemon's HTTP serving threads (`tokenwarden_http::Shards`, one single-threaded runtime each)
/// is written, answered and read on that thread, never handed to another core and woken back
/// (issue 19).
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
    conn: Box<Conn>,
    since: Instant,
}

impl ThreadPool {
    /// An idle connection to `origin` that can take a request now, newest first. Expired ones,
    /// and ones the platform closed, are let go.
    fn checkout(&self, origin: &str) -> Option<(Arc<str>, Box<Conn>)> {
        let mut all = self.idle.lock();
        let (key, list) = all.iter_mut().find(|(o, _)| &**o == origin)?;
        let now = Instant::now();
        while let Some(mut idle) = list.pop() {
            if now - idle.since < PooledClient::IDLE_TIMEOUT && idle.conn.usable() {
                return Some((key.clone(), idle.conn));
            }
        }
        None
    }

    /// `conn` is idle again.
    fn put(&self, origin: Arc<str>, conn: Box<Conn>) {
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
        list.retain(|i| now - i.since < PooledClient::IDLE_TIMEOUT);
        if list.len() >= PooledClient::MAX_IDLE_PER_HOST {
            list.remove(0);
        }
        list.push(Idle { conn, since: now });
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

    /// A new connection to `url`'s origin.
    async fn connect(&self, url: &url::Url) -> Result<Box<Conn>, SendError> {
        use tower_service::Service;
        let connected = |e: &dyn std::fmt::Display| SendError {
            connect: true,
            message: format!("error sending request: {e}"),
        };
        // The connector dials scheme, host and port; nothing else of the URL reaches it.
        let dial: http::Uri = origin(url)
            .parse()
            .map_err(|e: http::uri::InvalidUri| connected(&e))?;
        let io = self
            .connector
            .clone()
            .call(dial)
            .await
            .map_err(|e| connected(&*e))?;
        // Boxed: a TLS connection's state is a few kilobytes, which every move between the
        // pool, the call and the answer's body would otherwise copy.
        Ok(Box::new(Conn {
            io: TokioIo::new(io),
            read: BytesMut::new(),
            write: Vec::new(),
        }))
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
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        PooledClient::trusting(timeouts, roots)
    }

    /// A client that trusts `roots` (Mozilla's; the tests' own certificate) and nothing else.
    fn trusting(
        timeouts: Timeouts,
        roots: rustls::RootCertStore,
    ) -> Result<PooledClient, ClientError> {
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
            .with_tls_config(tls_config(roots)?)
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
fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, ClientError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
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

/// What a failed exchange says: the I/O's or the wire's own words (neither holds the URL, whose
/// query may carry a token).
fn send_error(e: impl std::fmt::Display) -> SendError {
    SendError {
        connect: false,
        message: format!("error sending request: {e}"),
    }
}

/// The platform closed the connection before its answer ended.
#[derive(Debug, thiserror::Error)]
#[error("the connection closed before the answer ended")]
struct ClosedEarly;

/// A streamed request body did not match the `Content-Length` the caller sent with it.
#[derive(Debug, thiserror::Error)]
#[error("the request body's length differs from its Content-Length")]
struct LengthMismatch;

impl PooledTransport<'_> {
    /// Sends the request on an idle connection to `url`'s origin, or a new one, and reads the
    /// answer's head. The head, the connection (holding what was read past the head), and where
    /// to give the connection back once the body has been read.
    async fn exchange(
        &self,
        url: &url::Url,
        method: &http::Method,
        headers: &http::HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<(h1::Head, Box<Conn>, Keep), SendError> {
        let pool = self.0.pools.here();
        let origin = origin(url);
        let (key, mut conn) = match pool.checkout(&origin) {
            Some(found) => found,
            None => {
                let conn = self.0.pools.connect(url).await?;
                (pool.key(&origin), conn)
            }
        };
        let target = match &url[url::Position::BeforePath..url::Position::AfterQuery] {
            "" => "/",
            t => t,
        };
        write_request(&mut conn, method, target, headers, body)
            .await
            .map_err(send_error)?;
        // How much of what was read has been looked at for the head's end.
        let mut scanned = 0;
        let head = loop {
            // A pooled connection holds nothing read (`Conn::usable`): read before parsing.
            match conn.fill().await {
                Ok(0) => return Err(send_error(ClosedEarly)),
                Ok(_) => {}
                Err(e) => return Err(send_error(e)),
            }
            // The first bytes are always parsed, so that an answer that is not HTTP at all (an
            // HTML page, a TLS alert) fails at once rather than when the platform closes.
            if scanned > 0 && !h1::head_ended(&conn.read, scanned) {
                if conn.read.len() > h1::MAX_HEAD {
                    return Err(send_error(h1::WireError::HeadTooLarge));
                }
                scanned = conn.read.len();
                continue;
            }
            match h1::parse_head(&mut conn.read, *method == http::Method::HEAD) {
                Ok(Some(head)) => break head,
                // What is left (interim answers taken out) was all looked at: no head ends in it.
                Ok(None) => scanned = conn.read.len(),
                Err(e) => return Err(send_error(e)),
            }
        };
        Ok((head, conn, Keep { pool, origin: key }))
    }
}

/// Request bodies up to this size go out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// Writes the request: its head, then its body framed by its known length, the caller's
/// `Content-Length` (a streamed body), or chunked.
async fn write_request(
    conn: &mut Conn,
    method: &http::Method,
    target: &str,
    headers: &http::HeaderMap,
    body: Option<reqwest::Body>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut out = std::mem::take(&mut conn.write);
    out.clear();
    let written = write_framed(conn, &mut out, method, target, headers, body).await;
    conn.write = out;
    written?;
    conn.io.flush().await?;
    Ok(())
}

async fn write_framed(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    method: &http::Method,
    target: &str,
    headers: &http::HeaderMap,
    body: Option<reqwest::Body>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(mut body) = body else {
        h1::write_head(out, method, target, headers, RequestFraming::None);
        conn.io.write_all(out).await?;
        return Ok(());
    };
    if let Some(bytes) = body.as_bytes() {
        if bytes.is_empty() {
            h1::write_head(out, method, target, headers, RequestFraming::None);
            conn.io.write_all(out).await?;
        } else {
            let framing = RequestFraming::Length(bytes.len() as u64);
            h1::write_head(out, method, target, headers, framing);
            if bytes.len() <= COALESCE {
                out.extend_from_slice(bytes);
                conn.io.write_all(out).await?;
            } else {
                conn.io.write_all(out).await?;
                conn.io.write_all(bytes).await?;
            }
        }
        return Ok(());
    }
    // A stream: sent with the caller's length when it gave one, else chunked.
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let framing = declared.map_or(RequestFraming::Chunked, RequestFraming::Length);
    h1::write_head(out, method, target, headers, framing);
    conn.io.write_all(out).await?;
    let mut sent = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: not sent
        };
        if data.is_empty() {
            continue;
        }
        sent = sent.saturating_add(data.len() as u64);
        if declared.is_some_and(|d| sent > d) {
            return Err(LengthMismatch.into());
        }
        if declared.is_none() {
            out.clear();
            h1::write_chunk_size(out, data.len());
            conn.io.write_all(out).await?;
        }
        conn.io.write_all(&data).await?;
        if declared.is_none() {
            conn.io.write_all(b"\r\n").await?;
        }
    }
    match declared {
        Some(d) if d != sent => return Err(LengthMismatch.into()),
        Some(_) => {}
        None => {
            out.clear();
            h1::write_chunk_size(out, 0);
            conn.io.write_all(out).await?;
        }
    }
    Ok(())
}

/// Where a connection lent to one answer goes back when the answer's body has ended.
struct Keep {
    pool: Arc<ThreadPool>,
    origin: Arc<str>,
}

#[async_trait::async_trait]
impl Transport for PooledTransport<'_> {
    async fn send(&mut self, mut req: reqwest::Request) -> Result<Answer, SendError> {
        let body = req.body_mut().take();
        // Written from the URL, kept per thread while the calls go to the same host.
        let host = host_header(req.url());
        let headers = req.headers_mut();
        if let http::header::Entry::Vacant(v) = headers.entry(http::header::ACCEPT) {
            v.insert(http::HeaderValue::from_static("*/*"));
        }
        if let Some(host) = host {
            headers.insert(http::header::HOST, host);
        }
        let read = self.0.read_timeout;
        // The request is read in place: its URL and method are not copied.
        let exchange = self.exchange(req.url(), req.method(), req.headers(), body);
        let (head, conn, keep) = match tokio::time::timeout(read, exchange).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SendError {
                    connect: false,
                    message: "error sending request: operation timed out".into(),
                });
            }
        };
        let reading = match head.framing {
            Framing::Empty => None,
            Framing::Length(n) => Some(Reading::Length(n)),
            Framing::Chunked => Some(Reading::Chunked(h1::Chunked::default())),
            Framing::Close => Some(Reading::Close),
        };
        let body = match reading {
            // An answer without a body (HEAD, 204, 304, length 0) has ended already.
            None => {
                if head.reusable && conn.read.is_empty() {
                    keep.pool.put(keep.origin, conn);
                }
                AnswerBody::empty()
            }
            Some(reading) => AnswerBody::wire(Wire {
                conn: Some(conn),
                reading,
                reusable: head.reusable,
                timeout: read,
                sleep: None,
                keep: Some(keep),
            }),
        };
        let mut answer = http::Response::new(body);
        *answer.status_mut() = head.status;
        *answer.version_mut() = head.version;
        *answer.headers_mut() = head.headers;
        Ok(answer)
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

/// How the rest of an answer's body is delimited.
enum Reading {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(h1::Chunked),
    /// Until the platform closes the connection.
    Close,
}

/// An answer's body, read from its connection as the caller asks for it. It fails when no bytes
/// arrive within `timeout` of the last (reqwest's read timeout on the body), when the platform
/// closes the connection early, or when the framing is broken; it gives the connection back to
/// its pool when it has ended cleanly, and closes it otherwise (dropped early included).
pub(crate) struct Wire {
    /// `None` once the body has ended or failed.
    conn: Option<Box<Conn>>,
    reading: Reading,
    reusable: bool,
    timeout: Duration,
    /// Armed while bytes are awaited; `None` while they come at once, so that a body read at
    /// once costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    keep: Option<Keep>,
}

#[derive(Debug, thiserror::Error)]
#[error("operation timed out while reading the answer")]
struct BodyTimedOut;

impl Wire {
    /// The body has ended: its connection goes back to the pool when it may carry another.
    fn end(&mut self) {
        self.sleep = None;
        if let (Some(conn), Some(keep)) = (self.conn.take(), self.keep.take())
            && self.reusable
            && conn.read.is_empty()
        {
            keep.pool.put(keep.origin, conn);
        }
    }

    /// The body failed: its connection is closed.
    fn fail(
        &mut self,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.sleep = None;
        self.conn = None;
        self.keep = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl HttpBody for Wire {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match &mut this.reading {
                Reading::Length(left) if !conn.read.is_empty() => {
                    let n =
                        usize::try_from(*left).map_or(conn.read.len(), |l| l.min(conn.read.len()));
                    *left -= n as u64;
                    Decoded::Data(conn.read.split_to(n).freeze())
                }
                Reading::Chunked(chunked) => match chunked.decode(&mut conn.read) {
                    Ok(step) => step,
                    Err(e) => return this.fail(e),
                },
                Reading::Close if !conn.read.is_empty() => {
                    Decoded::Data(conn.read.split().freeze())
                }
                Reading::Length(_) | Reading::Close => Decoded::NeedMore,
            };
            match step {
                Decoded::Data(data) => {
                    this.sleep = None;
                    if matches!(this.reading, Reading::Length(0)) {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoded::End => {
                    this.end();
                    return Poll::Ready(None);
                }
                Decoded::NeedMore => {}
            }
            let want = match &this.reading {
                Reading::Length(left) => usize::try_from(*left).unwrap_or(usize::MAX),
                Reading::Chunked(_) | Reading::Close => 16 * 1024,
            };
            reserve(&mut conn.read, want);
            match std::pin::pin!(conn.io.read_buf(&mut conn.read)).poll(cx) {
                Poll::Ready(Ok(0)) if matches!(this.reading, Reading::Close) => {
                    this.reusable = false;
                    this.end();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(ClosedEarly),
                Poll::Ready(Ok(_)) => this.sleep = None,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => {
                    let timeout = this.timeout;
                    let sleep = this.sleep.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep_until(Instant::now() + timeout))
                    });
                    ready!(sleep.as_mut().poll(cx));
                    return this.fail(BodyTimedOut);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.reading) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Reading::Length(n)) => SizeHint::with_exact(*n),
            (Some(_), _) => SizeHint::default(),
        }
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
        let (base, mut raw, accepted) =
            scripted(answer.as_bytes().to_vec(), usize::MAX, per_connection).await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(request) = raw.recv().await {
                let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            }
        });
        (base, rx, accepted)
    }

    /// The tests read answers with reqwest's conveniences.
    trait Fetch {
        async fn fetch(&mut self, req: reqwest::Request) -> Result<reqwest::Response, SendError>;
    }

    impl Fetch for PooledTransport<'_> {
        async fn fetch(&mut self, req: reqwest::Request) -> Result<reqwest::Response, SendError> {
            self.send(req).await.map(reqwest::Response::from)
        }
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
            .fetch(get(&format!("{base}/a")))
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert!(hits.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn accept_is_added_only_when_the_caller_sent_none() {
        let (base, mut seen) = upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let c = client(Duration::from_secs(30));
        let r = PooledTransport(&c)
            .fetch(get(&format!("{base}/a")))
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        let head = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
        let mut req = get(&format!("{base}/b"));
        req.headers_mut()
            .insert("accept", http::HeaderValue::from_static("application/json"));
        PooledTransport(&c).fetch(req).await.unwrap();
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
                .fetch(get(&format!("{base}/x")))
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
                .fetch(get(&format!("{base}/a")))
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
                .fetch(get(&format!("{base}/a")))
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
                .fetch(get(&format!("{base}/a")))
                .await
                .unwrap();
            drop(r);
            assert_eq!(c.pools.here().idle_count(), 0);
            // The next call cannot have the unread one: a new connection each time.
            let r = PooledTransport(&c)
                .fetch(get(&format!("{base}/b")))
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
            let r = PooledTransport(&c).fetch(req).await.unwrap();
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
                    let r = PooledTransport(&c).fetch(get(&url)).await.unwrap();
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
            .fetch(get(&format!("{base}/a")))
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
            .fetch(get(&format!("{base}/a")))
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
            .fetch(get(&format!("https://{addr}/a")))
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
            .fetch(get(&format!("http://{addr}/a")))
            .await
            .unwrap_err();
        assert!(e.connect, "{}", e.message);
        assert!(!e.message.contains(&addr.to_string()), "{}", e.message);
    }

    /// An upstream that answers every request with `answer`, written as is in pieces of `piece`
    /// bytes (an empty `answer` never comes: the connection is held until the client leaves),
    /// closing a connection after `per_connection` answers when set, without saying so. Its base
    /// URL, every request it read (head and body), and how many connections it accepted.
    async fn scripted(
        answer: Vec<u8>,
        piece: usize,
        per_connection: Option<usize>,
    ) -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
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
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut answered = 0;
                    while let Some(request) = read_request(&mut s).await {
                        let _ = tx.send(request);
                        if answer.is_empty() {
                            let _ = s.read(&mut [0u8; 1]).await;
                            return;
                        }
                        let mut pieces = answer.chunks(piece.max(1)).peekable();
                        while let Some(p) = pieces.next() {
                            if s.write_all(p).await.is_err() {
                                return;
                            }
                            // The client reads between pieces; after the last, a close (when
                            // due) follows at once, as a platform's idle close does.
                            if pieces.peek().is_some() {
                                tokio::task::yield_now().await;
                            }
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

    /// One request off `s`: its head and its body, framed by Content-Length or chunked.
    async fn read_request(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let done = |buf: &[u8]| -> bool {
            let body = &buf[head_end..];
            if let Some(cl) = head.split("\r\ncontent-length: ").nth(1) {
                let n: usize = cl.split("\r\n").next().unwrap().parse().unwrap();
                body.len() >= n
            } else if head.contains("\r\ntransfer-encoding: chunked\r\n") {
                body.ends_with(b"0\r\n\r\n")
            } else {
                true
            }
        };
        while !done(&buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        Some(buf)
    }

    #[tokio::test]
    async fn a_chunked_answer_is_read_whole_and_its_connection_reused() {
        let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n".to_vec();
        for piece in [1, 3, 1000] {
            let (base, _, accepted) = scripted(answer.clone(), piece, None).await;
            let c = client(Duration::from_secs(30));
            for _ in 0..3 {
                let r = PooledTransport(&c)
                    .fetch(get(&format!("{base}/a")))
                    .await
                    .unwrap();
                assert_eq!(r.text().await.unwrap(), "hello, world", "pieces of {piece}");
            }
            assert_eq!(connections(&accepted), 1, "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn an_answer_read_to_the_close_is_whole_and_its_connection_not_kept() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec();
        let (base, _, accepted) = scripted(answer, 4, Some(1)).await;
        let c = client(Duration::from_secs(30));
        for _ in 0..2 {
            let r = PooledTransport(&c)
                .fetch(get(&format!("{base}/a")))
                .await
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "until the end");
            assert_eq!(c.pools.here().idle_count(), 0);
        }
        assert_eq!(connections(&accepted), 2);
    }

    #[tokio::test]
    async fn connections_the_answer_or_its_framing_rules_out_are_not_kept() {
        for answer in [
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            // Both framings: a smuggling sign. Read as chunked, then closed.
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            // More than the answer: whatever follows is nobody's.
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ] {
            let (base, _, accepted) = scripted(answer.as_bytes().to_vec(), 1000, None).await;
            let c = client(Duration::from_secs(30));
            for _ in 0..2 {
                let r = PooledTransport(&c)
                    .fetch(get(&format!("{base}/a")))
                    .await
                    .unwrap();
                assert_eq!(r.text().await.unwrap(), "ok", "{answer}");
            }
            assert_eq!(c.pools.here().idle_count(), 0, "{answer}");
            assert_eq!(connections(&accepted), 2, "{answer}");
        }
    }

    #[tokio::test]
    async fn a_head_answer_has_no_body_whatever_it_says() {
        let (base, _, accepted) = scripted(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec(),
            1000,
            None,
        )
        .await;
        let c = client(Duration::from_secs(30));
        for _ in 0..3 {
            let req = reqwest::Request::new(
                reqwest::Method::HEAD,
                url::Url::parse(&format!("{base}/a")).unwrap(),
            );
            let r = PooledTransport(&c).fetch(req).await.unwrap();
            assert_eq!(r.headers()["content-length"], "100");
            assert!(r.bytes().await.unwrap().is_empty());
        }
        assert_eq!(connections(&accepted), 1);
    }

    #[tokio::test]
    async fn broken_answers_are_send_errors_that_name_no_url() {
        for (answer, expect) in [
            ("<html><body>502 Bad Gateway</body></html>", "malformed"),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
                "Content-Length",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
                "switched",
            ),
            ("HTTP/1.1 200 OK\r\ncontent-len", "closed before"),
        ] {
            let (base, _, _) = scripted(answer.as_bytes().to_vec(), 1000, Some(1)).await;
            let c = client(Duration::from_secs(30));
            let e = PooledTransport(&c)
                .fetch(get(&format!("{base}/a?access_token=SECRET")))
                .await
                .unwrap_err();
            assert!(!e.connect, "{answer}");
            assert!(e.message.contains(expect), "{answer}: {}", e.message);
            assert!(
                !e.message.contains("SECRET") && !e.message.contains(&base),
                "{}",
                e.message
            );
        }
        // A body cut short, or badly chunked, fails the body instead of ending it early.
        for answer in [
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        ] {
            let (base, _, _) = scripted(answer.as_bytes().to_vec(), 1000, Some(1)).await;
            let c = client(Duration::from_secs(30));
            let r = PooledTransport(&c)
                .fetch(get(&format!("{base}/a")))
                .await
                .unwrap();
            assert!(r.bytes().await.is_err(), "{answer}");
            assert_eq!(c.pools.here().idle_count(), 0, "{answer}");
        }
    }

    /// A PUT to `url` whose body is `pieces` streamed, with the caller's `Content-Length` when
    /// given.
    fn streamed(
        url: &url::Url,
        pieces: &[&'static str],
        length: Option<&'static str>,
    ) -> reqwest::Request {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            pieces.iter().map(|s| Ok(Bytes::from(*s))).collect();
        let mut req = reqwest::Request::new(reqwest::Method::PUT, url.clone());
        *req.body_mut() = Some(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
        if let Some(l) = length {
            req.headers_mut()
                .insert("content-length", http::HeaderValue::from_static(l));
        }
        req
    }

    #[tokio::test]
    async fn request_bodies_are_framed_by_length_or_chunked() {
        let (base, mut seen, accepted) = scripted(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            1000,
            None,
        )
        .await;
        let c = client(Duration::from_secs(30));
        let url = url::Url::parse(&format!("{base}/up")).unwrap();
        let body_of = |raw: &[u8]| {
            let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            (
                String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase(),
                raw[at..].to_vec(),
            )
        };
        // Held bytes, small and large: their length.
        for size in [5usize, 100_000] {
            let mut req = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *req.body_mut() = Some(reqwest::Body::from(vec![b'x'; size]));
            // A stale length from the caller is not what goes out.
            req.headers_mut()
                .insert("content-length", http::HeaderValue::from_static("1"));
            let r = PooledTransport(&c).fetch(req).await.unwrap();
            assert_eq!(r.text().await.unwrap(), "ok");
            let (head, body) = body_of(&seen.recv().await.unwrap());
            assert!(
                head.contains(&format!("\r\ncontent-length: {size}\r\n")),
                "{head}"
            );
            assert_eq!(head.matches("content-length").count(), 1, "{head}");
            assert_eq!(body, vec![b'x'; size]);
        }
        // A stream without a length: chunked.
        let r = PooledTransport(&c)
            .fetch(streamed(&url, &["ab", "", "cde"], None))
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        let (head, body) = body_of(&seen.recv().await.unwrap());
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        assert_eq!(body, b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n");
        // A stream with the caller's length: that length, and the bytes as they are.
        let r = PooledTransport(&c)
            .fetch(streamed(&url, &["ab", "cde"], Some("5")))
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        let (head, body) = body_of(&seen.recv().await.unwrap());
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        assert_eq!(body, b"abcde");
        assert_eq!(connections(&accepted), 1);
        // A stream longer than the length it came with is an error, not a smuggled request.
        let e = PooledTransport(&c)
            .fetch(streamed(&url, &["abc", "def"], Some("4")))
            .await
            .unwrap_err();
        assert!(e.message.contains("Content-Length"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_connection_that_sent_bytes_while_idle_is_not_used() {
        // Answers, then 50 ms later writes something nobody asked for (a second answer).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    while read_request(&mut s).await.is_some() {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil")
                            .await;
                    }
                });
            }
        });
        let c = client(Duration::from_secs(30));
        for _ in 0..2 {
            let r = PooledTransport(&c)
                .fetch(get(&format!("{base}/a")))
                .await
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "ok");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(connections(&accepted), 2);
    }

    /// The tests' certificate for `localhost` and 127.0.0.1 (self-signed, valid to 2126; made
    /// with `openssl req -x509 -newkey ec`, not used anywhere else).
    const CERT: &[u8] = include_bytes!("../tests/fixtures/loopback-cert.der");
    const KEY: &[u8] = include_bytes!("../tests/fixtures/loopback-key.der");

    /// How the TLS upstream treats a connection after each answer.
    #[derive(Clone, Copy)]
    enum AfterAnswer {
        KeepOpen,
        /// close_notify and FIN, as a platform's idle timeout.
        Close,
        /// 50 ms later, bytes nobody asked for, in a TLS record of their own.
        Chatter,
    }

    /// An HTTPS upstream on 127.0.0.1 answering every request `ok`; its base URL and how many
    /// connections it accepted.
    async fn tls_upstream(after: AfterAnswer) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(CERT.to_vec())],
                rustls::pki_types::PrivateKeyDer::try_from(KEY.to_vec()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                        match after {
                            AfterAnswer::KeepOpen => {}
                            AfterAnswer::Close => {
                                let _ = s.shutdown().await;
                                return;
                            }
                            AfterAnswer::Chatter => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
                                let _ = s.flush().await;
                            }
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    fn tls_client() -> PooledClient {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(CERT.to_vec()))
            .unwrap();
        PooledClient::trusting(
            Timeouts {
                connect: Duration::from_secs(5),
                read: Duration::from_secs(30),
            },
            roots,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn tls_connections_are_reused_and_replaced_when_closed_or_chattering() {
        for (after, calls, pause, want) in [
            (AfterAnswer::KeepOpen, 5, 0, 1),
            (AfterAnswer::Close, 5, 20, 5),
            (AfterAnswer::Chatter, 3, 200, 3),
        ] {
            let (base, accepted) = tls_upstream(after).await;
            let c = tls_client();
            for i in 0..calls {
                let r = PooledTransport(&c)
                    .fetch(get(&format!("{base}/a")))
                    .await
                    .unwrap_or_else(|e| panic!("call {i}: {}", e.message));
                assert_eq!(r.text().await.unwrap(), "ok", "call {i}");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            assert_eq!(connections(&accepted), want, "{calls} calls");
        }
    }

    #[tokio::test]
    async fn a_certificate_the_client_does_not_trust_is_a_connect_error() {
        // The default client trusts Mozilla's roots only, not the tests' own certificate.
        let (base, _) = tls_upstream(AfterAnswer::KeepOpen).await;
        let e = PooledTransport(&client(Duration::from_secs(30)))
            .fetch(get(&format!("{base}/a")))
            .await
            .unwrap_err();
        assert!(e.connect, "{}", e.message);
    }

    #[tokio::test]
    async fn large_answers_arrive_whole_whatever_their_framing() {
        let body: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let mut by_length =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        by_length.extend_from_slice(&body);
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(70_000) {
            h1::write_chunk_size(&mut chunked, piece.len());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        h1::write_chunk_size(&mut chunked, 0);
        for answer in [by_length, chunked] {
            let (base, _, accepted) = scripted(answer, 50_000, None).await;
            let c = client(Duration::from_secs(30));
            for _ in 0..2 {
                let r = PooledTransport(&c)
                    .fetch(get(&format!("{base}/a")))
                    .await
                    .unwrap();
                assert!(r.bytes().await.unwrap() == body);
            }
            assert_eq!(connections(&accepted), 1);
        }
    }
}
