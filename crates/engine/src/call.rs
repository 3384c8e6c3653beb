//! The healing loop, shared by the proxy and the in-process client: take a token → shape → send
//! → classify with the provider's classifier → refresh and replay once / wait as the platform
//! asked / back off / pass through. Nothing here knows a platform: every decision comes from the
//! classification and the provider definition.

use crate::headers::{self, BadHeader};
use crate::shaper::{OverBudget, Shaper};
use crate::target::{self, UrlRefused};
use crate::{Issued, TokenFailure, TokenService};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokenwarden_core::classify::{
    Action, Blame, Classification, Kind, MAX_CLASSIFIED_BODY, ResponseView,
};
use tokenwarden_core::clock::{Clock, to_real};
use tokenwarden_core::connection::{Connection, ConnectionState, Problem, ProblemCode};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::oauth1;
use tokenwarden_core::policy;
use tokenwarden_core::provider::{Context, CredentialPlacement, HeaderValues, Provider, Registry};
use tokenwarden_core::soap::{self, EnvelopeError};
use tokenwarden_core::state;
use tokenwarden_store::{NewEvent, Store, StoreError};
use tokio::time::Instant;
use url::Url;

/// Metric: proxied requests, by `provider`, `kind` and `status`.
pub const PROXY_REQUESTS: &str = "tokenwarden_proxy_requests_total";
/// Metric: how long calls waited because a platform throttled, by `provider` (seconds).
pub const THROTTLE_WAIT: &str = "tokenwarden_throttle_wait_seconds";

/// The largest request and response bodies the proxy forwards (`[proxy]` in the daemon's
/// configuration file). Larger requests are refused with 413 `request_too_large`; larger responses
/// with 502 `response_too_large` while the answer has not started, and by breaking the connection
/// once it streams (its status is sent by then; a caller sees an error, never a clean end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest request body, in bytes.
    pub max_request_bytes: u64,
    /// Largest response body, in bytes.
    pub max_response_bytes: u64,
}

impl BodyLimits {
    /// The default of each: 1 GiB (video creatives and report downloads pass).
    pub const DEFAULT_BYTES: u64 = 1 << 30;
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_request_bytes: BodyLimits::DEFAULT_BYTES,
            max_response_bytes: BodyLimits::DEFAULT_BYTES,
        }
    }
}

/// Limits and timings of the healing loop.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How much faster than real time the platforms' clock runs (the sandbox's `--time-scale`):
    /// waits the platform asks for and published rates are divided / multiplied by it.
    pub time_scale: f64,
    /// A call's budget for queueing and waiting when the caller names none.
    pub default_budget: Duration,
    /// The most a caller may ask for.
    pub max_budget: Duration,
    /// Largest request body forwarded.
    pub max_request_bytes: u64,
    /// Largest response body forwarded.
    pub max_response_bytes: u64,
    /// Request bodies up to this size are held so the call can be replayed; larger ones stream
    /// through once.
    pub replay_buffer: usize,
    /// First backoff step (platform time) when the platform names no wait.
    pub backoff_base: Duration,
    /// Largest backoff step (platform time).
    pub backoff_cap: Duration,
    /// Book lanes with a published limit in the store, shared with every replica on the same
    /// database ([`Shaper::shared`]); otherwise in this process's memory.
    pub shared_rate_budget: bool,
}

impl EngineConfig {
    /// This configuration with `limits` on bodies.
    pub fn with_limits(self, limits: BodyLimits) -> Self {
        EngineConfig {
            max_request_bytes: limits.max_request_bytes,
            max_response_bytes: limits.max_response_bytes,
            ..self
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            time_scale: 1.0,
            default_budget: Duration::from_secs(30),
            max_budget: Duration::from_secs(300),
            max_request_bytes: BodyLimits::DEFAULT_BYTES,
            max_response_bytes: BodyLimits::DEFAULT_BYTES,
            replay_buffer: 1 << 20,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            shared_rate_budget: false,
        }
    }
}

/// A request body: held (replayable) or streamed (sent once).
#[derive(Debug)]
pub enum OutBody {
    /// The whole body; empty for none.
    Buffered(Bytes),
    /// A body too large to hold, sent once.
    Streamed {
        /// Taken by the first attempt.
        body: Option<reqwest::Body>,
        /// Set when the caller sent more than the request limit.
        overflowed: Arc<AtomicBool>,
    },
}

impl OutBody {
    fn replayable(&self) -> bool {
        matches!(self, OutBody::Buffered(_))
    }

    fn next(&mut self) -> Option<reqwest::Body> {
        match self {
            OutBody::Buffered(b) if b.is_empty() => None,
            OutBody::Buffered(b) => Some(reqwest::Body::from(b.clone())),
            OutBody::Streamed { body, .. } => body.take(),
        }
    }

    fn overflowed(&self) -> bool {
        match self {
            OutBody::Buffered(_) => false,
            OutBody::Streamed { overflowed, .. } => overflowed.load(Ordering::Acquire),
        }
    }

