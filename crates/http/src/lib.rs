//! Serves an axum router the way hardening rule 11 asks: `axum::serve` sets no header-read
//! timeout (axum #2741), so a slow client could hold a connection forever. Here hyper-util serves
//! each connection with a timer and a header-read timeout, the number of connections is capped,
//! transient accept errors do not stop the server, and shutdown drains requests in flight. Each
//! request carries its peer's address as axum's `ConnectInfo<SocketAddr>`, so handlers can limit
//! and log by client address.
//!
//! [`serve`] serves on the runtime that polls it; [`serve_sharded`] on [`Shards`], one
//! single-threaded runtime per core, each serving the connections handed to it start to finish.
//! A [`Shortcut`] may take the few requests that are made all day before the router sees them
//! ([`Routes::with_shortcut`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod h1;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send its request headers within this long.
    pub header_read_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
    /// Serve plain HTTP/1.1 requests without a body with the crate's own loop ([`h1`]), handing a
    /// connection to hyper at its first other request; `false`: hyper serves every connection.
    pub plain_http1: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain: Duration::from_secs(10),
            plain_http1: true,
        }
    }
}

/// A way around the router for the few requests every caller makes all day (a cached token, a
/// proxied call): it takes the request, or hands it back for the router. It must answer exactly
/// as the route would, or not at all.
pub trait Shortcut: Send + Sync + 'static {
    /// The answer to `req` from `peer`, or `req` back for the router. The client's address comes
    /// as `peer`, not as the `ConnectInfo` the router's handlers find in the request's extensions:
    /// putting it there costs each request an allocation, so it is added only for the router.
    #[allow(
        clippy::result_large_err,
        reason = "the request goes back as it came: boxing it would cost every routed request an allocation"
    )]
    fn answer(
        &self,
        req: axum::extract::Request,
        peer: SocketAddr,
    ) -> Result<Answer, axum::extract::Request>;
}

