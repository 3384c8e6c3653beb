//! The engine: everything that keeps a connection alive, over the store and the provider client.
//!
//! - [`tokens`]: the [`TokenService`]: a token valid for at least the provider's margin, refreshed
//!   first when needed; exactly one refresh per connection at a time, across tasks (an in-process
//!   single-flight) and replicas (the store's fenced lease); a burst of 401s on one token causes one
//!   refresh; failures become the connection's state (transient → `degraded`, the platform's
//!   refusal → `reauth_required`, the app refused → an app-level problem).
//! - [`state`]: [`States`], the one writer of a connection's state and open problems (the state
//!   follows from the problems by `tokenwarden_core::state::settle`).
//! - [`cache`]: [`CachedStore`], short-lived caches in front of the store for the token fetch's
//!   reads (the API key, the connection and its token set), invalidated by every write in the
//!   process and bounded in size; another replica's change is seen within the TTL.
//! - [`call`]: the healing loop every call to a platform goes through, shared by the proxy
//!   (`tokenwarden-proxy`, the HTTP front) and the in-process reqwest middleware
//!   (`tokenwarden-client`): take a token → shape → send → classify → refresh and replay once /
//!   wait as the platform asked / back off / pass through.
//! - [`shaper`]: per token, per account, per app and per endpoint lanes at the published limits,
//!   adaptive, first come first served, bounded by each caller's budget.
//! - [`target`]: URL safety (hardening rule 9): only the connection's API base, no absolute URLs,
//!   no `..`, no encoded escapes.
//! - [`transport`]: the proxy's outbound client, a pooled hyper-util client (HTTP/1.1 keep-alive,
//!   reqwest's trust and timeouts, no redirects) behind [`call::Transport`].
//! - [`headers`]: what crosses (hardening rule 10): the caller's credentials and hop-by-hop
//!   headers never reach the platform; ours is attached as the definition says.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod call;
pub mod h1;
pub mod headers;
pub mod shaper;
pub mod state;
pub mod target;
pub mod tokens;
pub mod transport;

pub use cache::{CacheConfig, CachedStore};
pub use call::{
    BodyLimits, Call, ClientTransport, Engine, EngineConfig, OutBody, Outcome, ProxyError, Report,
    SendError, Target, Transport,
};
pub use state::States;
pub use tokens::{Issued, TokenFailure, TokenService};
pub use transport::{PooledClient, PooledTransport};

/// The hasher of the engine's maps whose keys no caller can choose or aim (the key cache, whose
/// keys are keyed digests; the proxy's counters, by provider id): foldhash, seeded at random per
/// map, in place of SipHash (issue 19). foldhash resists no attacker who picks keys, so a map
/// keyed by anything a caller names (a connection id, a request path in a lane key) keeps the
/// standard SipHash.
pub(crate) type FastHash = foldhash::fast::RandomState;
