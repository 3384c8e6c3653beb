//! The response classifier: status + headers + body of any platform response → [`Classification`].
//!
//! The body is read before the status: TikTok Business reports errors inside HTTP 200, and Meta's
//! `type` says nothing while its code and sub-code say everything (platforms.md §0). What each code
//! means lives in the provider definitions ([`crate::provider`]); this module only reads envelopes,
//! matches rules in order (the provider's, then the common RFC 6749/6750 and HTTP-status rules) and
//! works out the wait. Any bytes classify: HTML pages, empty, non-JSON, truncated or invalid UTF-8
//! bodies fall back to sound answers by status, never a panic.

mod body;
mod items;
mod scan;
mod wait;
pub mod words;
mod xml;

use crate::provider::{
    BodyKind, CodePattern, Context, EnvelopeSpec, ItemsSpec, KindText, RefreshStyle, RuleSpec,
    WaitRule,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use body::{repair_truncated_json, scrub_message};

/// At most this many bytes of a body are looked at (hardening rule 8). A longer body is
/// classified on its prefix; a JSON prefix is repaired so its leading fields still count.
pub const MAX_CLASSIFIED_BODY: usize = 64 * 1024;

/// What kind of outcome a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// It worked.
    Ok,
    /// The access token has expired.
    TokenExpired,
    /// The access token is not accepted (malformed, unknown, or of another app).
    TokenInvalid,
    /// The grant was withdrawn (revoked, password changed, app removed).
    TokenRevoked,
    /// The token lacks a scope the call needs.
    InsufficientScope,
    /// The account or app lacks a role, approval or permission that no scope gives.
    AppNotAuthorized,
    /// The request (or the app's configuration) is wrong.
    InvalidRequest,
    /// The platform is throttling.
    RateLimited,
    /// The platform is failing or down.
    ServiceUnavailable,
    /// The work is still in progress; ask again later.
    AsyncPending,
    /// The object does not exist.
    NotFound,
}

/// What should be done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing.
    None,
    /// Refresh the token and make the call again (once).
    RefreshAndRetry,
    /// A person must authorize again.
    Reauthorize,
    /// A person must authorize again granting more scopes.
    RequestScopes,
    /// The request or configuration must change; retrying will not help.
    FixRequest,
    /// Wait, then retry.
    BackoffAndRetry,
    /// Ask again later for the result.
    PollLater,
}

/// Whose problem it is: which thing a failure should be recorded against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// Nobody's.
    None,
    /// This one connection (its grant): re-authorize it.
    Connection,
    /// The app's configuration (a wrong or rotated client secret): one app-level problem, leave the
    /// connections alone (hardening rule 5).
    App,
    /// The caller's request.
    Request,
    /// The platform (throttling, outage): transient, never marks a connection dead.
    Platform,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Every value.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = <$t>::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{s:?} is not one of {}", all.join(", "))
                })
            }
        }
    };
}

names!(Kind {
    Ok => "ok",
    TokenExpired => "token_expired",
    TokenInvalid => "token_invalid",
    TokenRevoked => "token_revoked",
    InsufficientScope => "insufficient_scope",
    AppNotAuthorized => "app_not_authorized",
    InvalidRequest => "invalid_request",
    RateLimited => "rate_limited",
    ServiceUnavailable => "service_unavailable",
    AsyncPending => "async_pending",
    NotFound => "not_found",
});

names!(Action {
    None => "none",
    RefreshAndRetry => "refresh_and_retry",
    Reauthorize => "reauthorize",
    RequestScopes => "request_scopes",
    FixRequest => "fix_request",
    BackoffAndRetry => "backoff_and_retry",
    PollLater => "poll_later",
});

names!(Blame {
    None => "none",
    Connection => "connection",
    App => "app",
    Request => "request",
    Platform => "platform",
});

impl Kind {
    /// The action a kind needs when a rule does not say, given whether the platform can renew
    /// tokens without a person.
    pub fn default_action(self, refresh: RefreshStyle) -> Action {
        match self {
            Kind::Ok => Action::None,
            Kind::TokenExpired | Kind::TokenInvalid if refresh.can_refresh() => {
                Action::RefreshAndRetry
            }
            Kind::TokenExpired | Kind::TokenInvalid | Kind::TokenRevoked => Action::Reauthorize,
            Kind::AppNotAuthorized => Action::Reauthorize,
            Kind::InsufficientScope => Action::RequestScopes,
            Kind::InvalidRequest | Kind::NotFound => Action::FixRequest,
            Kind::RateLimited | Kind::ServiceUnavailable => Action::BackoffAndRetry,
            Kind::AsyncPending => Action::PollLater,
        }
    }

