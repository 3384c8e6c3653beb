//! A connection's life: one state column, and the problems a person must act on.

use crate::id::{AppId, ConnectionId, ProviderId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a connection stands. One enum, no boolean soup:
/// `pending → active ⇄ degraded`, and any of them `→ reauth_required` on a refusal by the platform.
/// A refresh in flight is not a state: it is a lease held in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Created, authorization not completed yet.
    Pending,
    /// Holds a working token (as far as we know).
    Active,
    /// A transient failure (timeout, 5xx, throttling) stopped the last refresh or probe; retried
    /// with backoff. Never dropped for a transient reason.
    Degraded,
    /// The platform refused the grant (revoked, expired refresh token, password changed, app
    /// removed): only a person re-authorizing can fix it.
    ReauthRequired,
}

impl ConnectionState {
    /// Every state, in display order.
    pub const ALL: [ConnectionState; 4] = [
        ConnectionState::Pending,
        ConnectionState::Active,
        ConnectionState::Degraded,
        ConnectionState::ReauthRequired,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Pending => "pending",
            ConnectionState::Active => "active",
            ConnectionState::Degraded => "degraded",
            ConnectionState::ReauthRequired => "reauth_required",
        }
    }

    /// Whether a token can be handed out in this state.
    pub fn can_serve_tokens(self) -> bool {
        matches!(self, ConnectionState::Active | ConnectionState::Degraded)
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConnectionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ConnectionState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown connection state {s:?}: expected pending, active, degraded or reauth_required"))
    }
}

/// Which API host a token belongs to. TikTok sandbox tokens look like production tokens, so the
/// environment is recorded with each token rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// The platform's production API.
    #[default]
    Production,
    /// The platform's own sandbox host (e.g. `sandbox-ads.tiktok.com`).
    Sandbox,
}

impl Environment {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "production" => Ok(Environment::Production),
            "sandbox" => Ok(Environment::Sandbox),
            _ => Err(format!(
                "unknown environment {s:?}: expected production or sandbox"
            )),
        }
    }
}

/// Something wrong with a connection (or an app) that a person has to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable code, e.g. `missing_scope`, `revoked`, `invalid_client`, `expires_soon`.
    pub code: String,
    /// One line for a person.
    pub title: String,
    /// What to do about it.
    pub fix: String,
    /// When it was first seen.
    pub since: DateTime<Utc>,
}

/// The open problem of a connection whose token works only on the platform's other API host
/// (sandbox vs production): a configuration matter, not a refused grant.
pub const ENVIRONMENT_MISMATCH: &str = "environment_mismatch";

/// A connection as the rest of the product sees it (tokens are held separately, encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// The platform.
    pub provider: ProviderId,
    /// The app (OAuth client) it was granted to.
    pub app: AppId,
    /// Where it stands.
    pub state: ConnectionState,
    /// Production or the platform's sandbox host.
    pub environment: Environment,
    /// The API base URL the token belongs to.
    pub api_base: String,
    /// External account ids (TikTok `advertiser_ids`, `open_id`, Threads `user_id`, …).
    pub account_ids: Vec<String>,
    /// Scopes granted by the platform.
    pub scopes: Vec<String>,
    /// Open problems, with their fixes.
    pub problems: Vec<Problem>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in ConnectionState::ALL {
            assert_eq!(s.as_str().parse::<ConnectionState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("dead".parse::<ConnectionState>().is_err());
    }
}