/// A [`Shortcut`]'s answer.
#[allow(
    missing_debug_implementations,
    reason = "a boxed future has nothing to show"
)]
pub enum Answer {
    /// Made already.
    Ready(Response),
    /// Still to be made.
    Pending(std::pin::Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Answer {
    /// The response, once made.
    pub async fn resolve(self) -> Response {
        match self {
            Answer::Ready(r) => r,
            Answer::Pending(f) => f.await,
        }
    }
}

/// What a listener serves: a router, and optionally a [`Shortcut`] tried first.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    shortcut: Option<Arc<dyn Shortcut>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("shortcut", &self.shortcut.is_some())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// `router` with `shortcut` tried before it.
    pub fn with_shortcut(router: Router, shortcut: impl Shortcut) -> Routes {
        Routes {
            router,
            shortcut: Some(Arc::new(shortcut)),
        }
    }
}

impl From<Router> for Routes {
    fn from(router: Router) -> Routes {
        Routes {
            router,
            shortcut: None,
        }
    }
}

async fn call_router(
    routes: Routes,
    peer: SocketAddr,
    mut req: axum::extract::Request,
) -> Result<Response, Infallible> {
    use tower::ServiceExt;
    if let Some(shortcut) = &routes.shortcut {
        req = match shortcut.answer(req, peer) {
            Ok(Answer::Ready(answer)) => return Ok(answer),
            Ok(Answer::Pending(answer)) => return Ok(answer.await),
            Err(req) => req,
        };
    }
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    routes.router.oneshot(req).await
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (up to `limits.drain`). Connections are served on the runtime that polls this future.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: impl Into<Routes>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Server::new(router.into(), limits);
    accept_loop(&listener, &limits, shutdown, |stream, peer, permit| {
        server.serve(stream, peer, permit);
    })
    .await;
    drop(listener);
    server.drain().await;
    Ok(())
}

/// Serves `router` on `listener` as [`serve`] does, but on the threads of `shards`
/// ([`Shards::handles`]): this future accepts, and hands each connection to the thread serving
/// the fewest, which serves it start to finish on its own single-threaded runtime, as nginx's
/// workers do. A request is never handed between threads, which on a busy machine is where a
/// work-stealing runtime spends its time (context switches and cross-core wake-ups;
/// docs/BENCHMARKS.md, issue 19). The connection cap covers all threads.
///
/// Returns when every thread has drained (each up to `limits.drain`). What requests started on a
/// serving thread (a pooled outbound connection, a database connection opened mid-request) lives
/// on that thread's runtime, so the caller keeps `shards` alive until everything that could use
/// such a thing has stopped, and drops it last.
pub async fn serve_sharded(
    listener: tokio::net::TcpListener,
    router: impl Into<Routes>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    shards: &[tokio::runtime::Handle],
) -> std::io::Result<()> {
    let router: Routes = router.into();
    if shards.is_empty() {
        return serve(listener, router, limits, shutdown).await;
    }
    let mut threads = Vec::with_capacity(shards.len());
    for handle in shards {
        let (hand, mut taken) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let load = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let router = router.clone();
        let task = handle.spawn(async move {
            let server = Server::new(router, limits);
            while let Some(Handed {
                stream,
                peer,
                permit,
            }) = taken.recv().await
            {
                // Registered with this thread's reactor: the connection is polled here only.
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => server.serve(stream, peer, permit),
                    Err(e) => tracing::warn!(error = %e, "a connection could not be served"),
                }
            }
            server.drain().await;
        });
        threads.push((hand, load, task));
    }
    accept_loop(&listener, &limits, shutdown, |stream, peer, permit| {
        // The thread serving the fewest connections takes it (the first of equals). A thread
        // whose loop has ended (it cannot, short of a bug) is passed over rather than handed
        // every new connection for being the least busy.
        let Some((hand, load, _)) = threads
            .iter()
            .filter(|(hand, _, _)| !hand.is_closed())
            .min_by_key(|(_, load, _)| load.load(std::sync::atomic::Ordering::Relaxed))
        else {
            tracing::error!("no serving thread is left: a connection was closed unanswered");
            return;
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be handed on");
                return;
            }
        };
        load.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let permit = Permit {
            _cap: permit,
            load: load.clone(),
        };
        if hand
            .send(Handed {
                stream,
                peer,
                permit,
            })
            .is_err()
        {
            tracing::error!("a serving thread is gone: a connection was closed unanswered");
        }
    })
    .await;
    drop(listener);
    let mut result = Ok(());
    for (hand, _, task) in threads {
        // Closing the channel tells the thread to drain.
        drop(hand);
        if let Err(e) = task.await {
            result = Err(std::io::Error::other(format!(
                "a serving thread failed: {e}"
            )));
        }
    }
    result
}

/// Threads that serve HTTP connections, each running its own single-threaded tokio runtime
/// ([`serve_sharded`]). Dropping it ends them; whatever still runs on them is cancelled then, so
/// drop it after everything that might use a connection opened on them has stopped.
#[derive(Debug)]
pub struct Shards {
    handles: Vec<tokio::runtime::Handle>,
    // Dropping a sender ends its thread's runtime.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Shards {
    /// Starts `threads` serving threads (at least one), named `tokenwarden-http-N`.
    pub fn start(threads: usize) -> std::io::Result<Shards> {
        let threads = threads.max(1);
        let mut handles = Vec::with_capacity(threads);
        let mut stop = Vec::with_capacity(threads);
        for i in 0..threads {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("tokenwarden-http-{i}"))
                .spawn(move || {
                    // The runtime runs its tasks only while this thread is inside `block_on`.
                    runtime.block_on(async {
                        let _ = rx.await;
                    });
                })?;
            stop.push(tx);
        }
        Ok(Shards {
            handles,
            _stop: stop,
        })
    }

    /// The threads' runtimes, for [`serve_sharded`].
    pub fn handles(&self) -> &[tokio::runtime::Handle] {
        &self.handles
    }
}

/// A connection handed to a serving thread.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: Permit,
}

/// A connection's place: under the cap, and in its thread's count; both given back when the
/// connection ends.
struct Permit {
    _cap: tokio::sync::OwnedSemaphorePermit,
    load: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.load.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves connections on the current runtime, and drains them.
struct Server {
    router: Routes,
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    /// For a connection [`h1`] hands to hyper that is not HTTP/2: HTTP/1 only.
    builder_h1: hyper::server::conn::http1::Builder,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    /// Tells connections served by [`h1`] to stop (hyper's are told by `graceful`).
    stop: tokio::sync::watch::Sender<()>,
    limits: Limits,
}

impl Server {
    fn new(router: Routes, limits: Limits) -> Server {
        use hyper_util::rt::{TokioExecutor, TokioTimer};
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let mut builder_h1 = hyper::server::conn::http1::Builder::new();
        builder_h1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        Server {
            router,
            builder,
            builder_h1,
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
            stop: tokio::sync::watch::Sender::new(()),
            limits,
        }
    }

