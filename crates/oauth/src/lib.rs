//! The provider client: OAuth against any platform, driven by its definition.
//!
//! - [`request`]: builds the authorize URL and token-endpoint requests from a
//!   [`ProviderSpec`](tokenwarden_core::provider::ProviderSpec): form, JSON or query encoding, the
//!   platform's parameter names, Basic or in-body client authentication. Pure.
//! - [`response`]: reads a token response (fields under `data` or at the top level, scopes as a
//!   string or an array, hostile `expires_in`) into a [`TokenSet`](tokenwarden_core::token::TokenSet),
//!   and sorts failures by the classifier into [`TokenError`]. Pure.
//! - [`client`]: the HTTP side: no redirects followed (hardening rule 7), bounded time and bytes
//!   (rule 8), errors that never carry a URL, a body or a header.
//! - [`pkce`]: PKCE S256 verifiers and challenges.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod pkce;
pub mod request;
pub mod response;

pub use client::OAuthClient;
pub use request::AppCredentials;
pub use response::{TokenError, TokenGrant};