    /// Whose problem a kind is when a rule does not say.
    pub fn default_blame(self) -> Blame {
        match self {
            Kind::Ok | Kind::AsyncPending => Blame::None,
            Kind::TokenExpired
            | Kind::TokenInvalid
            | Kind::TokenRevoked
            | Kind::InsufficientScope
            | Kind::AppNotAuthorized => Blame::Connection,
            Kind::InvalidRequest | Kind::NotFound => Blame::Request,
            Kind::RateLimited | Kind::ServiceUnavailable => Blame::Platform,
        }
    }
}

impl Action {
    /// Whether doing the same thing again (after the action) can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Action::RefreshAndRetry | Action::BackoffAndRetry | Action::PollLater
        )
    }
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// What it is.
    pub kind: Kind,
    /// What to do.
    pub action: Action,
    /// Whether a retry (after the action) can succeed.
    pub retryable: bool,
    /// Whose problem it is.
    pub blame: Blame,
    /// How long the platform asked us to wait, when it said (or its documentation implies).
    #[serde(rename = "retry_after_ms", serialize_with = "ser_ms")]
    pub retry_after: Option<Duration>,
    /// Highest usage percentage the platform reported (Meta usage headers); throttling starts at 100.
    pub usage_pct: Option<u32>,
    /// The HTTP status.
    pub status: u16,
    /// The platform's own code.
    pub platform_code: Option<String>,
    /// The platform's sub-code.
    pub platform_subcode: Option<String>,
    /// The platform's message, shortened and scrubbed of anything token-like.
    pub platform_message: Option<String>,
    /// The platform's trace id (quote it to their support).
    pub trace_id: Option<String>,
    /// One line for a person.
    pub title: String,
    /// What happened and why.
    pub explanation: String,
    /// The concrete fix.
    pub fix: String,
    /// Where to read more.
    pub docs_url: Option<String>,
    /// Which rule decided (`snapchat#3`, `common#12`, `fallback`), for whoever debugs a definition.
    pub rule: String,
    /// Batch answers: the items that failed, each with its own verdict (at most
    /// [`MAX_LISTED_ITEMS`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<ItemFailure>,
}

fn ser_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// A response to classify. Headers may repeat; names compare case-insensitively.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// HTTP status.
    pub status: u16,
    /// Headers as received.
    pub headers: &'a [(String, String)],
    /// Body bytes (only a prefix is read).
    pub body: &'a [u8],
}

impl ResponseView<'_> {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A code or status pattern, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pat {
    Exact(String),
    Range(i64, i64),
}

impl Pat {
    pub(crate) fn compile(p: &CodePattern) -> Result<Pat, String> {
        match p {
            CodePattern::Number(n) => Ok(Pat::Exact(n.to_string())),
            CodePattern::Text(t) => {
                let t = t.trim();
                if t.is_empty() {
                    return Err("an empty code".into());
                }
                if let Some((lo, hi)) = t.split_once('-')
                    && let (Ok(lo), Ok(hi)) = (lo.trim().parse::<i64>(), hi.trim().parse::<i64>())
                {
                    if lo > hi {
                        return Err(format!("range {t:?} runs backwards"));
                    }
                    return Ok(Pat::Range(lo, hi));
                }
                Ok(Pat::Exact(t.to_string()))
            }
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Pat::Exact(e) => e == value,
            Pat::Range(lo, hi) => value.parse::<i64>().is_ok_and(|v| (*lo..=*hi).contains(&v)),
        }
    }
}

/// A rule's `statuses`, which must be HTTP statuses between 100 and 599, as ranges.
fn status_ranges(pats: &[Pat]) -> Result<Vec<(u16, u16)>, String> {
    let bad = || "statuses must be HTTP statuses between 100 and 599".to_string();
    let status = |v: i64| {
        u16::try_from(v)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(bad)
    };
    pats.iter()
        .map(|p| match p {
            Pat::Exact(s) => {
                let s = s.parse::<i64>().map_err(|_| bad())?;
                Ok((status(s)?, status(s)?))
            }
            Pat::Range(lo, hi) => Ok((status(*lo)?, status(*hi)?)),
        })
        .collect()
}

