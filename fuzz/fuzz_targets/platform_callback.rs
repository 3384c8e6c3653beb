//! The platforms' deauthorize callbacks (`core::platform_callback`: Meta's and Threads'
//! `signed_request`, TikTok's `TikTok-Signature`), under every definition that declares one.
//!
//! Invariants beyond "no panic" on any body and header:
//! - what the platform's signer produced verifies, and names the user it was signed for;
//! - after a one-bit change in the secret, the body or the header (other than a change of case
//!   in TikTok's hex signature, which reads the same), it is refused;
//! - signed further from now than the definition's `max_age`, it is refused as stale;
//! - an arbitrary request is accepted only if the arbitrary secret really signed it: its replay
//!   key is the MAC the signer computes.
#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tokenwarden_core::platform_callback::{
    CallbackKind, CallbackRequest, DeauthorizeSpec, Refusal, Verified, meta_signed_request,
    tiktok_signature, verify,
};
use tokenwarden_fuzz::PROVIDERS;

/// The deauthorize callbacks the shipped definitions declare.
static SPECS: LazyLock<Vec<DeauthorizeSpec>> = LazyLock::new(|| {
    let specs: Vec<DeauthorizeSpec> = PROVIDERS
        .iter()
        .filter_map(|p| p.spec.callbacks.deauthorize.clone())
        .collect();
    assert!(!specs.is_empty(), "some definition declares a deauthorize callback");
    specs
});

#[derive(Debug, Arbitrary)]
struct Input {
    selector: u8,
    secret: Vec<u8>,
    user: String,
    /// Signing time, Unix seconds, kept within chrono's range below.
    signed_at: u32,
    /// How far `now` is from the signing time, in seconds.
    skew: i32,
    /// Which part to change, and which bit.
    what: u8,
    bit: u32,
    /// Anything a sender might send.
    body: Vec<u8>,
    header: Option<String>,
}

fn flip(bytes: &mut [u8], bit: u32) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let bit = bit as usize % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    true
}

/// What the platform would send for `user` at `t`: `(body, signature header)`.
fn signed(spec: &DeauthorizeSpec, secret: &[u8], user: &str, t: i64) -> (Vec<u8>, Option<String>) {
    match spec.kind {
        CallbackKind::MetaSignedRequest => {
            let payload = serde_json::json!({
                "algorithm": "HMAC-SHA256",
                "issued_at": t,
                "user_id": user,
            })
            .to_string();
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("signed_request", &meta_signed_request(secret, &payload))
                .finish();
            (body.into_bytes(), None)
        }
        CallbackKind::TiktokSignature => {
            let body = serde_json::json!({
                "client_key": "app",
                "event": "authorization.removed",
                "create_time": t,
                "user_openid": user,
                "content": "{\"reason\":1}",
            })
            .to_string()
            .into_bytes();
            let header = tiktok_signature(secret, t, &body);
            (body, Some(header))
        }
    }
}

fuzz_target!(|i: Input| {
    let spec = &SPECS[usize::from(i.selector) % SPECS.len()];
    let t = i64::from(i.signed_at);
    let signed_at = DateTime::<Utc>::from_timestamp(t, 0).expect("a u32 of seconds is a time");
    let now = signed_at + TimeDelta::seconds(i64::from(i.skew));
    let max_age = TimeDelta::from_std(spec.max_age).expect("max_age is at most a day");

    // Anything at all: no panic, and only a real signature opens it.
    let any = CallbackRequest {
        body: &i.body,
        signature_header: i.header.as_deref(),
    };
    match verify(spec, &i.secret, any, now) {
        Ok(Verified::Deauthorized(d)) => {
            assert!(!d.user_id.is_empty() && d.user_id != "0" && d.user_id.len() <= 256);
            assert!((now - d.signed_at).abs() <= max_age);
        }
        Ok(Verified::OtherEvent { event, .. }) => assert!(event.chars().count() <= 100),
        Err(_) => {}
    }

    // What the platform signs verifies, for the user it names, when it is fresh.
    let (body, header) = signed(spec, &i.secret, &i.user, t);
    let request = CallbackRequest {
        body: &body,
        signature_header: header.as_deref(),
    };
    let fresh = (now - signed_at).abs() <= max_age;
    let usable_user = !i.user.is_empty() && i.user != "0" && i.user.len() <= 256;
    match verify(spec, &i.secret, request, now) {
        Ok(Verified::Deauthorized(d)) => {
            assert!(fresh, "a stale callback was accepted");
            assert_eq!(d.user_id, i.user);
            assert_eq!(d.signed_at, signed_at);
        }
        Ok(Verified::OtherEvent { .. }) => panic!("a removal was read as another event"),
        Err(Refusal::Stale) => assert!(!fresh),
        Err(Refusal::NoUser) => assert!(fresh && !usable_user),
        Err(e) => panic!("the platform's own callback was refused: {e}"),
    }
    if !fresh {
        return;
    }

    // One bit changed anywhere: refused.
    let mut secret = i.secret.clone();
    let mut body2 = body.clone();
    let mut header2 = header.clone().map(String::into_bytes);
    let changed = match (i.what % 3, header2.as_mut()) {
        (0, _) => flip(&mut secret, i.bit),
        (2, Some(h)) => {
            flip(h, i.bit)
                // The signature is hex: a change of case reads the same.
                && !h.eq_ignore_ascii_case(header.as_deref().unwrap_or_default().as_bytes())
        }
        _ => flip(&mut body2, i.bit),
    };
    if !changed {
        return;
    }
    let header2 = header2.map(|h| String::from_utf8_lossy(&h).into_owned());
    let request = CallbackRequest {
        body: &body2,
        signature_header: header2.as_deref(),
    };
    assert!(
        verify(spec, &secret, request, now).is_err(),
        "accepted after a one-bit change (part {})",
        i.what % 3
    );
});