    /// Reads up to `hold` bytes of `stream`; a longer body keeps streaming (with the bytes read so
    /// far in front) and is cut off with an error past `limit` bytes.
    pub async fn from_stream<S, E>(
        mut stream: S,
        hold: usize,
        limit: u64,
    ) -> Result<OutBody, ProxyError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let mut held = BytesMut::new();
        while held.len() <= hold {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    held.extend_from_slice(&chunk);
                    // Past the limit already: no need to hold (or read) any more of it.
                    if held.len() as u64 > limit {
                        return Err(ProxyError::RequestTooLarge { limit });
                    }
                }
                Some(Err(_)) => return Err(ProxyError::BadBody),
                None => {
                    if held.len() as u64 > limit {
                        return Err(ProxyError::RequestTooLarge { limit });
                    }
                    return Ok(OutBody::Buffered(held.freeze()));
                }
            }
        }
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let first = held.freeze();
        let mut sent = 0u64;
        let rest = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first) })
            .chain(stream.map(|r| r.map_err(|e| std::io::Error::other(e.into()))))
            .map(move |r| {
                let chunk = r?;
                sent = sent.saturating_add(chunk.len() as u64);
                if sent > limit {
                    flag.store(true, Ordering::Release);
                    return Err(std::io::Error::other("the request body exceeds the limit"));
                }
                Ok(chunk)
            });
        Ok(OutBody::Streamed {
            body: Some(reqwest::Body::wrap_stream(rest)),
            overflowed,
        })
    }
}

/// Where the call goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A raw path (starting `/`) and raw query under the connection's API base (the proxy).
    Path {
        /// Path, still percent-encoded.
        path: String,
        /// Query, still percent-encoded.
        query: Option<String>,
    },
    /// A whole URL that must lie under the connection's API base (the in-process client).
    Url(Url),
}

/// One call on behalf of a caller.
#[derive(Debug)]
pub struct Call {
    /// The connection whose token is used.
    pub connection: ConnectionId,
    /// Method.
    pub method: Method,
    /// Where.
    pub target: Target,
    /// The caller's headers (filtered before they leave).
    pub headers: HeaderMap,
    /// The body.
    pub body: OutBody,
    /// How long the call may queue and wait in total; the default when `None`.
    pub budget: Option<Duration>,
}

/// A failure to send at all.
#[derive(Debug, Clone)]
pub struct SendError {
    /// The connection was never established, so the platform cannot have processed anything.
    pub connect: bool,
    /// Our words (no URL: it could carry a credential parameter).
    pub message: String,
}

impl SendError {
    /// From a reqwest error, without its URL.
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        SendError {
            connect: e.is_connect(),
            message: e.without_url().to_string(),
        }
    }
}

/// How a built request reaches the platform: the proxy's own client, or the rest of a
/// reqwest-middleware chain.
#[async_trait::async_trait]
pub trait Transport: Send {
    /// Sends one request.
    async fn send(&mut self, req: reqwest::Request) -> Result<Answer, SendError>;
}

/// A platform's answer as a transport hands it over: its status and headers, and its body still
/// to be read. Not a `reqwest::Response`: making one (a boxed URL, boxed body layers) and
/// reading through it was a twentieth of a proxied call (issue 19). [`answer_from_reqwest`]
/// turns one into this, `reqwest::Response::from` this into one.
pub type Answer = http::Response<AnswerBody>;

/// The body of an [`Answer`]: read off its connection by the proxy's own client, or by whatever
/// another transport used. Its errors carry no URL.
pub struct AnswerBody(AnswerInner);

enum AnswerInner {
    Empty,
    Wire(crate::transport::Wire),
    Reqwest(reqwest::Body),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl AnswerBody {
    /// No body.
    pub fn empty() -> Self {
        AnswerBody(AnswerInner::Empty)
    }

    pub(crate) fn wire(w: crate::transport::Wire) -> Self {
        AnswerBody(AnswerInner::Wire(w))
    }

    /// A body another transport read with reqwest.
    pub fn reqwest(b: reqwest::Body) -> Self {
        AnswerBody(AnswerInner::Reqwest(b))
    }

    /// The next bytes of the body (trailers are passed over); `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            let frame = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut *self), cx)
            })
            .await?;
            match frame.map(http_body::Frame::into_data) {
                Ok(Ok(data)) => return Some(Ok(data)),
                Ok(Err(_trailers)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl std::fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            AnswerInner::Empty => "AnswerBody::Empty",
            AnswerInner::Wire(_) => "AnswerBody::Wire",
            AnswerInner::Reqwest(_) => "AnswerBody::Reqwest",
        })
    }
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::pin::Pin;
        use std::task::Poll;
        match &mut self.0 {
            AnswerInner::Empty => Poll::Ready(None),
            AnswerInner::Wire(w) => Pin::new(w).poll_frame(cx),
            AnswerInner::Reqwest(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e.without_url())))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            AnswerInner::Empty => true,
            AnswerInner::Wire(w) => w.is_end_stream(),
            AnswerInner::Reqwest(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            AnswerInner::Empty => http_body::SizeHint::with_exact(0),
            AnswerInner::Wire(w) => w.size_hint(),
            AnswerInner::Reqwest(b) => b.size_hint(),
        }
    }
}

impl From<AnswerBody> for reqwest::Body {
    fn from(b: AnswerBody) -> reqwest::Body {
        match b.0 {
            AnswerInner::Empty => reqwest::Body::from(Bytes::new()),
            AnswerInner::Reqwest(b) => b,
            AnswerInner::Wire(_) => reqwest::Body::wrap(b),
        }
    }
}

/// A reqwest answer as an [`Answer`] (its URL is dropped).
pub fn answer_from_reqwest(r: reqwest::Response) -> Answer {
    http::Response::from(r).map(AnswerBody::reqwest)
}

/// An [`Answer`]'s announced length, when its body knows it exactly.
fn content_length(a: &Answer) -> Option<u64> {
    http_body::Body::size_hint(a.body()).exact()
}

/// A plain reqwest client (redirects must be off: hardening rule 7).
#[derive(Debug)]
pub struct ClientTransport<'a>(pub &'a reqwest::Client);

#[async_trait::async_trait]
impl Transport for ClientTransport<'_> {
    async fn send(&mut self, req: reqwest::Request) -> Result<Answer, SendError> {
        let r = self.0.execute(req).await.map_err(SendError::from_reqwest)?;
        Ok(answer_from_reqwest(r))
    }
}