/// A rule ready to match.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    codes: Vec<Pat>,
    subcodes: Vec<Pat>,
    /// HTTP statuses as inclusive ranges (one status is a range of one), checked to lie in
    /// 100..=599 when compiled: compared as numbers, since every rule is tried on every answer.
    statuses: Vec<(u16, u16)>,
    message: Vec<String>,
    header: Option<(String, Vec<String>)>,
    body: Option<BodyKind>,
    context: Option<Context>,
    field: Option<(String, Vec<String>)>,
    pub(crate) spec: RuleSpec,
}

impl Rule {
    pub(crate) fn compile(name: String, spec: &RuleSpec) -> Result<Rule, String> {
        let pats =
            |list: &[CodePattern]| list.iter().map(Pat::compile).collect::<Result<Vec<_>, _>>();
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        if let Some(f) = &spec.field {
            if f.path.trim().is_empty() || f.path.split('.').any(|s| s.trim().is_empty()) {
                return Err(format!("field.path {:?} is not a dotted path", f.path));
            }
            if f.equals.is_empty() || f.equals.iter().any(|v| v.trim().is_empty()) {
                return Err("field.equals needs at least one non-empty value".into());
            }
        }
        let rule = Rule {
            name,
            codes: pats(&spec.codes)?,
            subcodes: pats(&spec.subcodes)?,
            statuses: status_ranges(&pats(&spec.statuses)?)?,
            message: lower(&spec.message_contains),
            header: spec
                .header
                .as_ref()
                .map(|h| (h.name.to_lowercase(), lower(&h.contains))),
            body: spec.body,
            context: spec.context,
            field: spec
                .field
                .as_ref()
                .map(|f| (f.path.trim().to_string(), lower(&f.equals))),
            spec: spec.clone(),
        };
        let has_condition = !rule.codes.is_empty()
            || !rule.subcodes.is_empty()
            || !rule.statuses.is_empty()
            || !rule.message.is_empty()
            || rule.header.is_some()
            || rule.body.is_some()
            || rule.context.is_some()
            || rule.field.is_some();
        if !has_condition {
            return Err("a rule needs at least one condition (codes, subcodes, statuses, message_contains, header, body, context or field)".into());
        }
        Ok(rule)
    }

    fn matches(&self, m: &Facts<'_>) -> bool {
        let any = |pats: &[Pat], v: Option<&str>| {
            pats.is_empty() || v.is_some_and(|v| pats.iter().any(|p| p.matches(v)))
        };
        any(&self.codes, m.code)
            && any(&self.subcodes, m.subcode)
            && (self.statuses.is_empty()
                || self
                    .statuses
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&m.status)))
            && (self.message.is_empty()
                || self.message.iter().any(|f| m.text_lc.contains(f.as_str())))
            && self.header.as_ref().is_none_or(|(name, frags)| {
                m.headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .any(|(_, v)| {
                        let v = v.to_lowercase();
                        frags.iter().any(|f| v.contains(f.as_str()))
                    })
            })
            && self.body.is_none_or(|b| b == m.body_kind)
            && self.context.is_none_or(|c| c == m.context)
            && self.field.as_ref().is_none_or(|(path, values)| {
                m.json.is_some_and(|j| {
                    body::lookup_where(j, path, &|v| {
                        body::scalar(v).is_some_and(|v| values.contains(&v.to_lowercase()))
                    })
                    .is_some()
                })
            })
    }
}

/// What the classifier found in a response, before rules are applied.
#[derive(Debug)]
struct Facts<'a> {
    status: u16,
    headers: &'a [(String, String)],
    body_kind: BodyKind,
    /// The parsed body, for `field` conditions (none for the items of a batch answer).
    json: Option<&'a serde_json::Value>,
    code: Option<&'a str>,
    subcode: Option<&'a str>,
    /// Lower-cased message (or, without an envelope, the body's text) for `message_contains`.
    text_lc: String,
    context: Context,
}

