//! The pure core of tokenwarden: no IO, no async runtime.
//!
//! - [`id`]: validated identifiers (`ConnectionId`, `ProviderId`, `AppId`).
//! - [`secret`]: the redacting [`secret::Secret`] wrapper for tokens, client secrets and keys.
//! - [`token`]: [`token::TokenSet`] and expiry arithmetic.
//! - [`connection`]: [`connection::ConnectionState`], the one state column, and problems.
//! - [`clock`]: the injected [`clock::Clock`] (system, scaled, fake).
//! - [`span`]: durations written as `90s`, `5m`, `60d`.
//! - [`provider`]: provider definitions (data, one TOML file per platform) and their registry.
//! - [`classify`]: the response classifier (status + headers + body → kind, action, wait, fix).
//! - [`policy`]: when a token is due for refresh, expiry fallbacks, backoff with full jitter.
//! - [`breaker`]: the per-platform circuit breaker (one trial call at a time during an outage).
//! - [`platform_callback`]: verifying the callbacks platforms send when a user removes the app.
//! - [`raw_http`]: reads a response as `curl -i` prints it (for `diagnose`).
//! - [`oauth1`]: OAuth 1.0a (RFC 5849) request signing and verification (X Ads API).
//! - [`soap`]: the token and header entries written into a SOAP envelope's header (Microsoft
//!   Advertising's SOAP services).
//! - [`callback`]: reads an authorization callback's query (repeated deciding parameters refused).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod breaker;
pub mod callback;
pub mod classify;
pub mod clock;
pub mod connection;
pub mod id;
pub mod oauth1;
pub mod platform_callback;
pub mod policy;
pub mod provider;
pub mod raw_http;
pub mod secret;
pub mod soap;
pub mod span;
pub mod state;
pub mod token;
pub mod webhook;
