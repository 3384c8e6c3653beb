//! A connection's life: one state column, and the problems a person must act on.

use crate::id::{AppId, ConnectionId, ProviderId};
pub use crate::state::ProblemCode;
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
    /// What kind of problem (see [`ProblemCode`]); the state follows from it ([`crate::state::settle`]).
    pub code: ProblemCode,
    /// One line for a person.
    pub title: String,
    /// What to do about it.
    pub fix: String,
    /// When it was first seen.
    pub since: DateTime<Utc>,
}

/// The platform account a grant belongs to: the id the platform gives it and the name it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The platform's id of the user or organization (Snapchat `me.id`, TikTok `open_id` or
    /// `core_user_id`, Meta/Threads user id).
    pub id: String,
    /// A display name, where the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Account {
    /// "name (id)", or the id alone.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() && n != &self.id => format!("{n} ({})", self.id),
            _ => self.id.clone(),
        }
    }
}

/// Whether a new grant belongs to the same platform account as the one a connection holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCheck {
    /// Nothing was recorded before: the new grant's account becomes the connection's.
    First,
    /// The same account.
    Same,
    /// Another account than the one recorded.
    Changed,
    /// An account is recorded, but the new grant's could not be read: it cannot be confirmed.
    Unconfirmed,
}

/// Compares a new grant with what a connection recorded: the account id when both are known,
/// else the grant's external ids (TikTok `advertiser_ids`, …) when both have some; a grant
/// whose ids share none with the recorded ones belongs to someone else.
pub fn check_account(
    recorded: Option<&Account>,
    recorded_ids: &[String],
    new: Option<&Account>,
    new_ids: &[String],
) -> AccountCheck {
    match (recorded, new) {
        (Some(old), Some(new)) if old.id == new.id => AccountCheck::Same,
        (Some(_), Some(_)) => AccountCheck::Changed,
        (Some(_), None) => AccountCheck::Unconfirmed,
        (None, _) if recorded_ids.is_empty() || new_ids.is_empty() => AccountCheck::First,
        (None, _) if recorded_ids.iter().any(|i| new_ids.contains(i)) => AccountCheck::Same,
        (None, _) => AccountCheck::Changed,
    }
}

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
    /// The platform account behind the grant (user or organization), as the platform names it;
    /// `None` until it has been read. Re-authorization with another account is refused unless
    /// the connect session allowed it.
    #[serde(default)]
    pub account: Option<Account>,
    /// Who this connection is for, as the connect session labelled it (free-form, never a
    /// secret): an end customer, a team, a workspace id.
    #[serde(default)]
    pub end_user: Option<String>,
    /// The platform region its tokens and account belong to (Amazon Ads `na`, `eu`, `fe`), as
    /// its app was configured when it was granted; `None` for the default region or a platform
    /// without regions. `api_base` is that region's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
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
    fn a_new_grant_is_compared_by_account_then_by_external_ids() {
        let a = |id: &str| Account {
            id: id.into(),
            name: None,
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        use AccountCheck::*;
        let cases = [
            (Some(a("u1")), ids(&[]), Some(a("u1")), ids(&[]), Same),
            (
                Some(a("u1")),
                ids(&["x"]),
                Some(a("u2")),
                ids(&["x"]),
                Changed,
            ),
            (Some(a("u1")), ids(&[]), None, ids(&["x"]), Unconfirmed),
            (None, ids(&[]), Some(a("u2")), ids(&[]), First),
            (None, ids(&["1", "2"]), None, ids(&["2", "3"]), Same),
            (None, ids(&["1", "2"]), Some(a("u9")), ids(&["3"]), Changed),
            (None, ids(&["1"]), None, ids(&[]), First),
        ];
        for (old, old_ids, new, new_ids, want) in cases {
            assert_eq!(
                check_account(old.as_ref(), &old_ids, new.as_ref(), &new_ids),
                want,
                "{old:?} {old_ids:?} -> {new:?} {new_ids:?}"
            );
        }
    }

    #[test]
    fn an_account_label_shows_the_name_and_the_id() {
        let a = Account {
            id: "42".into(),
            name: Some("Acme Ads".into()),
        };
        assert_eq!(a.label(), "Acme Ads (42)");
        let b = Account {
            id: "42".into(),
            name: None,
        };
        assert_eq!(b.label(), "42");
    }

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