/// The compiled common rules (`providers/_common.toml`).
#[derive(Debug)]
pub struct Common {
    pub(crate) envelopes: Vec<EnvelopeSpec>,
    pub(crate) wait_headers: Vec<crate::provider::WaitHeaderSpec>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) kinds: BTreeMap<Kind, KindText>,
}

/// One provider's classifier: its rules and envelopes, then the common ones.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub(crate) provider_name: String,
    pub(crate) refresh: RefreshStyle,
    pub(crate) docs_url: Option<String>,
    pub(crate) envelopes: Vec<EnvelopeSpec>,
    pub(crate) success_codes: Vec<String>,
    pub(crate) wait_headers: Vec<crate::provider::WaitHeaderSpec>,
    pub(crate) wait_fields: Vec<crate::provider::WaitFieldSpec>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) items: Option<ItemsSpec>,
    pub(crate) common: Arc<Common>,
    /// [`Classifier::json_keys`], worked out on first use.
    pub(crate) json_keys: std::sync::OnceLock<Option<scan::Keys>>,
    /// [`Classifier::reads_header`]'s names, worked out on first use.
    pub(crate) header_names: std::sync::OnceLock<(scan::Keys, Vec<String>)>,
    /// The verdicts on plain successes ([`Plain`]), each worked out on first use; `None` turns
    /// the memo off (the tests compare with and without it).
    pub(crate) plain: std::sync::OnceLock<Option<Box<[std::sync::OnceLock<Plain>]>>>,
}

/// The statuses whose plain answers are remembered: 200–299.
const PLAIN_STATUSES: std::ops::RangeInclusive<u16> = 200..=299;

/// The verdict on a *plain* success: an API answer with a 2xx status whose body is empty or JSON
/// naming none of the keys a lookup needs, with no envelope, no message and none of the headers
/// the rules' `header` conditions name. Nothing but its status and body kind can then decide
/// which rule matches or fill a text, so the decision and its words are worked out once per
/// classifier, status and kind, and copied (issue 19: they were a fifth of classifying a
/// success). Waits and usage, which read the headers and the clock, are still read each time.
#[derive(Debug, Clone)]
pub(crate) struct Plain {
    /// The rule that decided: its index in the definition's rules, or (`true`) the common ones.
    rule: Option<(bool, usize)>,
    kind: Kind,
    name: String,
    title: String,
    explanation: String,
    fix: String,
}

/// One failed item of a batch answer (Snapchat `sub_request_status`), with its own verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    /// The array the item is in (`campaigns`, `ads`).
    pub list: String,
    /// Its position in that array, from 0.
    pub index: usize,
    /// The item's code, where it gives one.
    pub code: Option<String>,
    /// The item's message, shortened and scrubbed.
    pub message: Option<String>,
    /// What it is.
    pub kind: Kind,
    /// What to do about it.
    pub action: Action,
    /// One line for a person.
    pub title: String,
}

/// At most this many failed items are listed in a [`Classification`]; the title counts them all.
pub const MAX_LISTED_ITEMS: usize = 50;

/// A decision before it is put into words: the rule (if any), the kind, the rule's name.
struct Decision<'r> {
    rule: Option<&'r Rule>,
    kind: Kind,
    name: String,
}

