//! The authorization callback's query string (`/callback/{provider}?state=…&code=…`), read the
//! same way by the server and by the fuzz target that checks it.
//!
//! Parameters that decide the flow may appear at most once: with two, which one "wins" differs
//! between parsers, and an attacker who can append to the URL gets to choose. Other parameters
//! keep their first value.

use std::collections::HashMap;

/// Callback parameters that must appear at most once (besides the provider's code parameters).
pub const SINGLE_PARAMS: [&str; 11] = [
    "state",
    // OAuth 1.0a (RFC 5849 §2.2): the request token and X's cancel, which key the flow.
    "oauth_token",
    "denied",
    "code",
    "iss",
    "error",
    "error_description",
    "error_reason",
    "error_code",
    "error_message",
    "auth_code",
];

/// The error parameters a platform may send back from the consent step: RFC 6749 §4.1.2.1
/// `error` and `error_description`; Meta and Threads also send `error_reason`, `error_code` and
/// `error_message`.
pub const ERROR_PARAMS: [&str; 5] = [
    "error",
    "error_description",
    "error_reason",
    "error_code",
    "error_message",
];

/// A callback query with a flow-deciding parameter given more than once. Names the parameter
/// (names are not secret; values may be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the parameter {0:?} appears more than once")]
pub struct Repeated(pub String);

/// The decoded parameters of a callback query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    params: HashMap<String, String>,
}

/// Whether `name` must appear at most once, given the provider's code parameters.
pub fn is_single(name: &str, code_params: &[String]) -> bool {
    SINGLE_PARAMS.contains(&name) || code_params.iter().any(|c| c == name)
}

/// Parses a raw (still percent-encoded) query. `code_params` are the provider's
/// `callback_code_params`, which must be single-valued too.
pub fn parse(raw: Option<&str>, code_params: &[String]) -> Result<CallbackQuery, Repeated> {
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let k = k.into_owned();
        if params.contains_key(&k) && is_single(&k, code_params) {
            return Err(Repeated(k));
        }
        params.entry(k).or_insert_with(|| v.into_owned());
    }
    Ok(CallbackQuery { params })
}

impl CallbackQuery {
    /// A parameter's (first) value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `state`, when present and not empty.
    pub fn state(&self) -> Option<&str> {
        self.get("state").filter(|v| !v.is_empty())
    }

    /// `iss` (RFC 9207), when present.
    pub fn issuer(&self) -> Option<&str> {
        self.get("iss")
    }

    /// `error`, when present (even empty: the platform said something went wrong).
    pub fn error(&self) -> Option<&str> {
        self.get("error")
    }

    /// `error_description`, or Meta's `error_reason`.
    pub fn error_description(&self) -> Option<&str> {
        self.get("error_description")
            .or_else(|| self.get("error_reason"))
    }

    /// The callback's error parameters as the JSON object the classifier reads for the consent
    /// step, or `None` when the callback carries no `error` and no `error_code`.
    pub fn consent_error(&self) -> Option<String> {
        if self.get("error").is_none() && self.get("error_code").is_none() {
            return None;
        }
        let body: serde_json::Map<String, serde_json::Value> = ERROR_PARAMS
            .iter()
            .filter_map(|k| Some((k.to_string(), self.get(k)?.to_string().into())))
            .collect();
        Some(serde_json::Value::Object(body).to_string())
    }

    /// The authorization code: the first of `code_params` that is present, when it is not empty.
    pub fn code(&self, code_params: &[String]) -> Option<&str> {
        code_params
            .iter()
            .find_map(|k| self.get(k))
            .filter(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_params() -> Vec<String> {
        vec!["code".into(), "auth_code".into()]
    }

    #[test]
    fn reads_a_callback() {
        let q = parse(
            Some("state=s%201&code=c%2Bd&iss=https%3A%2F%2Fx&scope=a+b"),
            &code_params(),
        )
        .unwrap();
        assert_eq!(q.state(), Some("s 1"));
        assert_eq!(q.code(&code_params()), Some("c+d"));
        assert_eq!(q.issuer(), Some("https://x"));
        assert_eq!(q.get("scope"), Some("a b"));
        assert_eq!(q.error(), None);
    }

    #[test]
    fn consent_errors_are_read_with_metas_extra_parameters() {
        let q = parse(
            Some("error=access_denied&error_reason=user_denied&error_code=200&state=s"),
            &code_params(),
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&q.consent_error().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "access_denied", "error_reason": "user_denied", "error_code": "200"})
        );
        let q = parse(Some("error_code=1349048&state=s"), &code_params()).unwrap();
        assert!(q.consent_error().is_some());
        let q = parse(Some("code=c&state=s"), &code_params()).unwrap();
        assert_eq!(q.consent_error(), None);
        assert!(parse(Some("error_code=1&error_code=2"), &code_params()).is_err());
    }

    #[test]
    fn repeated_deciding_parameters_are_refused() {
        for raw in [
            "state=a&state=b",
            "code=a&state=s&code=a",
            "iss=x&iss=x",
            "error=a&error=",
            "error_description=a&error_description=b",
            "auth_code=1&auth_code=2",
            "error_reason=r&error_reason=s",
            "error_message=a&error_message=b",
            "st%61te=a&state=b",
        ] {
            assert!(parse(Some(raw), &code_params()).is_err(), "{raw}");
        }
        let e = parse(Some("x=1&token=a&token=b"), &["token".into()]).unwrap_err();
        assert_eq!(e, Repeated("token".into()));
        // Others keep their first value.
        let q = parse(Some("scope=a&scope=b&error_reason=r"), &[]).unwrap();
        assert_eq!(q.get("scope"), Some("a"));
        assert_eq!(q.error_description(), Some("r"));
    }

    #[test]
    fn empty_values_are_absent_where_they_must_be() {
        let q = parse(Some("state=&code=&error="), &code_params()).unwrap();
        assert_eq!(q.state(), None);
        assert_eq!(q.code(&code_params()), None);
        assert_eq!(q.error(), Some(""));
        assert_eq!(parse(None, &[]).unwrap(), CallbackQuery::default());
        // The first code parameter present decides, even when empty.
        let q = parse(Some("code=&auth_code=x"), &code_params()).unwrap();
        assert_eq!(q.code(&code_params()), None);
        let q = parse(Some("auth_code=x"), &code_params()).unwrap();
        assert_eq!(q.code(&code_params()), Some("x"));
    }
}