/// What the loop did, for the caller.
#[derive(Debug, Clone)]
pub struct Report {
    /// The provider's definition: its id is a metric label (never a secret), and its API's
    /// [`Report::credential_header`] the header the proxy must not hand back. Shared, not
    /// copied: a call's report costs no string of it (issue 19).
    pub provider: Arc<Provider>,
    /// The connection (never a metric label).
    pub connection: ConnectionId,
    /// The last response's classification.
    pub classification: Classification,
    /// The action the caller should take now (differs from the classification's when a replay
    /// after a refresh failed the same way: then `reauthorize`).
    pub action: Action,
    /// Calls made to the platform.
    pub attempts: u32,
    /// Time spent queueing and waiting (real time).
    pub waited: Duration,
    /// Whether the token was refreshed on the way.
    pub refreshed: bool,
    /// Whether the connection was marked `reauth_required` by this call.
    pub reauth_required: bool,
}

impl Report {
    /// The provider's id.
    pub fn provider_id(&self) -> &str {
        self.provider.spec.id.as_str()
    }

    /// The header the definition sends the token in (`Authorization`, `Access-Token`): a name,
    /// never a value. The proxy returns no response header of that name.
    pub fn credential_header(&self) -> &str {
        &self.provider.spec.api.credential_header
    }
}

/// The platform's answer, with the prefix the classifier read and the rest still streaming.
#[derive(Debug)]
pub struct Outcome {
    /// The response (its body continues after `prefix`).
    pub response: Answer,
    /// The bytes already read.
    pub prefix: Bytes,
    /// Whether `prefix` is the whole body (the platform's answer ended within what the
    /// classifier reads): then nothing is left to stream.
    pub complete: bool,
    /// What happened.
    pub report: Report,
}

impl Outcome {
    /// The whole body as a stream: the prefix, then the rest, cut off with an error past `limit`.
    pub fn body_stream(
        prefix: Bytes,
        response: Answer,
        limit: u64,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let mut seen = 0u64;
        let rest = futures::stream::unfold(response.into_body(), |mut body| async move {
            body.chunk().await.map(|r| (r, body))
        });
        futures::stream::once(async move { Ok::<Bytes, BoxError>(prefix) })
            .chain(rest)
            .map(move |r| {
                let chunk = r.map_err(std::io::Error::other)?;
                seen = seen.saturating_add(chunk.len() as u64);
                if seen > limit {
                    // The status went out with the first bytes; failing the stream makes the
                    // server break the connection (no final chunk), so the caller cannot take the
                    // part it got for the whole.
                    tracing::warn!(limit, "a response passed the body limit and was cut off");
                    return Err(std::io::Error::other("the response body exceeds the limit"));
                }
                Ok(chunk)
            })
            .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
    }
}

/// Why a call could not be made or finished. `Display` carries no secret, no URL and no upstream
/// text.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No token could be had (the connection needs re-authorization, is unknown, …).
    #[error("{failure}")]
    Token {
        /// The provider, when the connection was found.
        provider: Option<String>,
        /// What the token service said.
        failure: TokenFailure,
    },
    /// The target is not allowed.
    #[error(transparent)]
    Refused(#[from] UrlRefused),
    /// A header value is not allowed.
    #[error(transparent)]
    BadHeader(#[from] BadHeader),
    /// The caller's budget ran out while queued or waiting.
    #[error("the call's budget ran out before the platform could be called within its limits")]
    OverBudget {
        /// How much longer it would have taken.
        would_wait: Duration,
        /// Calls made so far.
        attempts: u32,
        /// Time already spent.
        waited: Duration,
    },
    /// The platform could not be reached.
    #[error("the platform could not be reached: {message}")]
    Unreachable {
        /// Calls made.
        attempts: u32,
        /// Our words.
        message: String,
    },
    /// The request body is over the limit.
    #[error("the request body exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The response body is over the limit.
    #[error("the platform's response exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The caller's request body could not be read.
    #[error("the request body could not be read")]
    BadBody,
    /// An OAuth 1.0a call that cannot be signed: a form body too large to hold (its parameters
    /// are part of the signature), or an app without its consumer secret.
    #[error("the call cannot be signed: {0}")]
    Unsignable(&'static str),
    /// A SOAP call whose envelope cannot carry the token (no header entry for it, not XML, too
    /// large to hold).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The healing engine: one per process, shared by every call.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    tokens: Arc<TokenService>,
    providers: Arc<Registry>,
    clock: Arc<dyn Clock>,
    shaper: Shaper,
    config: EngineConfig,
    /// When each app's configuration problem was last recorded (provider, app): a misconfigured
    /// app answered on every call is written once a minute, not once a call.
    app_problems_raised:
        parking_lot::Mutex<std::collections::HashMap<(String, String, ProblemCode), Instant>>,
    /// The proxied-call counters' handles, by provider, then kind and status ([`Engine::count`]).
    proxy_counters: parking_lot::RwLock<ProxyCounters>,
}

type ProxyCounters = std::collections::HashMap<
    String,
    Vec<(&'static str, &'static str, metrics::Counter)>,
    crate::FastHash,
>;

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Reads what the classifier reads of the body: up to [`MAX_CLASSIFIED_BODY`], and whether that
/// was all of it. A body that comes in one chunk is kept as it came, without a copy.
async fn read_prefix(resp: &mut Answer) -> Result<(Bytes, bool), BoxError> {
    // The length the body announced (its exact size hint): once that much is in hand it has
    // ended, and asking again would only be told so.
    let length = content_length(resp);
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    let mut held = 0usize;
    while held < MAX_CLASSIFIED_BODY {
        if length == Some(held as u64) {
            return Ok((first.unwrap_or_else(|| buf.freeze()), true));
        }
        match resp.body_mut().chunk().await.transpose()? {
            Some(c) if c.is_empty() => {}
            Some(c) => {
                held += c.len();
                match first.take() {
                    None if buf.is_empty() => first = Some(c),
                    prior => {
                        if let Some(p) = prior {
                            buf.extend_from_slice(&p);
                        }
                        buf.extend_from_slice(&c);
                    }
                }
            }
            None => return Ok((first.unwrap_or_else(|| buf.freeze()), true)),
        }
    }
    Ok((first.unwrap_or_else(|| buf.freeze()), false))
}

/// A call's lanes ([`Shaper::lanes`]), made when first needed.
struct CallLanes {
    /// The definition publishes a limit: every call books its lanes.
    limited: bool,
    made: Option<Vec<crate::shaper::Lane>>,
}

/// Where a call goes: the connection lent by the token cache with a fresh token, or loaded
/// (from the cache or the store) with the token still to be asked for.
enum Route {
    Lent(crate::cache::Lent),
    Loaded(Box<Connection>),
}

impl std::ops::Deref for Route {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Route::Lent(lent) => lent.connection(),
            Route::Loaded(conn) => conn,
        }
    }
}