impl Classifier {
    /// Provider rules that name sub-codes first (a known sub-code decides over its code), then
    /// the provider's other rules, then the common ones. `is_transient` (Meta) turns what would
    /// be a request error into a temporary failure.
    fn decide(&self, facts: &Facts<'_>, transient: bool, unknown_error_code: bool) -> Decision<'_> {
        let provider_rule = self
            .rules
            .iter()
            .filter(|r| !r.subcodes.is_empty())
            .chain(self.rules.iter().filter(|r| r.subcodes.is_empty()))
            .find(|r| r.matches(facts));
        let request_error = |r: &Rule| matches!(r.spec.kind, Kind::InvalidRequest | Kind::NotFound);
        let chosen: Option<&Rule> = match provider_rule {
            // The platform says a retry can succeed; a parameter error's code does not overrule it.
            Some(r) if transient && request_error(r) => None,
            Some(r) => Some(r),
            // Meta marks some unknown errors `is_transient`; honour it before generic status rules.
            None if transient => None,
            None => self.common.rules.iter().find(|r| r.matches(facts)),
        };
        match (chosen, transient) {
            (Some(r), _) => Decision {
                rule: Some(r),
                kind: r.spec.kind,
                name: r.name.clone(),
            },
            (None, true) => Decision {
                rule: None,
                kind: Kind::ServiceUnavailable,
                name: "transient-flag".to_string(),
            },
            (None, false) => Decision {
                rule: None,
                kind: fallback_kind(facts.status, unknown_error_code),
                name: "fallback".to_string(),
            },
        }
    }

    /// Title, explanation and fix of a decision, placeholders filled.
    fn words(
        &self,
        d: &Decision<'_>,
        facts: &Facts<'_>,
        message: Option<&str>,
    ) -> (String, String, String) {
        let default_text = self.common.kinds.get(&d.kind);
        let spec = d.rule.map(|r| &r.spec);
        fn pick<'t>(rule_text: Option<&'t String>, default: Option<&'t String>) -> &'t str {
            match rule_text {
                Some(t) if !t.trim().is_empty() => t,
                _ => default.map_or("", String::as_str),
            }
        }
        let fill = |t: &str| fill_placeholders(t, &self.provider_name, facts, message);
        (
            fill(pick(spec.map(|s| &s.title), default_text.map(|k| &k.title))),
            fill(pick(
                spec.map(|s| &s.explanation),
                default_text.map(|k| &k.explanation),
            )),
            fill(pick(spec.map(|s| &s.fix), default_text.map(|k| &k.fix))),
        )
    }

    /// Every object key a lookup in a JSON body can need: the segments of the paths of the
    /// envelopes' codes (this definition's and the common ones), the wait fields, the batch
    /// items' status and the rules' `field` conditions, but `*` and array indexes. A lookup can find something only
    /// where the body names one of them. `None` when some path has no such segment (it could
    /// find something in any body): then every JSON body is read whole.
    fn json_keys(&self) -> Option<&scan::Keys> {
        self.json_keys
            .get_or_init(|| {
                let mut paths: Vec<&str> = Vec::new();
                for e in self.envelopes.iter().chain(&self.common.envelopes) {
                    if e.xml {
                        continue;
                    }
                    // An envelope whose code is not found is not read at all: its other
                    // fields are looked up only beside a code.
                    paths.push(&e.code);
                }
                paths.extend(self.wait_fields.iter().map(|w| w.path.as_str()));
                // Likewise an item is one only when it has a status.
                if let Some(items) = &self.items {
                    paths.push(&items.status);
                }
                let rules = self.rules.iter().chain(&self.common.rules);
                paths.extend(rules.filter_map(|r| r.field.as_ref().map(|(p, _)| p.as_str())));
                let mut keys: Vec<String> = Vec::new();
                for path in paths {
                    let named: Vec<&str> = path
                        .split('.')
                        .filter(|s| *s != "*" && s.parse::<usize>().is_err())
                        .collect();
                    if named.is_empty() {
                        return None;
                    }
                    keys.extend(named.into_iter().map(str::to_string));
                }
                Some(scan::Keys::new(keys))
            })
            .as_ref()
    }

    /// Whether classifying may read the header `name` (in any case): the wait and usage headers, the rules' `header` conditions (this definition's and the common
    /// ones), `Content-Type` (an HTML page) and `Location` (a redirect with error parameters).
    /// A response given with only these headers is classified as it is with all of them, so a
    /// caller need not copy the others into a [`ResponseView`] (issue 19).
    pub fn reads_header(&self, name: &str) -> bool {
        let read = &self.header_names().0;
        // The names are kept in lowercase, as `http` gives them: compared by length and bytes
        // (every header of every answer is asked about), another case the long way.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return read.as_slice().iter().any(|n| n.eq_ignore_ascii_case(name));
        }
        read.contains(name.as_bytes())
    }