    /// Serves `stream` on a task of the current runtime; `permit` is dropped when it ends.
    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr, permit: impl Send + 'static) {
        let _ = stream.set_nodelay(true);
        let router = self.router.clone();
        if !self.limits.plain_http1 {
            let conn = self
                .graceful
                .watch(hyper_conn(&self.builder, stream, router, peer));
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
            return;
        }
        // Taken now, so that draining waits for this connection whoever serves it.
        let watcher = self.graceful.watcher();
        let stop = self.stop.subscribe();
        let stop_handed = self.stop.subscribe();
        let builder = self.builder.clone();
        let builder_h1 = self.builder_h1.clone();
        let header_read_timeout = self.limits.header_read_timeout;
        tokio::spawn(async move {
            let ended = h1::serve(
                stream,
                h1::Serving {
                    respond: |req| async {
                        match call_router(router.clone(), peer, req).await {
                            Ok(answer) => answer,
                            Err(never) => match never {},
                        }
                    },
                    header_read_timeout,
                },
                stop,
            )
            .await;
            match ended {
                h1::Ended::HandOff {
                    stream,
                    read,
                    http2: true,
                } => {
                    let conn = hyper_conn(&builder, h1::Prefixed::new(read, stream), router, peer);
                    finish(conn, stop_handed).await;
                }
                h1::Ended::HandOff {
                    stream,
                    read,
                    http2: false,
                } => {
                    let conn =
                        http1_conn(&builder_h1, h1::Prefixed::new(read, stream), router, peer);
                    finish(conn, stop_handed).await;
                }
                h1::Ended::Closed => {}
            }
            drop(watcher);
            drop(permit);
        });
    }

    /// Lets the requests in flight finish, up to the drain time.
    async fn drain(self) {
        let _ = self.stop.send(());
        tokio::select! {
            () = self.graceful.shutdown() => {}
            () = tokio::time::sleep(self.limits.drain) => {}
        }
    }
}

/// Serves a connection [`h1`] handed to hyper until it ends, telling it to finish once `stop`
/// changes. It is polled once first, so that it takes the request it was handed before any stop
/// can reach it: hyper told to stop before its first poll closes the connection unanswered.
async fn finish<C>(conn: C, mut stop: tokio::sync::watch::Receiver<()>)
where
    C: hyper_util::server::graceful::GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let ended =
        std::future::poll_fn(|cx| std::task::Poll::Ready(conn.as_mut().poll(cx).is_ready())).await;
    if ended {
        return;
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// `stream` served by hyper as HTTP/1 only, each request by `router`. Without upgrades: no route
/// takes one, and hyper-util's graceful shutdown knows only the plain connection.
fn http1_conn<I>(
    builder: &hyper::server::conn::http1::Builder,
    stream: I,
    router: Routes,
    peer: SocketAddr,
) -> impl hyper_util::server::graceful::GracefulConnection + use<I>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service(router, peer))
}

/// `stream` served by hyper (HTTP/1 with upgrades, or HTTP/2), each request by `router`.
fn hyper_conn<I>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    stream: I,
    router: Routes,
    peer: SocketAddr,
) -> impl hyper_util::server::graceful::GracefulConnection + use<I>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    builder
        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service(router, peer))
        .into_owned()
}

/// What hyper calls for each request of a connection from `peer`.
fn service(
    router: Routes,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        call_router(router.clone(), peer, req.map(Body::new))
    })
}

