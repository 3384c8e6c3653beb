//! The connection state machine, as pure functions: which problem codes exist, who owns each
//! (the refresh, the probe, the proxy, the connect flow), and which state a set of open problems
//! puts a connection in.
//!
//! The state is derived from the problems, never set beside them, so the two cannot disagree:
//! a problem that needs a person (a refused grant, an expired token that cannot be renewed, a
//! token the platform refused, a revocation the platform announced) means `reauth_required`; a
//! refresh that is failing for a reason that may pass means `degraded`; anything else keeps a
//! working connection `active`. `reauth_required` is left only by a new grant (the connect flow):
//! a later good probe or a transient failure does not undo a refusal (a refresh that succeeded
//! does: the grant is alive).
//!
//! The one writer of a connection's state is `tokenwarden_engine::state::States`, which applies
//! these functions and records the result.

use crate::connection::{ConnectionState, Problem};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every problem code a connection or an app can carry. Stored (as its snake_case name) in the
/// connection's problems, shown by the API, the dashboard and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The platform refused a refresh: the grant is revoked, expired or rotated away.
    GrantRefused,
    /// The access token expired and the platform does not renew it.
    Expired,
    /// The platform refused the access token on a proxied call.
    TokenRefused,
    /// The platform announced that the user removed the app (a deauthorize callback).
    Revoked,
    /// Refreshing fails for a reason that may pass (timeout, 5xx, throttling); retried.
    RefreshFailing,
    /// The probe found a scope missing from the grant.
    MissingScope,
    /// The probe found a role or permission missing (on the platform's side).
    MissingRole,
    /// The probe failed for another reason.
    ProbeFailing,
    /// The token works only on the platform's other environment's host.
    EnvironmentMismatch,
    /// A token, or the refresh token, ends soon and cannot be renewed.
    ExpiresSoon,
    /// The platform refused the app itself (client id or secret): an app problem.
    AppRefused,
    /// The platform's consent step refused the app (not set up for the product, redirect URI not
    /// registered, development mode) or the person declined: an app problem, fixed in the app
    /// dashboard, cleared by the next successful authorization for the app.
    ConsentRefused,
    /// A stored row cannot be decrypted with the keys this process has.
    DecryptFailed,
    /// The app's own quota at the platform is used up (Google Ads' daily developer-token quota,
    /// `rateScope: DEVELOPER`): every connection of the app waits until it returns. An app
    /// problem, cleared by the app's next successful call.
    AppQuotaExhausted,
}

impl ProblemCode {
    /// Every code.
    pub const ALL: [ProblemCode; 14] = [
        ProblemCode::GrantRefused,
        ProblemCode::Expired,
        ProblemCode::TokenRefused,
        ProblemCode::Revoked,
        ProblemCode::RefreshFailing,
        ProblemCode::MissingScope,
        ProblemCode::MissingRole,
        ProblemCode::ProbeFailing,
        ProblemCode::EnvironmentMismatch,
        ProblemCode::ExpiresSoon,
        ProblemCode::AppRefused,
        ProblemCode::ConsentRefused,
        ProblemCode::DecryptFailed,
        ProblemCode::AppQuotaExhausted,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::GrantRefused => "grant_refused",
            ProblemCode::Expired => "expired",
            ProblemCode::TokenRefused => "token_refused",
            ProblemCode::Revoked => "revoked",
            ProblemCode::RefreshFailing => "refresh_failing",
            ProblemCode::MissingScope => "missing_scope",
            ProblemCode::MissingRole => "missing_role",
            ProblemCode::ProbeFailing => "probe_failing",
            ProblemCode::EnvironmentMismatch => "environment_mismatch",
            ProblemCode::ExpiresSoon => "expires_soon",
            ProblemCode::AppRefused => "app_refused",
            ProblemCode::ConsentRefused => "consent_refused",
            ProblemCode::DecryptFailed => "decrypt_failed",
            ProblemCode::AppQuotaExhausted => "app_quota_exhausted",
        }
    }

    /// Only a person re-authorizing fixes it: the connection is `reauth_required`.
    pub fn needs_person(self) -> bool {
        matches!(
            self,
            ProblemCode::GrantRefused
                | ProblemCode::Expired
                | ProblemCode::TokenRefused
                | ProblemCode::Revoked
        )
    }

    /// The health probe finds it and clears it when the platform answers well again.
    pub fn probe_owned(self) -> bool {
        matches!(
            self,
            ProblemCode::MissingScope
                | ProblemCode::MissingRole
                | ProblemCode::ProbeFailing
                | ProblemCode::EnvironmentMismatch
        )
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProblemCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProblemCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown problem code {s:?}"))
    }
}