    /// Every header classifying may read, and those the rules' `header` conditions name.
    fn header_names(&self) -> &(scan::Keys, Vec<String>) {
        self.header_names.get_or_init(|| {
            let rules = self.rules.iter().chain(&self.common.rules);
            let mut in_rules: Vec<String> = rules
                .filter_map(|r| r.header.as_ref().map(|(n, _)| n.to_ascii_lowercase()))
                .collect();
            in_rules.sort();
            in_rules.dedup();
            let waits = self.wait_headers.iter().chain(&self.common.wait_headers);
            let all: Vec<String> = waits
                .map(|w| w.name.to_ascii_lowercase())
                .chain(in_rules.iter().cloned())
                .chain(["content-type".to_string(), "location".to_string()])
                .collect();
            (scan::Keys::new(all), in_rules)
        })
    }

    /// Where the verdict on a plain answer ([`Plain`]) with this status and body kind is kept,
    /// when the memo is on and the status is one it keeps.
    fn plain_slot(&self, status: u16, kind: BodyKind) -> Option<&std::sync::OnceLock<Plain>> {
        if !PLAIN_STATUSES.contains(&status) {
            return None;
        }
        let slots = self
            .plain
            .get_or_init(|| {
                let n = 2 * PLAIN_STATUSES.len();
                Some((0..n).map(|_| std::sync::OnceLock::new()).collect())
            })
            .as_deref()?;
        let kind = match kind {
            BodyKind::Empty => 0,
            BodyKind::Json => 1,
            BodyKind::Html | BodyKind::Text => return None,
        };
        slots.get(usize::from(status - PLAIN_STATUSES.start()) * 2 + kind)
    }

    /// Whether a rule's `header` condition names one of these headers.
    fn rule_header_present(&self, headers: &[(String, String)]) -> bool {
        let named = &self.header_names().1;
        headers
            .iter()
            .any(|(n, _)| named.iter().any(|r| r.eq_ignore_ascii_case(n)))
    }

    /// The rule a [`Plain`] names.
    fn rule_at(&self, at: Option<(bool, usize)>) -> Option<&Rule> {
        let (common, i) = at?;
        if common {
            self.common.rules.get(i)
        } else {
            self.rules.get(i)
        }
    }

