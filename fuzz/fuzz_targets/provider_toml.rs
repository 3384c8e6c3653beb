//! A provider definition through load and validation: any text is accepted or refused with
//! problems that name the file, never a panic. What is accepted keeps https endpoints (unless
//! http was allowed), classifies, moves to another origin, and loads again from its own
//! serialization.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::provider::{Context, Endpoints, Registry};

const SOURCE: &str = "fuzz/provider.toml";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let endpoints = if flags & 1 == 0 {
        Endpoints::HttpsOnly
    } else {
        Endpoints::AllowHttp
    };
    let p = match Registry::check_allowing(SOURCE, text, endpoints) {
        Ok(p) => p,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            for e in &problems {
                assert!(e.to_string().contains(SOURCE), "a problem that names no file: {e}");
            }
            return;
        }
    };
    let spec = &p.spec;
    if endpoints == Endpoints::HttpsOnly {
        for u in [&spec.authorize.url, &spec.token.exchange.url, &spec.api.base_url]
            .into_iter()
            .chain(spec.api.sandbox_base_url.as_ref())
        {
            assert_eq!(u.scheme(), "https", "{u}");
        }
    }
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("in range");
    for (status, body) in [
        (200, &br#"{"access_token":"a","expires_in":60}"#[..]),
        (400, br#"{"error":"invalid_grant"}"#),
        (429, b""),
        (200, br#"{"code":40100,"message":"x","data":{}}"#),
        (400, br#"{"error":{"code":190,"error_subcode":463,"message":"x"}}"#),
    ] {
        for context in [Context::Api, Context::TokenEndpoint] {
            let view = ResponseView {
                status,
                headers: &[],
                body,
            };
            let c = p.classifier().classify(&view, context, now);
            assert_eq!(c.status, status);
        }
    }
    let base = url::Url::parse("http://127.0.0.1:9/").expect("a URL");
    let moved = p.with_origin(&base);
    assert_eq!(moved.spec.api.base_url.origin(), base.origin());
    // What loaded loads again from its own serialization.
    let again = toml::to_string(spec).expect("an accepted definition serializes");
    if let Err(problems) = Registry::check_allowing(SOURCE, &again, endpoints) {
        panic!("the serialized definition is refused: {problems:?}\n{again}");
    }
});
