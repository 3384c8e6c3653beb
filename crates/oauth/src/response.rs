//! Reading token responses, and sorting failures: the platform refused the grant, the app's
//! configuration is wrong, or something transient happened (hardening rules 4–6).

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt;
use tokenwarden_core::classify::{Blame, Classification, Kind, ResponseView};
use tokenwarden_core::policy::resolve_expiry;
use tokenwarden_core::provider::{Context, Provider, TokenResponseSpec};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::{TokenSet, expiry_from_seconds};

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// The new token set.
    pub tokens: TokenSet,
    /// External account ids the response named (`advertiser_ids`, `open_id`, `user_id`).
    pub account_ids: Vec<String>,
}

/// Why a token call did not yield tokens. `Display` never carries a body, header, URL or token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The platform refused the grant (invalid_grant, revoked, expired refresh token): this one
    /// connection needs re-authorization.
    #[error("{} refused the grant: {}", .provider, .classification.title)]
    Refused {
        /// Provider id.
        provider: String,
        /// The classifier's verdict (scrubbed).
        classification: Box<Classification>,
    },
    /// The platform refused the app (invalid_client, wrong secret, bad parameters): an app-level
    /// problem; the connections are kept.
    #[error("{} refused the app's request: {}", .provider, .classification.title)]
    Misconfigured {
        /// Provider id.
        provider: String,
        /// The classifier's verdict.
        classification: Box<Classification>,
    },
    /// Throttled, failing, timed out or unreachable: retry with backoff; never marks a
    /// connection dead.
    #[error("{provider}: transient failure: {reason}")]
    Transient {
        /// Provider id.
        provider: String,
        /// Our own words (never upstream text).
        reason: String,
        /// The verdict, when there was a response.
        classification: Option<Box<Classification>>,
    },
    /// A success status with an answer that is not a usable token response. Treated as transient
    /// for the connection's state: the grant may still be fine.
    #[error("{provider}: malformed token response: {reason}")]
    Malformed {
        /// Provider id.
        provider: String,
        /// What was wrong, in our words.
        reason: String,
    },
}

impl TokenError {
    /// The classifier's verdict, when there was a response.
    pub fn classification(&self) -> Option<&Classification> {
        match self {
            TokenError::Refused { classification, .. }
            | TokenError::Misconfigured { classification, .. } => Some(classification),
            TokenError::Transient { classification, .. } => classification.as_deref(),
            TokenError::Malformed { .. } => None,
        }
    }

    /// Whether retrying later can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TokenError::Transient { .. } | TokenError::Malformed { .. }
        )
    }
}

/// Sorts a non-ok verdict from a token endpoint.
pub(crate) fn failure(provider: &str, c: Classification) -> TokenError {
    let provider = provider.to_string();
    match (c.kind, c.blame) {
        (Kind::RateLimited | Kind::ServiceUnavailable | Kind::AsyncPending, _)
        | (_, Blame::Platform) => TokenError::Transient {
            provider,
            reason: format!("{} (HTTP {})", c.title, c.status),
            classification: Some(Box::new(c)),
        },
        (_, Blame::App | Blame::Request | Blame::None) => TokenError::Misconfigured {
            provider,
            classification: Box::new(c),
        },
        (_, Blame::Connection) => TokenError::Refused {
            provider,
            classification: Box::new(c),
        },
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(v, |v, seg| v.get(seg))
}

fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `expires_in` as the platforms send it: a number, or a numeric string.
fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn list(v: Option<&Value>, sep: &str) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s
            .split(sep)
            .flat_map(|p| p.split(' '))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| string(Some(x))).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// Reads a token endpoint's answer. `previous` is the set being refreshed, whose refresh token is