/// The state a connection is in, given the state it was in and its open problems now.
///
/// - `reauth_required` stays: only a new grant ([`connected`]) or a refresh that succeeded
///   ([`refreshed`]) leaves it.
/// - A problem that [needs a person](ProblemCode::needs_person) → `reauth_required`.
/// - `refresh_failing` → `degraded`.
/// - `pending` stays `pending` (no grant yet); otherwise `active`.
pub fn settle(current: ConnectionState, problems: &[Problem]) -> ConnectionState {
    if current == ConnectionState::ReauthRequired || problems.iter().any(|p| p.code.needs_person())
    {
        ConnectionState::ReauthRequired
    } else if problems
        .iter()
        .any(|p| p.code == ProblemCode::RefreshFailing)
    {
        ConnectionState::Degraded
    } else if current == ConnectionState::Pending {
        ConnectionState::Pending
    } else {
        ConnectionState::Active
    }
}

/// A refresh succeeded and its token was stored: the grant is alive, so a refusal recorded
/// meanwhile (another replica's call with the refresh token this refresh had just spent, or a
/// token refused just before it was replaced) no longer stands, nor does a failing refresh.
/// What the probe found (a missing scope, …) stays until the next probe says otherwise.
pub fn refreshed(
    current: ConnectionState,
    problems: &[Problem],
) -> (ConnectionState, Vec<Problem>) {
    let left: Vec<Problem> = problems
        .iter()
        .filter(|p| !p.code.needs_person() && p.code != ProblemCode::RefreshFailing)
        .cloned()
        .collect();
    let next = match current {
        ConnectionState::Pending => ConnectionState::Pending,
        _ => ConnectionState::Active,
    };
    (next, left)
}

/// A new grant was stored: the connection works and every problem it had is gone.
pub fn connected() -> (ConnectionState, Vec<Problem>) {
    (ConnectionState::Active, Vec::new())
}

/// `problems` with every problem of code `code` replaced by `problem` (first, so the newest
/// reason is what people read first).
pub fn replace(problems: &[Problem], problem: Problem) -> Vec<Problem> {
    let code = problem.code;
    let mut out: Vec<Problem> = Vec::with_capacity(problems.len() + 1);
    out.push(problem);
    out.extend(problems.iter().filter(|p| p.code != code).cloned());
    out
}

/// `problems` without the ones of code `code`.
pub fn without(problems: &[Problem], code: ProblemCode) -> Vec<Problem> {
    problems
        .iter()
        .filter(|p| p.code != code)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn p(code: ProblemCode) -> Problem {
        Problem {
            code,
            title: code.as_str().into(),
            fix: String::new(),
            since: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn every_code_round_trips_through_its_name_and_serde() {
        for c in ProblemCode::ALL {
            assert_eq!(c.as_str().parse::<ProblemCode>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<ProblemCode>(&json).unwrap(), c);
        }
        assert!("nope".parse::<ProblemCode>().is_err());
    }

    #[test]
    fn refusals_need_a_person_and_nothing_transient_does() {
        use ConnectionState::*;
        for c in ProblemCode::ALL {
            let got = settle(Active, &[p(c)]);
            let want = if c.needs_person() {
                ReauthRequired
            } else if c == ProblemCode::RefreshFailing {
                Degraded
            } else {
                Active
            };
            assert_eq!(got, want, "{c}");
        }
    }

    #[test]
    fn a_stored_refresh_outranks_a_refusal_recorded_meanwhile() {
        use ConnectionState::*;
        let (next, left) = refreshed(
            ReauthRequired,
            &[
                p(ProblemCode::GrantRefused),
                p(ProblemCode::MissingScope),
                p(ProblemCode::RefreshFailing),
            ],
        );
        assert_eq!(next, Active);
        assert_eq!(left, vec![p(ProblemCode::MissingScope)]);
        assert_eq!(refreshed(Degraded, &[]), (Active, vec![]));
    }

    #[test]
    fn reauth_required_is_left_only_by_a_new_grant() {
        use ConnectionState::*;
        assert_eq!(settle(ReauthRequired, &[]), ReauthRequired);
        assert_eq!(
            settle(ReauthRequired, &[p(ProblemCode::RefreshFailing)]),
            ReauthRequired
        );
        assert_eq!(connected(), (Active, vec![]));
    }

    #[test]
    fn degraded_heals_when_refreshing_works_again_and_pending_waits_for_a_grant() {
        use ConnectionState::*;
        assert_eq!(settle(Degraded, &[]), Active);
        assert_eq!(settle(Degraded, &[p(ProblemCode::MissingScope)]), Active);
        assert_eq!(settle(Pending, &[]), Pending);
        assert_eq!(
            settle(Pending, &[p(ProblemCode::GrantRefused)]),
            ReauthRequired
        );
    }

    #[test]
    fn replace_puts_the_new_problem_first_and_drops_the_old_one_of_its_code() {
        let old = vec![p(ProblemCode::MissingScope), p(ProblemCode::TokenRefused)];
        let mut new = p(ProblemCode::TokenRefused);
        new.title = "newer".into();
        let got = replace(&old, new.clone());
        assert_eq!(got, vec![new, p(ProblemCode::MissingScope)]);
        assert_eq!(
            without(&got, ProblemCode::TokenRefused),
            vec![p(ProblemCode::MissingScope)]
        );
    }
}
