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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod state;
pub mod tokens;

pub use cache::{CacheConfig, CachedStore};
pub use state::States;
pub use tokens::{Issued, TokenFailure, TokenService};
