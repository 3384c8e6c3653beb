//! What a platform's error body says beyond the classification, for a person reading a
//! diagnosis: the words it wrote for end users, the name it gives its trace id, and how well the
//! body fits a provider's envelopes (to recognise the platform when nobody said which it is).
//! Pure, driven by the provider definition's `[[errors.envelopes]]`.

use super::body::{Envelope, lookup, lookup_where, repair_truncated_json, scalar, scrub_message};
use crate::provider::ErrorSpec;
use serde_json::Value;

/// The platform's own words in an error body, scrubbed of anything token-like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformWords {
    /// A heading written for the end user (Meta `error_user_title`).
    pub user_title: Option<String>,
    /// A sentence written for the end user (Meta `error_user_msg`).
    pub user_message: Option<String>,
    /// The field name the platform gives its trace id (`request_id`, `fbtrace_id`, `log_id`):
    /// what its support asks for.
    pub trace_label: Option<String>,
}

fn json_of(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body)
        .ok()
        .or_else(|| repair_truncated_json(body))
}

fn text(json: &Value, path: Option<&str>) -> Option<String> {
    path.and_then(|p| lookup_where(json, p, &|v| scalar(v).is_some()))
        .and_then(scalar)
        .map(|t| scrub_message(&t))
        .filter(|t| !t.is_empty())
}

/// The words of the first envelope of `errors` whose code is in `body`.
pub fn platform_words(errors: &ErrorSpec, body: &[u8]) -> PlatformWords {
    let Some(json) = json_of(body) else {
        return PlatformWords::default();
    };
    let Some(env) = errors
        .envelopes
        .iter()
        .find(|e| Envelope::read(&json, e).is_some())
    else {
        return PlatformWords::default();
    };
    PlatformWords {
        user_title: text(&json, env.user_title.as_deref()),
        user_message: text(&json, env.user_message.as_deref()),
        trace_label: env
            .trace_id
            .as_deref()
            .filter(|p| lookup_where(&json, p, &|v| scalar(v).is_some()).is_some())
            .and_then(|p| p.rsplit('.').next())
            .map(str::to_string),
    }
}

/// How well `body` fits the envelopes of `errors`: for the best-fitting envelope whose code is
/// present, how many of its fields are (0 when none fits). A platform is recognised by the
/// envelope that explains the most of a body.
pub fn envelope_fit(errors: &ErrorSpec, body: &[u8]) -> usize {
    let Some(json) = json_of(body) else {
        return 0;
    };
    // `details|detail`: any alternative counts.
    let has = |p: Option<&str>| {
        p.is_some_and(|p| {
            p.split('|')
                .any(|alt| lookup(&json, alt).is_some_and(|v| !v.is_null()))
        })
    };
    errors
        .envelopes
        .iter()
        .filter(|e| has(Some(&e.code)))
        .map(|e| {
            1 + [
                e.subcode.as_deref(),
                e.message.as_deref(),
                e.trace_id.as_deref(),
                e.transient.as_deref(),
                e.user_title.as_deref(),
                e.user_message.as_deref(),
            ]
            .into_iter()
            .filter(|p| has(*p))
            .count()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Registry;

    fn errors(id: &str) -> ErrorSpec {
        Registry::builtin()
            .unwrap()
            .get(id)
            .unwrap()
            .spec
            .errors
            .clone()
    }

    #[test]
    fn meta_user_words_and_trace_label_are_read() {
        let body = br#"{"error":{"message":"m","code":190,"error_subcode":458,"error_user_title":"App removed","error_user_msg":"The person removed the app.","fbtrace_id":"AbC"}}"#;
        let w = platform_words(&errors("meta"), body);
        assert_eq!(w.user_title.as_deref(), Some("App removed"));
        assert_eq!(
            w.user_message.as_deref(),
            Some("The person removed the app.")
        );
        assert_eq!(w.trace_label.as_deref(), Some("fbtrace_id"));
        let tiktok = br#"{"code":40105,"message":"x","request_id":"2024ABC"}"#;
        let w = platform_words(&errors("tiktok-business"), tiktok);
        assert_eq!(w.trace_label.as_deref(), Some("request_id"));
        assert_eq!(w.user_message, None);
        assert_eq!(
            platform_words(&errors("meta"), b"not json"),
            PlatformWords::default()
        );
    }

    #[test]
    fn a_body_fits_its_own_platform_best() {
        let cases: [(&str, &[u8]); 3] = [
            ("tiktok-business", br#"{"code":40105,"message":"x","request_id":"r","data":{}}"#),
            ("tiktok", br#"{"data":{},"error":{"code":"access_token_invalid","message":"x","log_id":"l"}}"#),
            ("snapchat", br#"{"request_status":"ERROR","request_id":"r","debug_message":"d","error_code":"E1008"}"#),
        ];
        let reg = Registry::builtin().unwrap();
        for (want, body) in cases {
            let own = envelope_fit(&errors(want), body);
            assert!(own > 0, "{want}");
            for p in reg.iter().filter(|p| p.spec.id.as_str() != want) {
                assert!(
                    envelope_fit(&p.spec.errors, body) < own,
                    "{want} vs {}",
                    p.spec.id
                );
            }
        }
    }
}
