//! The two requests every caller makes all day, taken before the router (issue 19).
//!
//! Through the router, a cached token fetch cost about as much again as the answer itself (route
//! matching, the middleware, the extractors, boxing the handler's future). [`Shortcuts`] takes:
//!
//! - `GET /v1/connections/{id}/token` when the caller's API key and the connection's token are
//!   both in memory: answered at once, with the same body function and headers as the route;
//! - a call under `/proxy/{connection_id}/{path}` (the methods the route takes) when the caller's
//!   key is in memory: handed straight to the proxy, as the route does after checking the key.
//!
//! Anything else (another route or method, a query string on a token fetch, an escaped or invalid
//! id, no or an unknown key, an address locked out for refused keys, a token not cached or not
//! fresh for its margin) goes to the router untouched, which answers or refuses it as before.
//! Both answers get the headers the router's outer layer adds (`add_common_headers`),
//! and a `Content-Length` where axum's route would set one.

use crate::ServerState;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use std::net::SocketAddr;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_http::Answer;

/// The cached token fetch and the proxied call (see the module).
#[derive(Debug, Clone)]
pub struct Shortcuts(pub ServerState);

impl tokenwarden_http::Shortcut for Shortcuts {
    fn answer(&self, req: Request, peer: SocketAddr) -> Result<Answer, Request> {
        let path = req.uri().path();
        if path.starts_with(PROXY_PREFIX) {
            if !self.takes_proxy(&req, peer) {
                return Err(req);
            }
            let s = self.0.clone();
            return Ok(Answer::Pending(Box::pin(async move {
                let mut answer = s.proxy.handle(req).await;
                finish(&s, &mut answer);
                answer
            })));
        }
        match self.token(&req, peer) {
            Some(answer) => Ok(Answer::Ready(answer)),
            None => Err(req),
        }
    }
}

const PROXY_PREFIX: &str = "/proxy/";

impl Shortcuts {
    /// The API key the caller presents, unless its address is locked out for refused keys: the
    /// `Caller` extractor's first two checks, in its order. Whether the key is a known one is for
    /// the caller of this to ask the key cache.
    fn known_caller<'r>(&self, req: &'r Request, peer: SocketAddr) -> Option<&'r str> {
        let s = &self.0;
        let client = s.limits.client_at(req.headers(), peer);
        if s.limits
            .api_key_failures
            .locked(&client.key(), s.clock.now())
            .is_some()
        {
            return None;
        }
        crate::auth::presented_key(req.headers())
    }

    fn token(&self, req: &Request, peer: SocketAddr) -> Option<Response> {
        let s = &self.0;
        if req.method() != Method::GET || req.uri().query().is_some() {
            return None;
        }
        let id = req
            .uri()
            .path()
            .strip_prefix("/v1/connections/")?
            .strip_suffix("/token")?;
        // The router decodes escapes and refuses what is not an id, in its words.
        if id.contains(['/', '%']) {
            return None;
        }
        let id = ConnectionId::parse(id).ok()?;
        let presented = self.known_caller(req, peer)?;
        // Written once per cache entry and kept with it; empty only if it could not be written,
        // and then the router answers (a 500, as it would).
        let body = s
            .tokens
            .token_answer_from_memory(presented, &id, |issued| {
                crate::api::token_body(issued, &id, None)
                    .unwrap_or_default()
                    .into()
            })
            .filter(|body| !body.is_empty())?;
        let mut answer = crate::api::token_answer(body);
        finish(s, &mut answer);
        Some(answer)
    }

    /// Whether a call under the proxy's prefix is one the route takes, from a caller whose key is
    /// in memory.
    fn takes_proxy(&self, req: &Request, peer: SocketAddr) -> bool {
        // The route's methods (HEAD, answered by axum from GET, stays with the router).
        let routed = matches!(
            *req.method(),
            Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        // `/proxy/{connection_id}/{*path}`: a non-empty id, then a non-empty rest.
        let shaped = req.uri().path()[PROXY_PREFIX.len()..]
            .split_once('/')
            .is_some_and(|(id, rest)| !id.is_empty() && !rest.is_empty());
        routed
            && shaped
            && self.known_caller(req, peer).is_some_and(|presented| {
                self.0
                    .tokens
                    .cache()
                    .is_some_and(|c| c.api_key_in_memory(presented))
            })
    }
}

/// What the router adds to every answer: the common headers, and a `Content-Length` for a body
/// of known size that has none (axum's route does this).
fn finish(s: &ServerState, answer: &mut Response) {
    crate::add_common_headers(s, answer);
    let headers: &HeaderMap = answer.headers();
    if headers.contains_key(axum::http::header::CONTENT_LENGTH) {
        return;
    }
    if let Some(len) = axum::body::HttpBody::size_hint(answer.body()).exact() {
        answer
            .headers_mut()
            .insert(axum::http::header::CONTENT_LENGTH, len.into());
    }
}
