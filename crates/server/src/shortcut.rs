//! A cached token fetch answered before the router (issue 19).
//!
//! `GET /v1/connections/{id}/token` is what every caller does all day, and when the caller's API
//! key and the connection's token are both in memory the answer needs nothing else. Through the
//! router it cost about as much again as the answer itself (route matching, the middleware, the
//! extractors, boxing the handler's future). [`TokenFetch`] answers that one case directly, with
//! the same function the route uses for the body and the same headers; anything else (another
//! route or method, a query string, an escaped or invalid id, no or an unknown key, an address
//! locked out for refused keys, a token not cached or not fresh for its margin) goes to the
//! router untouched, which answers or refuses it as before.

use crate::ServerState;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use tokenwarden_core::id::ConnectionId;

/// The cached token fetch (see the module).
#[derive(Debug, Clone)]
pub struct TokenFetch(pub ServerState);

impl tokenwarden_http::Shortcut for TokenFetch {
    fn answer(&self, req: Request) -> Result<Response, Request> {
        match self.from_memory(&req) {
            Some(answer) => Ok(answer),
            None => Err(req),
        }
    }
}

impl TokenFetch {
    fn from_memory(&self, req: &Request) -> Option<Response> {
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
        let client = s.limits.client(req.headers(), req.extensions());
        if s.limits
            .api_key_failures
            .locked(&client.key(), s.clock.now())
            .is_some()
        {
            return None;
        }
        let presented = crate::auth::presented_key(req.headers())?;
        let issued = s.tokens.token_from_memory(presented, &id)?;
        let mut answer = crate::api::token_response(issued, &id);
        crate::add_common_headers(s, &mut answer);
        // As axum's route does for a body of known size.
        if let Some(len) = axum::body::HttpBody::size_hint(answer.body()).exact() {
            answer
                .headers_mut()
                .insert(axum::http::header::CONTENT_LENGTH, len.into());
        }
        Some(answer)
    }
}