/// Accepts connections until `shutdown` resolves, handing each (with its place under the cap)
/// to `serve`; a connection beyond the cap is closed at once.
async fn accept_loop(
    listener: &tokio::net::TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit),
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    // Transient accept errors (EMFILE, aborted handshakes) must not stop the server.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                serve(stream, peer, permit);
            }
            () = &mut shutdown => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        let ok = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(ok, "ok");
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server closes the connection (possibly after a 408) instead of waiting forever.
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the slow connection was closed by the server");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// A body whose first piece waits for the client: the answer's head must reach it first.
    struct Gate(Option<tokio::sync::oneshot::Receiver<()>>);

    impl http_body::Body for Gate {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            let Some(rx) = self.0.as_mut() else {
                return std::task::Poll::Ready(None);
            };
            match std::pin::Pin::new(rx).poll(cx) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(_) => {
                    self.0 = None;
                    std::task::Poll::Ready(Some(Ok(http_body::Frame::data("late".into()))))
                }
            }
        }
    }

    #[tokio::test]
    async fn a_late_body_does_not_hold_back_the_head() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = tokio::sync::oneshot::channel::<()>();
        let gate = std::sync::Mutex::new(Some(gate));
        let gate = Arc::new(gate);
        let router = Router::new().route(
            "/late",
            axum::routing::get(move || {
                let rx = gate.lock().unwrap().take();
                async move { Response::new(Body::new(Gate(rx))) }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, Limits::default(), async {
            let _ = stopped.await;
        }));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The body's piece comes only once the head is in: a head held back for it never comes.
        let mut got = Vec::new();
        let head = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 512];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the head");
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(head.is_ok(), "the head waited for the body: {got:?}");
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
        let _ = open.send(());
        let mut rest = [0u8; 64];
        let n = c.read(&mut rest).await.unwrap();
        let all = [&got[..], &rest[..n]].concat();
        assert!(String::from_utf8_lossy(&all).contains("late"), "{all:?}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn handlers_see_the_client_address() {
        use axum::extract::ConnectInfo;
        use std::net::{IpAddr, SocketAddr};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, Limits::default(), async {
            let _ = stopped.await;
        }));
        for from in [[127, 0, 0, 1], [127, 0, 0, 2]] {
            let client = reqwest::Client::builder()
                .local_address(IpAddr::from(from))
                .build()
                .unwrap();
            let r = client.get(format!("http://{addr}/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.unwrap(), IpAddr::from(from).to_string());
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn sharded_requests_run_on_the_serving_threads_and_finish_after_the_stop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered, mut inside) = tokio::sync::mpsc::channel::<()>(1);
        let router = Router::new()
            .route(
                "/thread",
                axum::routing::get(|| async {
                    std::thread::current().name().unwrap_or("").to_string()
                }),
            )
            .route(
                "/slow",
                axum::routing::get(move || {
                    let entered = entered.clone();
                    async move {
                        let _ = entered.send(()).await;
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        "finished"
                    }
                }),
            );
        let shards = Shards::start(2).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handles = shards.handles().to_vec();
        let server = tokio::spawn(async move {
            serve_sharded(
                listener,
                router,
                Limits::default(),
                async {
                    let _ = stopped.await;
                },
                &handles,
            )
            .await
        });
        // Connections held open are spread over both threads, and each is served on one.
        let mut seen = std::collections::BTreeSet::new();
        let mut held = Vec::new();
        for _ in 0..4 {
            let client = reqwest::Client::new();
            for _ in 0..3 {
                let name = client
                    .get(format!("http://{addr}/thread"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(name.starts_with("tokenwarden-http-"), "served on {name:?}");
                seen.insert(name);
            }
            held.push(client);
        }
        assert_eq!(seen.len(), 2, "both threads serve: {seen:?}");
        // A request in flight when the stop comes is answered in full.
        let slow = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
        inside.recv().await.unwrap();
        let _ = stop.send(());
        let answer = slow.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "finished");
        server.await.unwrap().unwrap();
        // Nothing listens afterwards.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        drop(shards);
    }

    #[tokio::test]
    async fn the_connection_cap_is_shared_by_the_serving_threads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let shards = Shards::start(2).unwrap();
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handles = shards.handles().to_vec();
        let server = tokio::spawn(async move {
            serve_sharded(
                listener,
                router,
                limits,
                async {
                    let _ = stopped.await;
                },
                &handles,
            )
            .await
        });
        // Three idle keep-alive connections hold the three places; a fourth is closed at once.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(c);
        }
        let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut buf))
            .await
            .expect("the fourth connection is closed, not left waiting");
        assert!(
            read.is_err() || buf.is_empty(),
            "the fourth was served: {buf:?}"
        );
        drop(held);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