    /// Classifies one response. `now` turns HTTP dates and "until midnight" into waits.
    pub fn classify(
        &self,
        resp: &ResponseView<'_>,
        context: Context,
        now: DateTime<Utc>,
    ) -> Classification {
        let mut parsed = body::Body::read(resp, self.json_keys());
        let mut context = context;
        // The platform sent the browser back with error parameters: the consent step failed.
        if let Some(json) = body::redirect_error(resp) {
            parsed = body::Body {
                kind: BodyKind::Json,
                json: Some(json),
                text_message: None,
            };
            context = Context::Authorize;
        }
        // A SOAP fault (XML, in any status): read only when the definition has XML envelopes,
        // into a tree those envelopes' paths walk; the tree also serves `field` conditions.
        let mut from_xml = false;
        if parsed.json.is_none()
            && parsed.kind == BodyKind::Text
            && self.envelopes.iter().any(|e| e.xml)
            && let Some(tree) = xml::to_tree(&resp.body[..resp.body.len().min(MAX_CLASSIFIED_BODY)])
        {
            parsed.json = Some(tree);
            from_xml = true;
        }
        let env = parsed.json.as_ref().and_then(|j| {
            self.envelopes
                .iter()
                .chain(&self.common.envelopes)
                .filter(|e| e.xml == from_xml)
                .find_map(|e| body::Envelope::read(j, e))
        });
        let message = env
            .as_ref()
            .and_then(|e| e.message.clone())
            .or_else(|| parsed.text_message.clone());
        let code = env.as_ref().map(|e| e.code.as_str());
        let is_success_code = code.is_some_and(|c| self.success_codes.iter().any(|s| s == c));
        let facts = Facts {
            status: resp.status,
            headers: resp.headers,
            body_kind: parsed.kind,
            json: parsed.json.as_ref(),
            code,
            subcode: env.as_ref().and_then(|e| e.subcode.as_deref()),
            text_lc: message.as_deref().unwrap_or("").to_lowercase(),
            context,
        };
        let transient = env.as_ref().is_some_and(|e| e.transient);
        let mut scrubbed = message
            .as_deref()
            .map(scrub_message)
            .filter(|m| !m.is_empty());
        let plain = (env.is_none()
            && message.is_none()
            && context == Context::Api
            && facts
                .json
                .is_none_or(|j| j.as_object().is_some_and(|o| o.is_empty()))
            && !self.rule_header_present(resp.headers))
        .then(|| self.plain_slot(resp.status, parsed.kind))
        .flatten();
        let (mut decision, (mut title, mut explanation, mut fix)) = match plain {
            Some(slot) => {
                let p = slot.get_or_init(|| {
                    let d = self.decide(&facts, false, false);
                    let (title, explanation, fix) = self.words(&d, &facts, None);
                    let index = |rules: &[Rule]| {
                        d.rule
                            .and_then(|r| rules.iter().position(|x| std::ptr::eq(x, r)))
                    };
                    let rule = index(&self.rules)
                        .map(|i| (false, i))
                        .or_else(|| index(&self.common.rules).map(|i| (true, i)));
                    Plain {
                        rule,
                        kind: d.kind,
                        name: d.name,
                        title,
                        explanation,
                        fix,
                    }
                });
                let d = Decision {
                    rule: self.rule_at(p.rule),
                    kind: p.kind,
                    name: p.name.clone(),
                };
                (d, (p.title.clone(), p.explanation.clone(), p.fix.clone()))
            }
            None => {
                let d = self.decide(&facts, transient, code.is_some() && !is_success_code);
                let words = self.words(&d, &facts, scrubbed.as_deref());
                (d, words)
            }
        };
        let mut platform_code = code.map(str::to_string);
        let mut wait_text = facts.text_lc.clone();

        // A batch answer whose items failed is not ok, whatever its envelope says.
        let mut failed_items = Vec::new();
        if let (Some(spec), Some(json)) = (&self.items, parsed.json.as_ref())
            && (decision.kind == Kind::Ok || decision.name == "fallback")
        {
            let found = items::failed(spec, json);
            if let Some(first) = found.failed.first() {
                let mut verdicts = Vec::new();
                for item in found.failed.iter().take(MAX_LISTED_ITEMS) {
                    let item_facts = Facts {
                        json: None,
                        code: item.code.as_deref(),
                        subcode: None,
                        text_lc: item.message.as_deref().unwrap_or("").to_lowercase(),
                        ..facts
                    };
                    let d = self.decide_item(&item_facts);
                    let msg = item.message.as_deref().map(scrub_message);
                    let (t, _, _) = self.words(&d, &item_facts, msg.as_deref());
                    verdicts.push(ItemFailure {
                        list: item.list.clone(),
                        index: item.index,
                        code: item.code.as_deref().map(scrub_message),
                        message: msg,
                        kind: d.kind,
                        action: d
                            .rule
                            .and_then(|r| r.spec.action)
                            .unwrap_or_else(|| d.kind.default_action(self.refresh)),
                        title: t,
                    });
                }
                let item_facts = Facts {
                    json: None,
                    code: first.code.as_deref(),
                    subcode: None,
                    text_lc: first.message.as_deref().unwrap_or("").to_lowercase(),
                    ..facts
                };
                decision = self.decide_item(&item_facts);
                scrubbed = first.message.as_deref().map(scrub_message);
                let (t, e, f) = self.words(&decision, &item_facts, scrubbed.as_deref());
                title = format!(
                    "{} of {} items failed; the first: {t}",
                    found.failed.len(),
                    found.total
                );
                explanation = e;
                fix = format!(
                    "{f} The other items succeeded or are listed with their own verdict; resend only the failed ones."
                );
                platform_code = first.code.as_deref().map(scrub_message);
                wait_text = item_facts.text_lc.clone();
                failed_items = verdicts;
            }
        }

        let kind = decision.kind;
        let spec = decision.rule.map(|r| &r.spec);
        let action = spec
            .and_then(|s| s.action)
            .unwrap_or_else(|| kind.default_action(self.refresh));
        let blame = spec
            .and_then(|s| s.blame)
            .unwrap_or_else(|| kind.default_blame());
        let docs_url = spec
            .and_then(|s| s.docs_url.as_ref())
            .map(|u| u.to_string())
            .or_else(|| self.docs_url.clone());

        let headers_wait = wait::from_headers(
            resp,
            self.wait_headers.iter().chain(&self.common.wait_headers),
            now,
        );
        let retry_after = if action.retryable() && action != Action::RefreshAndRetry {
            headers_wait
                .wait
                .or_else(|| {
                    parsed
                        .json
                        .as_ref()
                        .and_then(|j| wait::from_body(j, &self.wait_fields))
                })
                .or_else(|| spec.and_then(|s| rule_wait(&s.wait, &wait_text, now)))
        } else {
            None
        };

        Classification {
            kind,
            action,
            retryable: action.retryable(),
            blame,
            retry_after,
            usage_pct: headers_wait.usage_pct,
            status: resp.status,
            platform_code,
            platform_subcode: facts.subcode.map(str::to_string),
            platform_message: scrubbed,
            trace_id: env
                .as_ref()
                .and_then(|e| e.trace_id.clone())
                .map(|t| body::scrub_trace_id(&t)),
            title,
            explanation,
            fix,
            docs_url,
            rule: decision.name,
            failed_items,
        }
    }