/// The token a call is made with: the cache's, read in place, or one handed out (and owned).
enum Held {
    Lent(crate::cache::Lent),
    Issued(Issued),
}

impl Held {
    fn tokens(&self) -> &tokenwarden_core::token::TokenSet {
        match self {
            Held::Lent(lent) => lent.tokens(),
            Held::Issued(issued) => &issued.tokens,
        }
    }
}

thread_local! {
    /// [`with_header_pairs`]'s strings, reused from answer to answer on this thread.
    static HEADER_PAIRS: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The buffer is let go rather than kept when an answer's headers made it larger than this.
const KEPT_HEADER_BYTES: usize = 16 * 1024;

/// `f` over the headers `read` names, as the classifier reads them ([`header_pairs`]), written
/// into strings this thread reuses: every answer is classified, and allocating two strings per
/// header was a tenth of the call's own work (issue 19). The classifier names the few headers it
/// reads ([`Classifier::reads_header`](tokenwarden_core::classify::Classifier::reads_header));
/// the others are not copied.
fn with_header_pairs<R>(
    h: &HeaderMap,
    read: impl Fn(&str) -> bool,
    f: impl FnOnce(&[(String, String)]) -> R,
) -> R {
    HEADER_PAIRS.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            // Only if `f` classified again inside (it does not): a vector of its own.
            let mut pairs = header_pairs(h);
            pairs.retain(|(n, _)| read(n));
            return f(&pairs);
        };
        let mut used = 0;
        for (name, value) in h {
            if !read(name.as_str()) {
                continue;
            }
            if used == buf.len() {
                buf.push((String::new(), String::new()));
            }
            let (n, v) = &mut buf[used];
            n.clear();
            n.push_str(name.as_str());
            v.clear();
            v.push_str(&String::from_utf8_lossy(value.as_bytes()));
            used += 1;
        }
        let out = f(&buf[..used]);
        let held: usize = buf.iter().map(|(n, v)| n.capacity() + v.capacity()).sum();
        if held > KEPT_HEADER_BYTES {
            *buf = Vec::new();
        }
        out
    })
}

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Engine {
    /// An engine over the daemon's (or the embedding program's) store and token service.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenService>,
        providers: Arc<Registry>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        let shaper = if config.shared_rate_budget {
            Shaper::shared(store.clone())
        } else {
            Shaper::new()
        };
        Engine {
            store,
            tokens,
            providers,
            clock,
            shaper,
            config,
            app_problems_raised: Default::default(),
            proxy_counters: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The shaper (for diagnostics and tests).
    pub fn shaper(&self) -> &Shaper {
        &self.shaper
    }

    fn real(&self, platform: Duration) -> Duration {
        to_real(platform, self.config.time_scale)
    }

    fn backoff(&self, step: u32) -> Duration {
        let u: f64 = rand::random();
        self.real(policy::backoff(
            step,
            self.config.backoff_base,
            self.config.backoff_cap,
            u,
        ))
    }

    fn token_error(provider: Option<&str>, failure: TokenFailure) -> ProxyError {
        ProxyError::Token {
            provider: provider.map(str::to_string),
            failure,
        }
    }

    /// Resolves where a call goes without making it: the connection, its provider and the URL.
    async fn resolve(
        &self,
        call: &Call,
    ) -> Result<(Route, Arc<Provider>, Url, String), ProxyError> {
        // From the token cache when it holds the connection with a fresh token: both read there
        // in place (issue 19). Otherwise the connection from the cache or the store, and the
        // token asked for afterwards.
        let conn = match self.tokens.lend(&call.connection) {
            Some(lent) => Route::Lent(lent),
            None => Route::Loaded(Box::new(
                self.tokens
                    .connection(&call.connection)
                    .await?
                    .ok_or_else(|| {
                        Engine::token_error(None, TokenFailure::NotFound(call.connection.clone()))
                    })?,
            )),
        };
        let provider = self
            .providers
            .get(conn.provider.as_str())
            .cloned()
            .ok_or_else(|| {
                Engine::token_error(
                    None,
                    TokenFailure::UnknownProvider(conn.provider.to_string()),
                )
            })?;
        let base = target::api_base(&provider, &conn)?;
        // A path goes to the host that serves it (`[[api.services]]`), else the connection's own.
        let (url, rel) = match &call.target {
            Target::Path { path, query } => {
                let host = target::base_for(&provider, &base, path);
                (target::build(&host, path, query.as_deref())?, path.clone())
            }
            Target::Url(u) => {
                let within = target::bases(&provider, &base)
                    .into_iter()
                    .find_map(|b| target::relative(&b, u).ok().map(|r| (b, r)));
                let Some((host, (path, query))) = within else {
                    let why = target::relative(&base, u).err();
                    return Err(why.unwrap_or(UrlRefused::LeftBase).into());
                };
                (target::build(&host, &path, query)?, path)
            }
        };
        Ok((conn, provider, url, rel))
    }

    /// What the definition's extra headers are filled from: the app's client id and the
    /// connection's recorded account.
    async fn header_values(&self, conn: &Connection) -> Result<HeaderValues, ProxyError> {
        let app = self.store.get_app(&conn.provider, &conn.app).await?;
        let (client_id, developer_token, user_agent, identity) = app
            .map(|a| (a.client_id, a.developer_token, a.user_agent, a.identity))
            .unwrap_or_default();
        Ok(HeaderValues {
            client_id,
            developer_token,
            user_agent,
            identity,
            account_id: conn
                .account
                .as_ref()
                .map(|a| a.id.clone())
                .or_else(|| conn.account_ids.first().cloned()),
        })
    }

    /// OAuth 1.0a: the app's consumer key and secret (its client id and secret), which sign every
    /// call with the connection's token and token secret.
    async fn consumer(
        &self,
        conn: &Connection,
    ) -> Result<(String, tokenwarden_core::secret::Secret), ProxyError> {
        let app =
            self.store
                .get_app(&conn.provider, &conn.app)
                .await?
                .ok_or(ProxyError::Unsignable(
                    "the connection's app is not configured (no consumer secret)",
                ))?;
        Ok((app.client_id, app.client_secret))
    }

    /// Makes the call, healing what the classifier says can be healed.
    pub async fn execute(
        &self,
        mut call: Call,
        transport: &mut dyn Transport,
    ) -> Result<Outcome, ProxyError> {
        let started = Instant::now();
        let budget = call
            .budget
            .unwrap_or(self.config.default_budget)
            .min(self.config.max_budget);
        let deadline = started + budget;
        let (conn, provider, url, rel) = self.resolve(&call).await?;
        let pid = provider.spec.id.as_str();
        let api = &provider.spec.api;
        let streamed = !call.body.replayable();
        let mut base_headers = headers::outbound(&call.headers, &api.credential_header, streamed)?;
        // A SOAP call (Microsoft Advertising's SOAP services) carries the token in its envelope.
        let soap = api.soap.as_ref().filter(|s| {
            s.matches(
                call.headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
            )
        });
        if soap.is_some() && streamed {
            return Err(ProxyError::Envelope(EnvelopeError::TooLarge));
        }
        let mut soap_entries = Vec::new();
        if !api.headers.is_empty() || soap.is_some() || !provider.spec.identities.is_empty() {
            let values = Box::pin(self.header_values(&conn)).await?;
            // A header limited to some paths (LinkedIn's versioned /rest calls) goes only there;
            // the app's identity adds its own (`IdentityProvider: Google`).
            let extra: Vec<_> = provider
                .spec
                .extra_headers(&values)
                .into_iter()
                .filter(|h| h.applies_to(&rel))
                .collect();
            headers::attach_extra(&mut base_headers, &extra);
            // The app's identity's entries too (`IdentityProvider`: Google).
            if soap.is_some() {
                soap_entries = provider.spec.soap_elements(&values);
            }
        }
        let consumer = match api.credential_in {
            CredentialPlacement::OAuth1 => Some(Box::pin(self.consumer(&conn)).await?),
            _ => None,
        };
        // The body's parameters are part of an OAuth 1.0a signature when it is a form.
        let form = oauth1::is_form(
            call.headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        // Made when first needed: where the definition publishes no limit, only while a
        // throttle's hold may last, or to hold them after one (issue 19).
        let mut lanes = CallLanes {
            limited: Shaper::has_limits(&provider),
            made: None,
        };
        let make_lanes = || Shaper::lanes(&provider, &conn, &rel, self.config.time_scale);
        // A connection that needs re-authorization answers at once: no call can succeed.
        let mut issued = match &conn {
            Route::Lent(lent) => Held::Lent(lent.clone()),
            Route::Loaded(c) => Held::Issued(
                self.tokens
                    .token(&c.id)
                    .await
                    .map_err(|f| Engine::token_error(Some(pid), f))?,
            ),
        };

        let mut attempts = 0u32;
        let mut waited = Duration::ZERO;
        let mut refreshed = false;
        let mut step = 0u32;
        loop {
            let queued = if lanes.limited || self.shaper.maybe_held(Instant::now()) {
                self.shaper
                    .acquire(lanes.made.get_or_insert_with(make_lanes), deadline)
                    .await
            } else {
                Ok(Duration::ZERO)
            };
            match queued {
                Ok(q) if q.is_zero() => {}
                Ok(q) => {
                    waited += q;
                    // A caller that queued picks up a token refreshed meanwhile.
                    if !refreshed {
                        issued = Held::Issued(
                            self.tokens
                                .token(&conn.id)
                                .await
                                .map_err(|f| Engine::token_error(Some(pid), f))?,
                        );
                    }
                }
                Err(OverBudget { would_wait }) => {
                    self.count(pid, "budget_exhausted", "none", waited);
                    return Err(ProxyError::OverBudget {
                        would_wait,
                        attempts,
                        waited,
                    });
                }
            }
            let mut h = base_headers.clone();
            let mut target = url.clone();
            // The envelope written afresh with this attempt's token (a replay after a refresh
            // carries the new one).
            let envelope = match (soap, &call.body) {
                (Some(s), OutBody::Buffered(body)) => {
                    let others: Vec<soap::Entry<'_>> = soap_entries
                        .iter()
                        .map(|e| soap::Entry {
                            name: &e.name,
                            value: &e.value,
                            replaces: e.replaces,
                        })
                        .collect();
                    let token = soap::Entry {
                        name: &s.credential_element,
                        value: issued.tokens().access_token.expose(),
                        replaces: true,
                    };
                    Some(soap::fill(body, token, &others)?)
                }
                _ => None,
            };
            match api.credential_in {
                CredentialPlacement::Header if envelope.is_some() => {}
                CredentialPlacement::Header => headers::attach_credential(
                    &mut h,
                    &api.credential_header,
                    &api.credential_value,
                    issued.tokens().access_token.expose(),
                )?,
                // Threads: the token goes in the URL, which is therefore never logged or put
                // in an error (transport errors are stripped of it below).
                CredentialPlacement::Query => {
                    api.place_query_credential(&mut target, issued.tokens().access_token.expose())
                }
                // X Ads: a fresh signature over this very request (method, URL, form body) with a
                // new nonce and the current time, each attempt.
                CredentialPlacement::OAuth1 => {
                    let Some((key, secret)) = consumer.as_ref() else {
                        return Err(ProxyError::Unsignable("no consumer secret"));
                    };
                    let form_body = match (&call.body, form) {
                        (OutBody::Buffered(b), true) => Some(b.as_ref()),
                        (OutBody::Streamed { .. }, true) => {
                            return Err(ProxyError::Unsignable(
                                "a form body too large to hold cannot be signed",
                            ));
                        }
                        _ => None,
                    };
                    let nonce = oauth1::nonce_from(rand::random());
                    let value = oauth1::authorization(
                        &oauth1::Request {
                            method: call.method.as_str(),
                            url: &target,
                            form_body,
                        },
                        &oauth1::Credentials {
                            consumer_key: key,
                            consumer_secret: secret.expose(),
                            token: Some(issued.tokens().access_token.expose()),
                            token_secret: issued
                                .tokens()
                                .token_secret
                                .as_ref()
                                .map_or("", |s| s.expose()),
                        },
                        &oauth1::Stamp {
                            nonce: &nonce,
                            timestamp: self.clock.now().timestamp(),
                            extra: &[],
                        },
                    );
                    headers::attach_credential(
                        &mut h,
                        &api.credential_header,
                        "{access_token}",
                        &value,
                    )?
                }
            }
            let mut req = reqwest::Request::new(call.method.clone(), target);
            *req.headers_mut() = h;
            *req.body_mut() = match envelope {
                Some(e) => Some(reqwest::Body::from(e)),
                None => call.body.next(),
            };
            attempts += 1;
            let mut resp = match transport.send(req).await {
                Ok(r) => r,
                Err(e) => {
                    if call.body.overflowed() {
                        return Err(ProxyError::RequestTooLarge {
                            limit: self.config.max_request_bytes,
                        });
                    }
                    // Only a connection never made proves a non-idempotent call was not processed.
                    let may_retry =
                        call.body.replayable() && (idempotent(&call.method) || e.connect);
                    let wait = self.backoff(step);
                    step += 1;
                    if may_retry && Instant::now() + wait < deadline {
                        tokio::time::sleep(wait).await;
                        waited += wait;
                        continue;
                    }
                    self.count(pid, "unreachable", "none", waited);
                    return Err(ProxyError::Unreachable {
                        attempts,
                        message: e.message,
                    });
                }
            };
            if content_length(&resp).is_some_and(|n| n > self.config.max_response_bytes) {
                self.count(pid, "response_too_large", "none", waited);
                return Err(ProxyError::ResponseTooLarge {
                    limit: self.config.max_response_bytes,
                });
            }
            let (prefix, complete) = match read_prefix(&mut resp).await {
                Ok(p) => p,
                Err(e) => {
                    return Err(ProxyError::Unreachable {
                        attempts,
                        message: e.to_string(),
                    });
                }
            };
            // What was read for the classifier is already over the limit (a body sent without a
            // length): nothing has been answered yet, so the caller gets a clear 502 rather than
            // a 200 whose body breaks off.
            if prefix.len() as u64 > self.config.max_response_bytes {
                self.count(pid, "response_too_large", "none", waited);
                return Err(ProxyError::ResponseTooLarge {
                    limit: self.config.max_response_bytes,
                });
            }
            let now = self.clock.now();
            let classifier = provider.classifier();
            let read = |name: &str| classifier.reads_header(name);
            let c = with_header_pairs(resp.headers(), read, |pairs| {
                classifier.classify(
                    &ResponseView {
                        status: resp.status().as_u16(),
                        headers: pairs,
                        body: &prefix,
                    },
                    Context::Api,
                    now,
                )
            });
            let mut report = Report {
                provider: provider.clone(),
                connection: conn.id.clone(),
                action: c.action,
                classification: c,
                attempts,
                waited,
                refreshed,
                reauth_required: false,
            };
            let c = &report.classification;
            match c.action {
                Action::RefreshAndRetry if !refreshed && call.body.replayable() => {
                    // Boxed, as every rare branch here: the loop's future is moved whole on every
                    // call, so what only a refusal or a throttle needs stays off it.
                    match Box::pin(
                        self.tokens
                            .replace(&conn.id, issued.tokens().access_token.expose()),
                    )
                    .await
                    {
                        Ok(fresh) => {
                            issued = Held::Issued(fresh);
                            refreshed = true;
                            continue;
                        }
                        Err(f) => return Err(Engine::token_error(Some(pid), f)),
                    }
                }
                // A streamed body cannot be sent again: renew the token for the next call and
                // let the caller retry this one (the action says so).
                Action::RefreshAndRetry if !refreshed => {
                    if let Err(f) = Box::pin(
                        self.tokens
                            .replace(&conn.id, issued.tokens().access_token.expose()),
                    )
                    .await
                    {
                        return Err(Engine::token_error(Some(pid), f));
                    }
                    report.refreshed = true;
                }
                // The replay with a fresh token failed the same way: the grant is gone.
                Action::RefreshAndRetry => {
                    report.action = Action::Reauthorize;
                    report.reauth_required = Box::pin(self.mark_reauth(&provider, &conn, c)).await;
                }
                Action::Reauthorize
                    if matches!(
                        c.kind,
                        Kind::TokenExpired | Kind::TokenInvalid | Kind::TokenRevoked
                    ) =>
                {
                    report.reauth_required = Box::pin(self.mark_reauth(&provider, &conn, c)).await;
                }
                Action::BackoffAndRetry => {
                    let throttled = c.kind == Kind::RateLimited;
                    let wait = match c.retry_after {
                        Some(d) => self.real(d),
                        None => self.backoff(step),
                    };
                    step += 1;
                    if throttled {
                        // Everyone on these lanes waits, not just this caller; every connection
                        // of the app when the quota is the app's, which is then one app problem
                        // (never a problem on each connection).
                        let held = Shaper::held_by(
                            lanes.made.get_or_insert_with(make_lanes),
                            c.blame == Blame::App,
                        );
                        Box::pin(self.shaper.throttled(&held, wait)).await;
                        if c.blame == Blame::App {
                            Box::pin(self.raise_app_problem(&conn, c, Some(wait))).await;
                        }
                    }
                    // A throttled call was refused before it was processed; an outage may have
                    // processed a non-idempotent call, so that one is never replayed.
                    let may_replay =
                        call.body.replayable() && (throttled || idempotent(&call.method));
                    if may_replay && Instant::now() + wait <= deadline {
                        if !throttled {
                            tokio::time::sleep(wait).await;
                            waited += wait;
                        }
                        continue;
                    }
                }
                // The app's configuration (LinkedIn's retired or missing API version): one
                // app-level problem, no connection touched (hardening rule 5).
                Action::FixRequest if c.blame == Blame::App => {
                    Box::pin(self.raise_app_problem(&conn, c, None)).await;
                }
                _ => {
                    if c.kind == Kind::Ok {
                        // Lanes never made had no limit: nothing to creep back or slow down.
                        if let Some(made) = &lanes.made {
                            self.shaper.succeeded(made, c.usage_pct).await;
                        }
                        self.clear_app_problem(&conn).await;
                    }
                }
            }
            self.count(pid, c.kind.as_str(), status_label(resp.status()), waited);
            return Ok(Outcome {
                response: resp,
                prefix,
                complete,
                report,
            });
        }
    }

    fn count(&self, provider: &str, kind: &'static str, status: &'static str, waited: Duration) {
        let counter = || {
            metrics::counter!(
                PROXY_REQUESTS,
                "provider" => provider.to_string(),
                "kind" => kind,
                "status" => status
            )
        };
        // Once the recorder is installed (`cache::bind_metrics`), each counter's handle is taken
        // once and kept: a call's count is an increment, not a search of the recorder's registry
        // by name and labels (issue 19). Before that, a handle would count nowhere.
        if crate::cache::metrics_bound() {
            let same = |(k, s, _): &&(&str, &str, metrics::Counter)| *k == kind && *s == status;
            let held = self
                .proxy_counters
                .read()
                .get(provider)
                .and_then(|v| v.iter().find(same).map(|(_, _, c)| c.clone()));
            let c = held.unwrap_or_else(|| {
                let c = counter();
                let mut all = self.proxy_counters.write();
                let list = all.entry(provider.to_string()).or_default();
                if !list.iter().any(|e| same(&e)) {
                    list.push((kind, status, c.clone()));
                }
                c
            });
            c.increment(1);
        } else {
            counter().increment(1);
        }
        if !waited.is_zero() {
            metrics::histogram!(THROTTLE_WAIT, "provider" => provider.to_string())
                .record(waited.as_secs_f64());
        }
    }

    /// The platform refused the token itself: the connection needs a person (the same state
    /// change the token service makes when a refresh is refused).
    /// Records that the platform refused the connection's token; true if it is now
    /// `reauth_required`.
    ///
    /// Where the definition has a second (sandbox) API host, a refused token may instead belong
    /// to the other environment, which re-authorizing would not fix. That is the health
    /// monitor's call (it asks the other host): the connection is probed at once instead, and
    /// the monitor marks it within one probe interval if the grant is really gone.
    /// Records a refusal that is the app's configuration as the app's problem, once: the
    /// connections stay as they are.
    ///
    /// With `quota_wait`, the refusal is the app's quota (a throttle the definition blames on the
    /// app): `app_quota_exhausted`, saying when calls resume. Otherwise `app_refused`.
    async fn raise_app_problem(
        &self,
        conn: &Connection,
        c: &Classification,
        quota_wait: Option<Duration>,
    ) {
        let code = match quota_wait {
            Some(_) => ProblemCode::AppQuotaExhausted,
            None => ProblemCode::AppRefused,
        };
        let key = (conn.provider.to_string(), conn.app.to_string(), code);
        {
            let mut raised = self.app_problems_raised.lock();
            let now = Instant::now();
            if raised
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60))
            {
                return;
            }
            raised.insert(key, now);
        }
        let now = self.clock.now();
        let fix = match quota_wait.and_then(|w| chrono::TimeDelta::from_std(w).ok()) {
            Some(w) => format!(
                "{} Every connection of this app waits until {} UTC; nothing needs re-authorizing.",
                c.fix.trim_end(),
                (now + w).format("%Y-%m-%d %H:%M")
            ),
            None => c.fix.clone(),
        };
        let problem = Problem {
            code,
            title: c.title.clone(),
            fix,
            since: now,
        };
        tracing::warn!(
            connection = %conn.id,
            provider = %conn.provider,
            app = %conn.app,
            kind = code.as_str(),
            verdict = c.kind.as_str(),
            reason = %c.title,
            "the platform refused the app (its configuration or its quota) on a proxied call"
        );
        if let Err(e) = self
            .store
            .raise_app_problem(&conn.provider, &conn.app, &problem)
            .await
        {
            tracing::warn!(app = %conn.app, error = %e, "could not record the app problem");
        }
    }

    /// The app's calls work again (the operator fixed what `raise_app_problem` recorded: a
    /// retired API version rolled forward): the app problem this process raised is cleared.
    /// Only this process's own are known here, so a success costs no store call unless this
    /// process raised one; another replica clears its own on its next success, and a refresh
    /// that succeeds clears any.
    async fn clear_app_problem(&self, conn: &Connection) {
        let raised: Vec<ProblemCode> = {
            let mut map = self.app_problems_raised.lock();
            if map.is_empty() {
                return;
            }
            let (provider, app) = (conn.provider.as_str(), conn.app.as_str());
            let codes: Vec<ProblemCode> = map
                .keys()
                .filter(|(p, a, _)| p == provider && a == app)
                .map(|(_, _, c)| *c)
                .collect();
            for code in &codes {
                map.remove(&(provider.to_string(), app.to_string(), *code));
            }
            codes
        };
        for code in raised {
            if let Err(e) = self
                .store
                .clear_app_problem(&conn.provider, &conn.app, code.as_str())
                .await
            {
                tracing::warn!(app = %conn.app, error = %e, "could not clear the app problem");
            }
        }
    }

    async fn mark_reauth(
        &self,
        provider: &Provider,
        conn: &Connection,
        c: &Classification,
    ) -> bool {
        let now = self.clock.now();
        let fresh = self
            .store
            .get_connection(&conn.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| conn.clone());
        if fresh.state == ConnectionState::ReauthRequired {
            return true;
        }
        // OAuth 1.0a token credentials come from one authorization server for both hosts, so a
        // refusal is never the other environment's token: it is marked at once.
        if provider.spec.api.sandbox_base_url.is_some()
            && provider.spec.api.credential_in != CredentialPlacement::OAuth1
        {
            let known = fresh
                .problems
                .iter()
                .any(|p| p.code == ProblemCode::EnvironmentMismatch);
            if !known && let Err(e) = self.store.set_next_probe(&conn.id, Some(now)).await {
                tracing::warn!(connection = %conn.id, error = %e, "could not schedule a probe");
            }
            return false;
        }
        tracing::warn!(
            connection = %conn.id,
            provider = %conn.provider,
            kind = "token_refused",
            verdict = c.kind.as_str(),
            reason = %c.title,
            "the platform refused the token on a proxied call: a person must re-authorize"
        );
        let problems = state::replace(
            &fresh.problems,
            Problem {
                code: ProblemCode::TokenRefused,
                title: c.title.clone(),
                fix: c.fix.clone(),
                since: now,
            },
        );
        let results = [
            self.tokens
                .states()
                .set_problems(&fresh, problems, now)
                .await
                .map(|_| ()),
            self.store
                .append_event(
                    &NewEvent::new(
                        Some(conn.id.clone()),
                        now,
                        "reauth_required",
                        format!(
                            "The platform refused the token on a proxied call: {}",
                            c.title
                        ),
                    )
                    .with("kind", c.kind.as_str())
                    .with("platform_code", c.platform_code.clone().unwrap_or_default()),
                )
                .await
                .map(|_| ()),
        ];
        for r in results {
            if let Err(e) = r {
                tracing::warn!(connection = %conn.id, error = %e, "could not record a refused token");
            }
        }
        true
    }
}

