//! Serves an axum router the way hardening rule 11 asks: `axum::serve` sets no header-read
//! timeout (axum #2741), so a slow client could hold a connection forever. Here hyper-util serves
//! each connection with a timer and a header-read timeout, the number of connections is capped,
//! transient accept errors do not stop the server, and shutdown drains requests in flight. Each
//! request carries its peer's address as axum's `ConnectInfo<SocketAddr>`, so handlers can limit
//! and log by client address.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain: Duration::from_secs(10),
        }
    }
}

async fn call_router(
    router: Router,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Response, Infallible> {
    use tower::ServiceExt;
    let mut req = req.map(Body::new);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    router.oneshot(req).await
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (up to `limits.drain`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let service = hyper::service::service_fn(move |req| call_router(router.clone(), peer, req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {}
    }
    Ok(())
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
}