    /// The verdict on one failed item: the provider's rules, then the common ones; an item no
    /// rule knows failed for a reason the platform did not code, a request error.
    fn decide_item(&self, facts: &Facts<'_>) -> Decision<'_> {
        let d = self.decide(facts, false, true);
        if d.kind == Kind::Ok {
            return Decision {
                rule: None,
                kind: Kind::InvalidRequest,
                name: "item-fallback".to_string(),
            };
        }
        d
    }
}

/// The last resort when no rule matched: judge by the status class alone.
/// `template` with `{provider}`, `{code}`, `{subcode}`, `{status}` and `{message}` filled in one
/// pass (what is filled in is not read again for placeholders). Without a message, `({message})`
/// goes with its parentheses and the space before them, never "((no message))"; elsewhere it
/// reads "no message". Any other `{` stays as written. Every answer is classified, so this writes
/// each text once, into one allocation.
fn fill_placeholders(
    template: &str,
    provider: &str,
    facts: &Facts<'_>,
    message: Option<&str>,
) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let (before, at) = rest.split_at(i);
        let named = |p: &str| at.starts_with(p).then_some(p.len());
        if let Some(n) = named("{message}") {
            match message {
                Some(m) => {
                    out.push_str(before);
                    out.push_str(m);
                }
                None if at[n..].starts_with(')') && before.ends_with('(') => {
                    let kept = before
                        .strip_suffix(" (")
                        .unwrap_or(&before[..before.len() - 1]);
                    out.push_str(kept);
                    rest = &at[n + 1..];
                    continue;
                }
                None => {
                    out.push_str(before);
                    out.push_str("no message");
                }
            }
            rest = &at[n..];
            continue;
        }
        out.push_str(before);
        let mut digits = [0u8; 5];
        let (with, n): (&str, usize) = if let Some(n) = named("{provider}") {
            (provider, n)
        } else if let Some(n) = named("{code}") {
            (facts.code.unwrap_or("none"), n)
        } else if let Some(n) = named("{subcode}") {
            (facts.subcode.unwrap_or("none"), n)
        } else if let Some(n) = named("{status}") {
            (decimal(facts.status, &mut digits), n)
        } else {
            ("{", 1)
        };
        out.push_str(with);
        rest = &at[n..];
    }
    out.push_str(rest);
    out
}

/// `n` in decimal, written into `buf` (no formatter: every answer's explanation names its status).
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("")
}

fn fallback_kind(status: u16, unknown_error_code: bool) -> Kind {
    match status {
        200..=299 if unknown_error_code => Kind::InvalidRequest,
        200..=299 => Kind::Ok,
        401 => Kind::TokenInvalid,
        403 => Kind::InsufficientScope,
        404 | 410 => Kind::NotFound,
        408 | 425 => Kind::ServiceUnavailable,
        429 => Kind::RateLimited,
        500..=599 => Kind::ServiceUnavailable,
        _ => Kind::InvalidRequest,
    }
}

fn rule_wait(rules: &[WaitRule], text_lc: &str, now: DateTime<Utc>) -> Option<Duration> {
    let w = rules.iter().find(|w| {
        w.message_contains.is_empty()
            || w.message_contains
                .iter()
                .any(|f| text_lc.contains(&f.to_lowercase()))
    })?;
    if let Some(d) = w.after {
        return Some(d);
    }
    w.until.map(|u| wait::until(u, now))
}

#[cfg(test)]
mod tests;