/// kept when the response carries none (hardening rule 4).
pub fn read(
    provider: &Provider,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    previous: Option<&TokenSet>,
    now: DateTime<Utc>,
) -> Result<TokenGrant, TokenError> {
    let id = provider.spec.id.as_str();
    let verdict = provider.classifier().classify(
        &ResponseView {
            status,
            headers,
            body,
        },
        Context::TokenEndpoint,
        now,
    );
    if verdict.kind != Kind::Ok {
        return Err(failure(id, verdict));
    }
    let malformed = |reason: &str| TokenError::Malformed {
        provider: id.to_string(),
        reason: reason.to_string(),
    };
    let json: Value = if provider.spec.oauth1.is_some() {
        // OAuth 1.0a answers are form-encoded (RFC 5849 §2.3): read as an object of strings.
        let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not text"))?;
        if !text.contains('=') || text.trim_start().starts_with(['{', '<']) {
            return Err(malformed("the body is not a form-encoded answer"));
        }
        Value::Object(
            url::form_urlencoded::parse(text.trim().as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(body).map_err(|_| malformed("the body is not JSON"))?
    };
    let spec: &TokenResponseSpec = &provider.spec.token.response;
    let root = lookup(&json, &spec.root)
        .ok_or_else(|| malformed(&format!("no {:?} object", spec.root)))?;
    if !root.is_object() {
        return Err(malformed("the token fields are not in an object"));
    }
    let access = string(lookup(root, &spec.access_token))
        .ok_or_else(|| malformed("no access token in it"))?;
    let token_secret = match &spec.token_secret {
        Some(path) => Some(
            string(lookup(root, path))
                .map(Secret::new)
                .ok_or_else(|| malformed("no token secret in it"))?,
        ),
        None => None,
    };
    let refresh = &provider.spec.refresh;
    let refresh_token = string(lookup(root, &spec.refresh_token)).map(Secret::new);
    let issued_refresh = refresh_token.is_some();
    let refresh_expires_at = spec
        .refresh_expires_in
        .as_deref()
        .and_then(|p| seconds(lookup(root, p)))
        .and_then(|s| expiry_from_seconds(now, s))
        .or_else(|| {
            if issued_refresh {
                refresh
                    .refresh_token_lifetime
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .and_then(|d| now.checked_add_signed(d))
            } else {
                previous.and_then(|p| p.refresh_expires_at)
            }
        });
    // An end counted from the consent (LinkedIn): a refresh never moves it later.
    let refresh_expires_at = match previous.and_then(|p| p.refresh_expires_at) {
        Some(known) if !refresh.refresh_token_extends => {
            Some(refresh_expires_at.map_or(known, |at| at.min(known)))
        }
        _ => refresh_expires_at,
    };
    // Platforms answer with another separator than they authorize with (LinkedIn: spaces in,
    // commas out; Pinterest the reverse): scopes never hold a comma or a space, so both split.
    let mut scopes: Vec<String> = list(
        lookup(root, &spec.scope),
        &provider.spec.authorize.scope_separator,
    )
    .iter()
    .flat_map(|s| s.split(','))
    .map(str::trim)
    .filter(|s| !s.is_empty())
    .map(str::to_string)
    .collect();
    if scopes.is_empty()
        && let Some(p) = previous
    {
        scopes = p.scopes.clone();
    }
    let tokens = TokenSet {
        access_token: Secret::new(access),
        refresh_token: refresh_token.or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        token_type: string(lookup(root, &spec.token_type)),
        scopes,
        issued_at: now,
        expires_at: resolve_expiry(refresh, now, seconds(lookup(root, &spec.expires_in))),
        refresh_expires_at,
        token_secret,
    };
    let mut account_ids: Vec<String> = Vec::new();
    for path in &spec.account_ids {
        for a in list(lookup(root, path), ",") {
            if !account_ids.contains(&a) {
                account_ids.push(a);
            }
        }
    }
    Ok(TokenGrant {
        tokens,
        account_ids,
    })
}

impl fmt::Display for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token set (expires {:?}, {} scopes)",
            self.tokens.expires_at,
            self.tokens.scopes.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwarden_core::provider::Registry;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn read_as(
        id: &str,
        status: u16,
        body: &str,
        previous: Option<&TokenSet>,
    ) -> Result<TokenGrant, TokenError> {
        let reg = Registry::builtin().unwrap();
        read(
            reg.get(id).unwrap(),
            status,
            &[],
            body.as_bytes(),
            previous,
            now(),
        )
    }

    /// LinkedIn (`refresh_token_extends = false`): the refresh token's end is counted from the
    /// consent. A refresh answer stating more than is left, or none at all, never moves it later;
    /// one stating less (what LinkedIn says is left) is taken.
    #[test]
    fn linkedin_refresh_token_end_is_counted_from_the_consent() {
        let day = chrono::TimeDelta::days(1);
        let first = read_as(
            "linkedin",
            200,
            r#"{"access_token":"AQV1","expires_in":5184000,"refresh_token":"AQX1","refresh_token_expires_in":31536000,"scope":"r_ads,rw_ads"}"#,
            None,
        )
        .unwrap();
        let end = now() + day * 365;
        assert_eq!(first.tokens.refresh_expires_at, Some(end));
        assert_eq!(first.tokens.scopes, ["r_ads", "rw_ads"]);
        // Without refresh_token_expires_in, the fallback lifetime (365 d from now) would extend it.
        let g = read_as(
            "linkedin",
            200,
            r#"{"access_token":"AQV2","expires_in":5184000,"refresh_token":"AQX1"}"#,
            Some(&first.tokens),
        )
        .unwrap();
        assert_eq!(g.tokens.refresh_expires_at, Some(end));
        // A stated full year again does not extend it either.
        let g = read_as(
            "linkedin",
            200,
            r#"{"access_token":"AQV3","expires_in":5184000,"refresh_token":"AQX1","refresh_token_expires_in":31536000}"#,
            Some(&first.tokens),
        )
        .unwrap();
        assert_eq!(g.tokens.refresh_expires_at, Some(end));
        // Less than is known (the platform's own count) is taken.
        let g = read_as(
            "linkedin",
            200,
            r#"{"access_token":"AQV4","expires_in":5184000,"refresh_token":"AQX1","refresh_token_expires_in":86400}"#,
            Some(&first.tokens),
        )
        .unwrap();
        assert_eq!(g.tokens.refresh_expires_at, Some(now() + day));
        // Pinterest's rotating tokens DO move their end with every refresh.
        let p1 = read_as(
            "pinterest",
            200,
            r#"{"access_token":"pina_1","refresh_token":"pinr_1","expires_in":2592000,"refresh_token_expires_in":5184000,"scope":"ads:read user_accounts:read"}"#,
            None,
        )
        .unwrap();
        let mut earlier = p1.tokens.clone();
        earlier.refresh_expires_at = Some(now() - day);
        let p2 = read_as(
            "pinterest",
            200,
            r#"{"access_token":"pina_2","refresh_token":"pinr_2","expires_in":2592000,"refresh_token_expires_in":5184000}"#,
            Some(&earlier),
        )
        .unwrap();
        assert_eq!(p2.tokens.refresh_expires_at, Some(now() + day * 60));
        assert_eq!(p2.tokens.refresh_token.as_ref().unwrap().expose(), "pinr_2");
        assert_eq!(p2.tokens.scopes, ["ads:read", "user_accounts:read"]);
    }

    /// X Ads (OAuth 1.0a): the form-encoded answer gives the token, its secret and the user id;
    /// an answer without the secret, JSON, HTML or an empty body is a clear error, never a panic.
    #[test]
    fn oauth1_answers_are_form_encoded_and_need_their_secret() {
        let g = read_as(
            "x-ads",
            200,
            "oauth_token=6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY&oauth_token_secret=2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU&user_id=6253282&screen_name=twitterapi",
            None,
        )
        .unwrap();
        assert_eq!(
            g.tokens.access_token.expose(),
            "6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY"
        );
        assert_eq!(
            g.tokens.token_secret.as_ref().map(Secret::expose),
            Some("2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU")
        );
        assert_eq!(g.tokens.expires_at, None, "OAuth 1.0a tokens do not expire");
        assert!(g.tokens.refresh_token.is_none());
        assert_eq!(g.account_ids, vec!["6253282".to_string()]);
        for body in [
            "oauth_token=abc&user_id=1",
            r#"{"oauth_token":"abc","oauth_token_secret":"def"}"#,
            "<html><body>Whoa there!</body></html>",
            "",
        ] {
            // Malformed, or (an error page) transient: never a token, never a refusal of the
            // grant, and the error quotes nothing of the body.
            match read_as("x-ads", 200, body, None) {
                Err(e @ (TokenError::Malformed { .. } | TokenError::Transient { .. })) => {
                    let text = e.to_string();
                    assert!(!text.contains("abc") && !text.contains("def"), "{text}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn tiktok_business_fields_sit_under_data() {
        let g = read_as(
            "tiktok-business",
            200,
            r#"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"tb-at","advertiser_ids":["111","222"],"scope":[1,2,4]}}"#,
            None,
        )
        .unwrap();
        assert_eq!(g.tokens.access_token.expose(), "tb-at");
        assert_eq!(g.account_ids, ["111", "222"]);
        assert_eq!(g.tokens.scopes, ["1", "2", "4"]);
        assert_eq!(g.tokens.expires_at, None, "advertiser tokens do not expire");
        assert!(g.tokens.refresh_token.is_none());
    }

    /// The SDK documents `/oauth2/access_token/` answers with a refresh token (creator tokens:
    /// 24 h access, one year refresh; platforms.md "Corrections (2026-12)" 2): such a set is
    /// kept with its expiries and is renewed; one without stays long-term and watched.
    #[test]
    fn tiktok_business_creator_token_with_a_refresh_token_is_renewable() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("tiktok-business").unwrap().spec.refresh;
        let g = read_as(
            "tiktok-business",
            200,
            r#"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"tb-at","refresh_token":"tb-rt","expires_in":86400,"refresh_token_expires_in":31536000,"advertiser_ids":["111"],"scope":[1]}}"#,
            None,
        )
        .unwrap();
        assert_eq!(g.tokens.refresh_token.as_ref().unwrap().expose(), "tb-rt");
        assert_eq!(
            g.tokens.expires_at,
            Some(now() + chrono::TimeDelta::hours(24))
        );
        assert_eq!(
            g.tokens.refresh_expires_at,
            Some(now() + chrono::TimeDelta::days(365))
        );
        assert!(
            spec.renews(&g.tokens),
            "a set with a refresh token is renewed"
        );

        let long_term = read_as(
            "tiktok-business",
            200,
            r#"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"tb-at","advertiser_ids":["111"],"scope":[1]}}"#,
            None,
        )
        .unwrap();
        assert!(
            !spec.renews(&long_term.tokens),
            "a long-term token is watched"
        );
        assert_eq!(long_term.tokens.expires_at, None);
    }

    #[test]
    fn tiktok_business_error_in_200_is_not_a_token() {
        let e = read_as(
            "tiktok-business",
            200,
            r#"{"code":40101,"message":"app_id or secret is invalid","data":{}}"#,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, TokenError::Misconfigured { .. }), "{e:?}");
        let e = read_as(
            "tiktok-business",
            200,
            r#"{"code":40110,"message":"auth_code invalid","data":{}}"#,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, TokenError::Refused { .. }), "{e:?}");
        let e = read_as(
            "tiktok-business",
            200,
            r#"{"code":50002,"message":"system error","data":{}}"#,
            None,
        )
        .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
    }

    #[test]
    fn a_refresh_without_a_refresh_token_keeps_the_old_one() {
        let first = read_as("snapchat", 200, r#"{"access_token":"a1","token_type":"Bearer","expires_in":1800,"refresh_token":"r1","scope":"snapchat-marketing-api"}"#, None).unwrap();
        assert_eq!(
            first.tokens.expires_at,
            Some(now() + chrono::TimeDelta::seconds(1800))
        );
        let second = read_as(
            "snapchat",
            200,
            r#"{"access_token":"a2","expires_in":"3600"}"#,
            Some(&first.tokens),
        )
        .unwrap();
        assert_eq!(second.tokens.refresh_token.as_ref().unwrap().expose(), "r1");
        assert_eq!(second.tokens.scopes, ["snapchat-marketing-api"]);
        assert_eq!(
            second.tokens.expires_at,
            Some(now() + chrono::TimeDelta::seconds(3600)),
            "expires_in as a string"
        );
    }

    #[test]
    fn hostile_expiry_uses_the_default_lifetime() {
        for bad in [r#""soon""#, "-5", "0", "1e300", "null", "99999999999999"] {
            let g = read_as(
                "snapchat",
                200,
                &format!(r#"{{"access_token":"a","expires_in":{bad}}}"#),
                None,
            )
            .unwrap();
            assert_eq!(
                g.tokens.expires_at,
                Some(now() + chrono::TimeDelta::minutes(30)),
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_answers_are_named_without_echoing_them() {
        let e = read_as("snapchat", 200, "<html>oops</html>", None).unwrap_err();
        assert!(
            e.is_transient(),
            "an HTML page in 200 is the platform failing: {e:?}"
        );
        let e = read_as("snapchat", 200, r#"{"access_tok"#, None).unwrap_err();
        assert!(matches!(e, TokenError::Malformed { .. }), "{e:?}");
        let e = read_as(
            "snapchat",
            200,
            r#"{"token_type":"Bearer","secret_stuff":"zzz"}"#,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no access token") && !e.to_string().contains("zzz"));
    }

    #[test]
    fn refusals_and_app_problems_are_told_apart() {
        let e = read_as("tiktok", 400, r#"{"error":"invalid_grant","error_description":"Refresh token is invalid or expired.","log_id":"x"}"#, None).unwrap_err();
        assert!(matches!(e, TokenError::Refused { .. }));
        let e = read_as(
            "tiktok",
            401,
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, TokenError::Misconfigured { .. }));
        let e = read_as("snapchat", 503, "", None).unwrap_err();
        assert!(e.is_transient());
        let e = read_as("snapchat", 429, "", None).unwrap_err();
        assert!(e.is_transient());
    }

    /// Issue 18 item 4: a refresh refused with invalid_grant is a revoked or rotated-away grant,
    /// never an expiry a refresh could fix, on every platform and whatever the text says
    /// (RFC 6749 §5.2; platforms.md §3 "invalid_grant (expired, revoked or rotated refresh
    /// token)").
    #[test]
    fn invalid_grant_on_refresh_is_a_revoked_grant() {
        for provider in ["snapchat", "tiktok", "threads", "meta", "tiktok-business"] {
            for body in [
                r#"{"error":"invalid_grant","error_description":"Refresh token is invalid or expired.","log_id":"x"}"#,
                r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
                r#"{"error":"invalid_grant"}"#,
            ] {
                let e = read_as(provider, 400, body, None).unwrap_err();
                let TokenError::Refused { classification, .. } = &e else {
                    panic!("{provider} {body}: {e:?}");
                };
                assert_eq!(classification.kind, Kind::TokenRevoked, "{provider} {body}");
                assert_eq!(
                    classification.action,
                    tokenwarden_core::classify::Action::Reauthorize,
                    "{provider} {body}"
                );
            }
        }
    }

    #[test]
    fn tiktok_login_kit_rotation_and_refresh_expiry() {
        let g = read_as(
            "tiktok",
            200,
            r#"{"open_id":"o1","scope":"user.info.basic,video.list","access_token":"act.1","expires_in":7200,"refresh_token":"rft.1","refresh_expires_in":15552000,"token_type":"Bearer"}"#,
            None,
        )
        .unwrap();
        assert_eq!(g.account_ids, ["o1"]);
        assert_eq!(g.tokens.scopes, ["user.info.basic", "video.list"]);
        assert_eq!(
            g.tokens.refresh_expires_at,
            Some(now() + chrono::TimeDelta::seconds(15_552_000))
        );
    }
}