/// A bounded set of status labels (a metric label must not take arbitrary values).
fn status_label(s: StatusCode) -> &'static str {
    const KNOWN: [(u16, &str); 13] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    let code = s.as_u16();
    KNOWN
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, l)| *l)
        .unwrap_or(match code / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                reqwest::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn reused_header_strings_hold_only_this_answers_headers() {
        let big = "x".repeat(KEPT_HEADER_BYTES + 1);
        let answers = [
            map(&[
                ("content-type", b"application/json"),
                ("x-app-usage", br#"{"call_count":5}"#),
                ("vary", b"a"),
                ("vary", b"b"),
            ]),
            map(&[("retry-after", b"7")]),
            map(&[]),
            map(&[("x-latin", b"caf\xe9"), ("x-big", big.as_bytes())]),
            map(&[("date", b"Sat, 05 Dec 2026 11:00:00 GMT"), ("vary", b"c")]),
        ];
        for h in &answers {
            let seen = with_header_pairs(h, |_| true, <[(String, String)]>::to_vec);
            assert_eq!(seen, header_pairs(h));
            // Only the headers asked for, in their order, repeats kept.
            let vary = |n: &str| n == "vary";
            let seen = with_header_pairs(h, vary, <[(String, String)]>::to_vec);
            let mut wanted = header_pairs(h);
            wanted.retain(|(n, _)| vary(n));
            assert_eq!(seen, wanted);
        }
        // The large answer's strings were let go, not kept for the next.
        let held: usize =
            HEADER_PAIRS.with_borrow(|b| b.iter().map(|(n, v)| n.capacity() + v.capacity()).sum());
        assert!(held <= KEPT_HEADER_BYTES, "{held}");
    }
}
