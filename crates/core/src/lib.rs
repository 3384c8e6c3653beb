//! The pure core of tokenwarden: no IO, no async runtime.
//!
//! - [`id`]: validated identifiers (`ConnectionId`, `ProviderId`, `AppId`).
//! - [`secret`]: the redacting [`secret::Secret`] wrapper for tokens, client secrets and keys.
//! - [`token`]: [`token::TokenSet`] and expiry arithmetic.
//! - [`connection`]: [`connection::ConnectionState`], the one state column, and problems.
//! - [`clock`]: the injected [`clock::Clock`] (system, scaled, fake).
//! - [`span`]: durations written as `90s`, `5m`, `60d`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod connection;
pub mod id;
pub mod secret;
pub mod span;
pub mod token;
