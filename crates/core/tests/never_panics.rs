//! Any bytes, any status, any headers: the classifier and the raw-response parser answer, never panic.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use proptest::prelude::*;
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::provider::{Context, Registry};
use tokenwarden_core::raw_http;

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        "[{}\\[\\]\":,a-z0-9 .\\\\-]{0,512}".prop_map(|s| s.into_bytes()),
        ("[0-9]{1,7}", "[a-zA-Z _]{0,40}").prop_map(|(c, m)| format!(
            r#"{{"code":{c},"message":"{m}","error":{{"code":{c},"error_subcode":{c}}}}}"#
        )
        .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn classify_never_panics(status in 0u16..1000, body in json_ish(), h in proptest::collection::vec(("[A-Za-z-]{1,20}", ".{0,80}"), 0..5), token_ep in any::<bool>()) {
        let reg = Registry::builtin().unwrap();
        let headers: Vec<(String, String)> = h.into_iter().collect();
        let ctx = if token_ep { Context::TokenEndpoint } else { Context::Api };
        for p in reg.iter() {
            let c = p.classifier().classify(&ResponseView { status, headers: &headers, body: &body }, ctx, chrono::Utc::now());
            prop_assert!(!c.title.is_empty());
        }
    }

    #[test]
    fn raw_parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = raw_http::parse(&input);
    }

    #[test]
    fn raw_parse_round_trips(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..256), crlf in any::<bool>()) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("HTTP/1.1 {status} X{nl}Content-Type: x/y{nl}{nl}").into_bytes();
        text.extend_from_slice(&body);
        let r = raw_http::parse(&text).unwrap();
        prop_assert_eq!(r.status, status);
        // A body that itself begins with a status line is read as a further response; skip those.
        if !body.starts_with(b"HTTP/") {
            prop_assert_eq!(r.body, body);
        }
    }
}
