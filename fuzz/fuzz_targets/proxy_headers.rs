//! The proxy's header rules (hardening rule 10) on any header list: outbound, the caller's
//! credentials, hop-by-hop headers (and whatever `Connection` names), our own `tokenwarden-*`
//! headers and values with CR, LF or NUL never pass, and our credential is the only one of its
//! name; inbound, the platform's cookies and authentication state and anything named like our
//! credential stay behind. Nothing is added or changed on the way.
#![no_main]

use arbitrary::Unstructured;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tokenwarden_fuzz::provider;
use tokenwarden_engine::headers::{OWN_PREFIX, attach_credential, inbound, outbound};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
const CALLER_CREDENTIALS: &[&str] = &["authorization", "cookie", "access-token", "x-api-key"];
const PLATFORM_ONLY: &[&str] = &["set-cookie", "set-cookie2", "authentication-info"];

fn named_in_connection(h: &HeaderMap) -> Vec<String> {
    h.get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// Every header of `out` came from `input` with the same value.
fn subset(out: &HeaderMap, input: &HeaderMap) {
    for (n, v) in out {
        assert!(
            input.get_all(n).iter().any(|w| w == v),
            "{n} was added or changed"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(selector), Ok(streamed), Ok(pairs)) = (
        u.arbitrary::<u8>(),
        u.arbitrary::<bool>(),
        u.arbitrary::<Vec<(Vec<u8>, Vec<u8>)>>(),
    ) else {
        return;
    };
    let api = &provider(selector).spec.api;
    let credential = api.credential_header.as_str();
    let mut headers = HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(&n), HeaderValue::from_bytes(&v)) {
            headers.append(n, v);
        }
    }
    let listed = named_in_connection(&headers);

    match outbound(&headers, credential, streamed) {
        Ok(mut out) => {
            subset(&out, &headers);
            for (n, v) in &out {
                let n = n.as_str();
                assert!(!HOP_BY_HOP.contains(&n) && !CALLER_CREDENTIALS.contains(&n), "{n} passed");
                assert!(!matches!(n, "host" | "forwarded" | "expect") && !n.starts_with("x-forwarded-"));
                assert!(!n.eq_ignore_ascii_case(credential), "the caller's {n} passed");
                assert!(!n.starts_with(OWN_PREFIX), "{n} passed");
                assert!(!listed.iter().any(|l| l == n), "{n}, named in Connection, passed");
                assert!(streamed || n != "content-length");
                assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
            }
            let template = api.credential_value.as_str();
            if attach_credential(&mut out, credential, template, "tok-ours").is_ok() {
                let ours: Vec<&HeaderValue> = out.get_all(credential).iter().collect();
                assert_eq!(ours.len(), 1, "one credential");
                assert_eq!(ours[0].as_bytes(), template.replace("{access_token}", "tok-ours").as_bytes());
                assert!(ours[0].is_sensitive());
            }
        }
        Err(e) => {
            assert!(
                headers.get_all(e.name.as_str()).iter().any(|v| v
                    .as_bytes()
                    .iter()
                    .any(|b| matches!(b, b'\r' | b'\n' | 0))),
                "{} refused without a CR, LF or NUL",
                e.name
            );
        }
    }

    let back = inbound(headers.clone(), credential);
    subset(&back, &headers);
    for n in back.keys() {
        let n = n.as_str();
        assert!(!HOP_BY_HOP.contains(&n) && !PLATFORM_ONLY.contains(&n), "{n} came back");
        assert!(!n.eq_ignore_ascii_case(credential), "our {n} came back");
        assert!(!n.starts_with(OWN_PREFIX));
        assert!(!listed.iter().any(|l| l == n));
    }
});
