//! The forwarding proxy: the HTTP front of the healing loop. The loop itself (refresh and
//! replay, waits, shaping, URL and header safety) is `tokenwarden_engine::call`, shared with the
//! in-process client (`tokenwarden-client`); this crate turns HTTP requests into its calls and
//! its outcomes and failures into HTTP answers.
//!
//! Modules:
//! - [`handler`]: the HTTP face, `/proxy/{connection_id}/{*path}`, and the response headers that
//!   report what the loop did.
//! - [`answer`]: the one table of error answers (token, store) the proxy and the server's API share.
//!
//! # The proxy over HTTP
//!
//! `GET|HEAD|POST|PUT|PATCH|DELETE /proxy/{connection_id}/{path}?{query}` with the caller's API key
//! (`Authorization: Bearer tw_…`) forwards to `{connection's API base}/{path}?{query}` with the
//! method, body and headers, the connection's token attached (`Authorization: Bearer …`, TikTok
//! Business `Access-Token: …`). TRACE, CONNECT and OPTIONS are not forwarded (405).
//! Redirects are never followed; request and response bodies stream through (only the first
//! 64 KiB of a response and, for replay, request bodies up to 1 MiB are held), up to the
//! [`BodyLimits`] (1 GiB each unless configured). A request over its limit is refused with 413; a
//! response over its limit is a 502 when that is known before the answer starts (a declared
//! length, or a body that ends within the first 64 KiB), and otherwise breaks the connection
//! where it passes the limit, so it never ends as if it were whole.
//!
//! Healing:
//! - `token_expired` / `token_invalid` on a refreshable platform: refresh (exactly once per
//!   connection across callers) and replay once; if the replay fails the same way the connection
//!   becomes `reauth_required` and the response says `action: reauthorize`.
//! - `token_revoked` (or an expired token that cannot be renewed): passed through, and the
//!   connection becomes `reauth_required` at once; on a definition with a sandbox API host the
//!   token may instead belong to the other environment, so the connection is probed at once and
//!   the health monitor (which asks the other host) decides.
//! - `rate_limited`: the wait the platform asked for (`Retry-After`, Meta's usage headers, TikTok's
//!   QPS/QPM/QPD guidance) or exponential backoff with full jitter, for every caller on the same
//!   lanes, within the caller's budget; any method (a throttled call was not processed).
//! - `service_unavailable`: the same backoff, for idempotent methods only; a POST is retried only
//!   when no connection could be made (the platform cannot have processed it).
//! - `async_pending` and everything else: passed through with the classification.
//!
//! Request header:
//!
//! | header | meaning |
//! |---|---|
//! | `tokenwarden-budget-ms` | how long the call may queue and wait in total (default 30 s, at most 300 s) |
//!
//! Response headers (on every proxied response):
//!
//! | header | meaning |
//! |---|---|
//! | `tokenwarden-kind` | the classification: `ok`, `token_expired`, `rate_limited`, `async_pending`, … |
//! | `tokenwarden-action` | what to do now: `none`, `reauthorize`, `backoff_and_retry`, `poll_later`, … |
//! | `tokenwarden-attempts` | calls made to the platform |
//! | `tokenwarden-waited-ms` | time spent queueing and waiting |
//! | `tokenwarden-retry-after-ms` | the wait (or poll interval) the platform asked for, when it did |
//! | `tokenwarden-refreshed` | `true` when the token was refreshed on the way |
//! | `tokenwarden-platform-code` | the platform's own error code |
//! | `tokenwarden-reauthorize-url` | the connect link, when the connection needs re-authorization |
//!
//! Errors of tokenwarden itself are JSON `{"error":{"code","message",…}}`: `reauth_required` (409,
//! with `reauthorize_url` and `fix`), `budget_exhausted` (503 with `Retry-After`),
//! `target_refused` (400), `bad_header` (400), `request_too_large` (413), `response_too_large`
//! and `upstream_unreachable` (502), `not_found` (404).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod handler;

pub use handler::Proxy;
