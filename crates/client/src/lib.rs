//! The proxy's behaviour in-process, for Rust programs that do not want a daemon in between: a
//! [`reqwest_middleware::Middleware`] backed by the same [`Engine`] (token service, store,
//! classifier, shaper) as `tokenwarden serve`'s `/proxy`.
//!
//! ```no_run
//! # async fn demo(engine: std::sync::Arc<tokenwarden_engine::Engine>) -> Result<(), Box<dyn std::error::Error>> {
//! use tokenwarden_client::{Healing, ForConnection};
//! use tokenwarden_core::id::ConnectionId;
//!
//! let http = Healing::new(engine).client(reqwest::Client::new());
//! let resp = http
//!     .get("https://adsapi.snapchat.com/v1/me")
//!     .with_extension(ForConnection(ConnectionId::parse("acme-snap")?))
//!     .send()
//!     .await?;
//! println!("{} {:?}", resp.status(), resp.headers().get("tokenwarden-kind"));
//! # Ok(()) }
//! ```
//!
//! Every request names its connection with the [`ForConnection`] extension and may set a
//! [`Budget`]; its URL must lie under the connection's API base (anything else is refused before a
//! token is attached). The token is attached as the provider definition says; on an expired token
//! the middleware refreshes (exactly once per connection, across tasks and replicas) and replays;
//! on a throttle it waits as the platform asked and keeps later calls within the published limits;
//! GETs are retried through an outage. The response carries the same `tokenwarden-*` headers as the
//! proxy's, and the [`Report`] in its extensions.
//!
//! The middleware sends through the rest of the chain (`next`), so it composes with tracing or
//! metrics middleware. The inner `reqwest::Client` must not follow redirects (hardening rule 7):
//! [`Healing::client`] checks nothing there, so build it with `redirect(Policy::none())`, as
//! [`http_client`] does.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use bytes::Bytes;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Registry;
use tokenwarden_engine::TokenService;

use tokenwarden_engine::call::{Answer, answer_from_reqwest};
pub use tokenwarden_engine::{CacheConfig, CachedStore};
use tokenwarden_engine::{Call, OutBody, Outcome, ProxyError, SendError, Target, Transport};
use tokenwarden_oauth::OAuthClient;
use tokenwarden_store::Store;

pub use tokenwarden_engine::{Engine, EngineConfig, Report};

/// The connection a request is made for; attach it with
/// `RequestBuilder::with_extension(ForConnection(id))`.
#[derive(Debug, Clone)]
pub struct ForConnection(pub ConnectionId);

/// How long a request may queue and wait in total (the proxy's `tokenwarden-budget-ms`).
#[derive(Debug, Clone, Copy)]
pub struct Budget(pub Duration);

/// Why the middleware gave no platform response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not say which connection it is for.
    #[error("the request names no connection: add .with_extension(ForConnection(id))")]
    NoConnection,
    /// The engine could not make or finish the call (re-authorization needed, budget exhausted,
    /// URL refused, platform unreachable, …).
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// The healing middleware.
#[derive(Debug, Clone)]
pub struct Healing {
    engine: Arc<Engine>,
}

/// A reqwest client fit to sit under the middleware: no redirects, bounded connect and read time.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()
}

impl Healing {
    /// Over an existing engine (e.g. the daemon's, when embedding it).
    pub fn new(engine: Arc<Engine>) -> Self {
        Healing { engine }
    }

    /// An engine of its own over `store`: the same token service (single-flight and store lease,
    /// so it cooperates with daemons sharing the store), the provider definitions in `providers`.
    /// `owner` names this process in refresh leases and must be unique among replicas.
    pub fn embedded(
        store: Arc<dyn Store>,
        providers: Arc<Registry>,
        clock: Arc<dyn Clock>,
        owner: &str,
        config: EngineConfig,
    ) -> Result<Self, reqwest::Error> {
        let oauth = OAuthClient::new(clock.clone())?;
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            oauth,
            providers.clone(),
            clock.clone(),
            owner,
        ));
        Ok(Healing::new(Arc::new(Engine::new(
            store, tokens, providers, clock, config,
        ))))
    }

    /// [`Healing::embedded`] with the token and API-key caches of `store` in front (see
    /// [`tokenwarden_engine::cache`]): a fresh token and its connection come from memory for up
    /// to the cache's TTL instead of two store reads per call. Make this program's own writes to
    /// the store through the same `store`, so they take effect at once; a daemon's or another
    /// process's are seen within the TTL.
    pub fn embedded_cached(
        store: Arc<CachedStore>,
        providers: Arc<Registry>,
        clock: Arc<dyn Clock>,
        owner: &str,
        config: EngineConfig,
    ) -> Result<Self, reqwest::Error> {
        let oauth = OAuthClient::new(clock.clone())?;
        let tokens = Arc::new(
            TokenService::new(
                store.clone(),
                oauth,
                providers.clone(),
                clock.clone(),
                owner,
            )
            .with_cache(store.clone()),
        );
        Ok(Healing::new(Arc::new(Engine::new(
            store, tokens, providers, clock, config,
        ))))
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// `http` with this middleware in front.
    pub fn client(self, http: reqwest::Client) -> ClientWithMiddleware {
        ClientBuilder::new(http).with(self).build()
    }
}

/// The rest of the middleware chain as the engine's transport.
struct NextTransport<'a, 'b> {
    next: Next<'a>,
    extensions: &'b mut http::Extensions,
}

#[async_trait::async_trait]
impl Transport for NextTransport<'_, '_> {
    async fn send(&mut self, req: reqwest::Request) -> Result<Answer, SendError> {
        match self.next.clone().run(req, self.extensions).await {
            Ok(r) => Ok(answer_from_reqwest(r)),
            Err(reqwest_middleware::Error::Reqwest(e)) => Err(SendError::from_reqwest(e)),
            Err(e) => Err(SendError {
                connect: false,
                message: e.to_string(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for Healing {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let Some(ForConnection(connection)) = extensions.get::<ForConnection>().cloned() else {
            return Err(reqwest_middleware::Error::middleware(
                ClientError::NoConnection,
            ));
        };
        let budget = extensions.get::<Budget>().map(|b| b.0);
        let body = match req.body_mut().take() {
            None => OutBody::Buffered(Bytes::new()),
            Some(b) => match b.as_bytes() {
                Some(bytes) => OutBody::Buffered(Bytes::copy_from_slice(bytes)),
                // A streaming body is sent once; it cannot be replayed.
                None => OutBody::Streamed {
                    body: Some(b),
                    overflowed: Arc::new(AtomicBool::new(false)),
                },
            },
        };
        let call = Call {
            connection,
            method: req.method().clone(),
            target: Target::Url(req.url().clone()),
            headers: req.headers().clone(),
            body,
            budget,
        };
        let mut transport = NextTransport { next, extensions };
        let Outcome {
            response,
            prefix,
            report,
            ..
        } = self
            .engine
            .execute(call, &mut transport)
            .await
            .map_err(|e| reqwest_middleware::Error::middleware(ClientError::Proxy(e)))?;
        let mut head = http::Response::builder()
            .status(response.status())
            .version(response.version());
        if let Some(h) = head.headers_mut() {
            h.extend(response.headers().clone());
            tokenwarden_proxy::handler::report_headers(h, &report, self.engine.config().time_scale);
        }
        let limit = self.engine.config().max_response_bytes;
        let body = reqwest::Body::wrap_stream(Outcome::body_stream(prefix, response, limit));
        let built = head
            .extension(report)
            .body(body)
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(reqwest::Response::from(built))
    }
}
