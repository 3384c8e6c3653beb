//! Callbacks a platform sends when a user removes the app (issue 18, item 7): how each kind is
//! verified, and where its payload names the user. Pure: the receiving lives in the server, the
//! sending (as the platforms do it) in the sandbox.
//!
//! Which kind a platform uses and where the user id sits is data, in the provider definition's
//! `[callbacks.deauthorize]` table ([`DeauthorizeSpec`]); the code knows only the kinds:
//!
//! - [`CallbackKind::MetaSignedRequest`] (Meta's and Threads' deauthorize callback): a POST form
//!   whose `signed_request` is `base64url(signature).base64url(payload)`, the signature being
//!   HMAC-SHA256 over the **base64url payload string as sent**, keyed by the app secret; the
//!   payload is JSON with `algorithm: "HMAC-SHA256"`, `issued_at` and `user_id`.
//! - [`CallbackKind::TiktokSignature`] (TikTok's webhooks, `authorization.removed` among them):
//!   the header `TikTok-Signature: t=<unix seconds>,s=<hex>`, the signature being HMAC-SHA256 of
//!   `"{t}.{body}"` keyed by the client secret; the JSON body names the event and `user_openid`
//!   (developers.tiktok.com `webhooks-verification`, `webhooks-events`).
//!
//! Signatures are compared in constant time, and nothing in the payload is trusted (or even
//! parsed as JSON) before the signature holds. A signature older (or newer) than the
//! definition's `max_age` is refused as stale, and [`SeenSignatures`] refuses one seen before
//! while it could still be fresh, so a captured callback cannot be replayed.

use crate::span::serde_span;
use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::time::Duration;

/// The callbacks a platform sends to the app (the `[callbacks]` table of a definition).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksSpec {
    /// The callback that says a user removed the app (deauthorized it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deauthorize: Option<DeauthorizeSpec>,
}

/// How a platform signs a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// A form field `signed_request` = `base64url(HMAC-SHA256(secret, payload64)).payload64`
    /// (Meta, Threads).
    MetaSignedRequest,
    /// A `TikTok-Signature: t=…,s=…` header over `"{t}.{body}"` (TikTok webhooks).
    TiktokSignature,
}

impl CallbackKind {
    /// The header that carries the signature, for kinds that sign in a header.
    pub fn signature_header(self) -> Option<&'static str> {
        match self {
            CallbackKind::MetaSignedRequest => None,
            CallbackKind::TiktokSignature => Some("tiktok-signature"),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::MetaSignedRequest => "meta_signed_request",
            CallbackKind::TiktokSignature => "tiktok_signature",
        }
    }
}

/// A platform's deauthorize callback, as its definition describes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeauthorizeSpec {
    /// How it is signed.
    pub kind: CallbackKind,
    /// Where the verified payload names the user (a JSON pointer, RFC 6901, such as
    /// `/user_id`); matched against the account recorded with each connection.
    pub user_id: String,
    /// Where the payload gives the time it was signed, in Unix seconds (a JSON pointer), for
    /// kinds whose signature carries no time of its own (`meta_signed_request`: `/issued_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    /// Where the payload names the event (a JSON pointer), for platforms that send several
    /// events to one URL (TikTok: `/event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// With `event`: the events that mean the user removed the app (TikTok:
    /// `authorization.removed`). Any other event is acknowledged and changes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// How far the signing time may be from now, either way, before the callback is refused as
    /// stale (default 5 minutes).
    #[serde(with = "serde_span", default = "default_max_age")]
    pub max_age: Duration,
    /// The platform's page on this callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<url::Url>,
}

fn default_max_age() -> Duration {
    Duration::from_secs(5 * 60)
}

impl DeauthorizeSpec {
    /// Problems with the table as `(key under callbacks.deauthorize, what is wrong)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let pointer = |key: &'static str, p: &str, out: &mut Vec<(&'static str, String)>| {
            if !p.starts_with('/') {
                out.push((
                    key,
                    format!("{p:?} is not a JSON pointer: write it like \"/user_id\""),
                ));
            }
        };
        pointer("user_id", &self.user_id, &mut out);
        match (self.kind, &self.issued_at) {
            (CallbackKind::MetaSignedRequest, None) => out.push((
                "issued_at",
                "meta_signed_request needs issued_at (a JSON pointer such as \"/issued_at\"): without the signing time a captured callback could be replayed forever".into(),
            )),
            (CallbackKind::TiktokSignature, Some(_)) => out.push((
                "issued_at",
                "tiktok_signature takes the signing time from the signature header (t=…); remove issued_at".into(),
            )),
            (_, Some(p)) => pointer("issued_at", p, &mut out),
            (_, None) => {}
        }
        match (&self.event, self.events.is_empty()) {
            (Some(p), false) => pointer("event", p, &mut out),
            (Some(_), true) => out.push((
                "events",
                "event is set but events is empty: name the events that mean the user removed the app (such as \"authorization.removed\")".into(),
            )),
            (None, false) => out.push((
                "event",
                "events is set but event is not: say where the payload names the event (such as \"/event\")".into(),
            )),
            (None, true) => {}
        }
        if self.max_age < Duration::from_secs(1) || self.max_age > Duration::from_secs(86_400) {
            out.push((
                "max_age",
                "must be between 1s and 1d (platforms sign callbacks as they send them)".into(),
            ));
        }
        out
    }
}

/// A callback as it arrived: the raw body, and the signature header of kinds that have one.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    /// The body, exactly as received (signatures cover the bytes, not a re-encoding).
    pub body: &'a [u8],
    /// The value of [`CallbackKind::signature_header`], when the kind has one.
    pub signature_header: Option<&'a str>,
}

/// Identifies one exact callback (it is the callback's signature), for [`SeenSignatures`].
/// Its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey(pub [u8; 32]);

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayKey([redacted])")
    }
}

/// A verified callback that says a user removed the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deauthorization {
    /// The platform's id of the user.
    pub user_id: String,
    /// When the platform signed it.
    pub signed_at: DateTime<Utc>,
    /// Identifies this exact callback.
    pub replay_key: ReplayKey,
}

/// What a callback with a good signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The user removed the app.
    Deauthorized(Deauthorization),
    /// Another event the platform sends to the same URL (TikTok `video.publish.completed`, …):
    /// acknowledged, nothing changes. Carries the signature like a deauthorization does.
    OtherEvent {
        /// The event's name, as the payload gives it (capped).
        event: String,
        /// When the platform signed it.
        signed_at: DateTime<Utc>,
        /// Identifies this exact callback.
        replay_key: ReplayKey,
    },
}

/// Why a callback was refused. Said in the daemon's log; the sender only learns "signature
/// invalid". No variant carries any part of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request does not have the kind's shape (no `signed_request`, no signature header,
    /// bad base64 or hex, a payload that is not a JSON object).
    #[error("the callback is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match the app's secret.
    #[error("the signature does not match the app secret")]
    BadSignature,
    /// The payload names an algorithm other than HMAC-SHA256.
    #[error("the payload names an unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// The signing time is further from now than `max_age`.
    #[error("the callback was signed too long ago (or in the future)")]
    Stale,
    /// The payload names no user where the definition says.
    #[error("the payload names no user")]
    NoUser,
    /// The same callback was received before.
    #[error("the callback was received before (a replay)")]
    Replayed,
}

/// Base64url, with or without padding (Meta sends none; tolerate it anyway).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn mac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Verifies `request` against `secret` (the app's client secret) as `spec` says, at `now`.
/// The replay check is the caller's ([`SeenSignatures`]): it holds state.
pub fn verify(
    spec: &DeauthorizeSpec,
    secret: &[u8],
    request: CallbackRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Verified, Refusal> {
    let (payload, signed_at, replay_key) = match spec.kind {
        CallbackKind::MetaSignedRequest => verify_signed_request(spec, secret, request.body)?,
        CallbackKind::TiktokSignature => verify_tiktok(secret, request)?,
    };
    let age = (now - signed_at).abs();
    if age > TimeDelta::from_std(spec.max_age).unwrap_or(TimeDelta::MAX) {
        return Err(Refusal::Stale);
    }
    if let Some(pointer) = &spec.event {
        let event = text_at(&payload, pointer).unwrap_or_default();
        if !spec.events.contains(&event) {
            return Ok(Verified::OtherEvent {
                event: event.chars().take(100).collect(),
                signed_at,
                replay_key,
            });
        }
    }
    let user_id = text_at(&payload, &spec.user_id)
        .filter(|u| !u.is_empty() && u != "0" && u.len() <= 256)
        .ok_or(Refusal::NoUser)?;
    Ok(Verified::Deauthorized(Deauthorization {
        user_id,
        signed_at,
        replay_key,
    }))
}

/// A string or an integer at `pointer` (Meta sends ids as strings, some payloads as numbers).
fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

type Checked = (Value, DateTime<Utc>, ReplayKey);

fn verify_signed_request(
    spec: &DeauthorizeSpec,
    secret: &[u8],
    body: &[u8],
) -> Result<Checked, Refusal> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == "signed_request" {
            if found.is_some() {
                return Err(Refusal::Malformed("signed_request is given twice"));
            }
            found = Some(v.into_owned());
        }
    }
    let signed = found.ok_or(Refusal::Malformed("no signed_request field"))?;
    let (sig64, payload64) = signed.split_once('.').ok_or(Refusal::Malformed(
        "signed_request is not signature.payload",
    ))?;
    let sig = B64URL
        .decode(sig64)
        .map_err(|_| Refusal::Malformed("the signature is not base64url"))?;
    if sig.len() != 32 {
        return Err(Refusal::BadSignature);
    }
    // Over the payload as sent: re-encoding it could change a byte and break (or forge) nothing
    // but trust.
    let want = mac(secret, &[payload64.as_bytes()]);
    if !same(&sig, &want) {
        return Err(Refusal::BadSignature);
    }
    let payload: Value = B64URL
        .decode(payload64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or(Refusal::Malformed(
            "the payload is not a base64url JSON object",
        ))?;
    let algorithm = payload.get("algorithm").and_then(Value::as_str);
    if !algorithm.is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256")) {
        return Err(Refusal::UnsupportedAlgorithm);
    }
    let issued = spec
        .issued_at
        .as_deref()
        .and_then(|p| payload.pointer(p))
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or(Refusal::Malformed("the payload gives no signing time"))?;
    Ok((payload, issued, ReplayKey(want)))
}

fn verify_tiktok(secret: &[u8], request: CallbackRequest<'_>) -> Result<Checked, Refusal> {
    let header = request
        .signature_header
        .ok_or(Refusal::Malformed("no signature header"))?;
    let (mut t, mut s) = (None, None);
    for element in header.split(',') {
        match element.trim().split_once('=') {
            Some(("t", v)) if t.is_none() => t = Some(v.trim()),
            Some(("s", v)) if s.is_none() => s = Some(v.trim()),
            _ => {}
        }
    }
    let (t, s) = t
        .zip(s)
        .ok_or(Refusal::Malformed("the signature header lacks t= or s="))?;
    let seconds: i64 = t
        .parse()
        .map_err(|_| Refusal::Malformed("t= is not a Unix time"))?;
    let signed_at =
        DateTime::from_timestamp(seconds, 0).ok_or(Refusal::Malformed("t= is not a Unix time"))?;
    let sig = hex32(s).ok_or(Refusal::Malformed("s= is not 64 hex digits"))?;
    let want = mac(secret, &[t.as_bytes(), b".", request.body]);
    if !same(&sig, &want) {
        return Err(Refusal::BadSignature);
    }
    let payload: Value = serde_json::from_slice(request.body)
        .ok()
        .filter(Value::is_object)
        .ok_or(Refusal::Malformed("the body is not a JSON object"))?;
    Ok((payload, signed_at, ReplayKey(want)))
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// `signed_request` for `payload` (a JSON object's text) as Meta builds it: what the sandbox
/// sends. `base64url(HMAC-SHA256(secret, base64url(payload))).base64url(payload)`, unpadded.
pub fn meta_signed_request(secret: &[u8], payload: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload64 = engine.encode(payload.as_bytes());
    let sig = mac(secret, &[payload64.as_bytes()]);
    format!("{}.{payload64}", engine.encode(sig))
}

/// The `TikTok-Signature` header value for `body` signed at `t` (Unix seconds): what the
/// sandbox sends. `t=<t>,s=<hex HMAC-SHA256(secret, "{t}.{body}")>`.
pub fn tiktok_signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let sig = mac(secret, &[t.to_string().as_bytes(), b".", body]);
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},s={hex}")
}

/// Callbacks already received, each kept while it could still pass the freshness check, so the
/// same one is accepted once. Bounded: when full, the entries that can no longer be fresh go
/// first, then the ones that expire soonest. Only callbacks with a good signature are recorded,
/// so a flood of forgeries cannot push a real one out.
#[derive(Debug)]
pub struct SeenSignatures {
    cap: usize,
    /// Replay key → when it can no longer be fresh.
    seen: HashMap<ReplayKey, DateTime<Utc>>,
}

impl SeenSignatures {
    /// Holds at most `cap` signatures.
    pub fn new(cap: usize) -> Self {
        SeenSignatures {
            cap: cap.max(1),
            seen: HashMap::new(),
        }
    }

    /// Records `key`, fresh until `until`; `false` when it was recorded already (a replay).
    pub fn first_time(&mut self, key: ReplayKey, until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if self.seen.get(&key).is_some_and(|u| *u >= now) {
            return false;
        }
        if !self.seen.contains_key(&key) && self.seen.len() >= self.cap {
            self.seen.retain(|_, u| *u >= now);
            if self.seen.len() >= self.cap
                && let Some(soonest) = self.seen.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k)
            {
                self.seen.remove(&soonest);
            }
        }
        self.seen.insert(key, until);
        true
    }

    /// Forgets `key` (its processing failed, so the platform's retry must be accepted).
    pub fn forget(&mut self, key: &ReplayKey) {
        self.seen.remove(key);
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed outside this code, with Python's hmac/hashlib/base64 following the
    // documented algorithms:
    // - Meta "signed_request" (developers.facebook.com/docs/games/gamesonfacebook/login#parsingsr,
    //   the deauthorize callback of Facebook Login's settings; Threads' "Uninstall Callback URL"
    //   sends the same shape): sig = base64url(HMAC-SHA256(app_secret, payload64)), unpadded.
    // - TikTok (developers.tiktok.com/doc/webhooks-verification): signed_payload = "{t}.{body}",
    //   s = hex(HMAC-SHA256(client_secret, signed_payload)); body from `webhooks-events`.
    const META_SECRET: &[u8] = b"app-secret";
    const META_SIGNED: &str = "yFyLbIkAJMw2Rnoh3a4AhxIFZ2MzzX7kXzlD6o8EjbE.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTgwMDAwMDAwMCwidXNlcl9pZCI6IjEyMzQ1Njc4OTAifQ";
    const META_PAYLOAD: &str =
        r#"{"algorithm":"HMAC-SHA256","issued_at":1800000000,"user_id":"1234567890"}"#;
    const TIKTOK_SECRET: &[u8] = b"client-secret";
    const TIKTOK_BODY: &str = r#"{"client_key":"bwo2m45353a6k85","event":"authorization.removed","create_time":1800000000,"user_openid":"act.example12345Example12345Example","content":"{\"reason\": 1 }"}"#;
    const TIKTOK_HEADER: &str =
        "t=1800000000,s=1070dd15d8560f8d7dc0c87fa1f6e5a2bc65608d35a46a03c0f4c0a65e43042c";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn meta() -> DeauthorizeSpec {
        toml::from_str(
            "kind = \"meta_signed_request\"\nuser_id = \"/user_id\"\nissued_at = \"/issued_at\"",
        )
        .unwrap()
    }

    fn tiktok() -> DeauthorizeSpec {
        toml::from_str(
            "kind = \"tiktok_signature\"\nuser_id = \"/user_openid\"\nevent = \"/event\"\nevents = [\"authorization.removed\"]\nmax_age = \"5m\"",
        )
        .unwrap()
    }

    fn form(signed: &str) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("signed_request", signed)
            .finish()
            .into_bytes()
    }

    fn meta_verify(body: &[u8], now: DateTime<Utc>) -> Result<Verified, Refusal> {
        verify(
            &meta(),
            META_SECRET,
            CallbackRequest {
                body,
                signature_header: None,
            },
            now,
        )
    }

    fn tiktok_verify(
        header: Option<&str>,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, Refusal> {
        verify(
            &tiktok(),
            TIKTOK_SECRET,
            CallbackRequest {
                body: body.as_bytes(),
                signature_header: header,
            },
            now,
        )
    }

    fn user(v: Result<Verified, Refusal>) -> Result<String, Refusal> {
        match v? {
            Verified::Deauthorized(d) => Ok(d.user_id),
            other => panic!("not a deauthorization: {other:?}"),
        }
    }

    #[test]
    fn the_signers_reproduce_the_independently_computed_vectors() {
        assert_eq!(meta_signed_request(META_SECRET, META_PAYLOAD), META_SIGNED);
        assert_eq!(
            tiktok_signature(TIKTOK_SECRET, 1_800_000_000, TIKTOK_BODY.as_bytes()),
            TIKTOK_HEADER
        );
    }

    #[test]
    fn a_meta_signed_request_names_its_user_and_its_time() {
        let got = meta_verify(&form(META_SIGNED), at(30)).unwrap();
        let Verified::Deauthorized(d) = got else {
            panic!("{got:?}")
        };
        assert_eq!(d.user_id, "1234567890");
        assert_eq!(d.signed_at, at(0));
        // Padding on either part is tolerated; the signature covers the payload as sent.
        let (sig, payload) = META_SIGNED.split_once('.').unwrap();
        assert_eq!(
            user(meta_verify(&form(&format!("{sig}=.{payload}")), at(0))),
            Ok("1234567890".into())
        );
        // Other form fields beside it are fine.
        let mut body = form(META_SIGNED);
        body.extend_from_slice(b"&other=1");
        assert!(meta_verify(&body, at(0)).is_ok());
    }

    #[test]
    fn a_meta_signed_request_is_refused_when_anything_is_off() {
        let (sig, payload) = META_SIGNED.split_once('.').unwrap();
        let other_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"algorithm":"HMAC-SHA256","issued_at":1800000000,"user_id":"666"}"#);
        let wrong_secret = meta_signed_request(b"another-secret", META_PAYLOAD);
        let none_alg = meta_signed_request(
            META_SECRET,
            r#"{"algorithm":"none","issued_at":1800000000,"user_id":"1"}"#,
        );
        let no_user = meta_signed_request(
            META_SECRET,
            r#"{"algorithm":"HMAC-SHA256","issued_at":1800000000}"#,
        );
        let zero_user = meta_signed_request(
            META_SECRET,
            r#"{"algorithm":"HMAC-SHA256","issued_at":1800000000,"user_id":"0"}"#,
        );
        let no_time =
            meta_signed_request(META_SECRET, r#"{"algorithm":"HMAC-SHA256","user_id":"1"}"#);
        let not_object = meta_signed_request(META_SECRET, "[1,2]");
        let mut flipped = sig.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{}.{payload}", String::from_utf8(flipped).unwrap());
        let cases: Vec<(Vec<u8>, Refusal)> = vec![
            (
                form(&format!("{sig}.{other_payload}")),
                Refusal::BadSignature,
            ),
            (form(&wrong_secret), Refusal::BadSignature),
            (form(&flipped), Refusal::BadSignature),
            (
                form(&format!("{}.{payload}", &sig[..20])),
                Refusal::BadSignature,
            ),
            (form(&format!("{payload}.{sig}")), Refusal::BadSignature),
            (form(&none_alg), Refusal::UnsupportedAlgorithm),
            (form(&no_user), Refusal::NoUser),
            (form(&zero_user), Refusal::NoUser),
            (
                form(&no_time),
                Refusal::Malformed("the payload gives no signing time"),
            ),
            (
                form(&not_object),
                Refusal::Malformed("the payload is not a base64url JSON object"),
            ),
            (
                form("no-dot"),
                Refusal::Malformed("signed_request is not signature.payload"),
            ),
            (
                form("!!!.abc"),
                Refusal::Malformed("the signature is not base64url"),
            ),
            (b"".to_vec(), Refusal::Malformed("no signed_request field")),
            (
                format!("signed_request={META_SIGNED}&signed_request={META_SIGNED}").into_bytes(),
                Refusal::Malformed("signed_request is given twice"),
            ),
            (
                vec![0xff, 0xfe, 0x00],
                Refusal::Malformed("no signed_request field"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                meta_verify(&body, at(0)),
                Err(want),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        // Good, but signed more than max_age (5 min by default) away from now, either way.
        assert_eq!(
            meta_verify(&form(META_SIGNED), at(301)),
            Err(Refusal::Stale)
        );
        assert_eq!(
            meta_verify(&form(META_SIGNED), at(-301)),
            Err(Refusal::Stale)
        );
        assert!(meta_verify(&form(META_SIGNED), at(300)).is_ok());
    }

    #[test]
    fn a_tiktok_signature_is_checked_over_t_dot_body() {
        assert_eq!(
            user(tiktok_verify(Some(TIKTOK_HEADER), TIKTOK_BODY, at(10))),
            Ok("act.example12345Example12345Example".into())
        );
        // Elements in another order, with spaces, and unknown ones, are read as the docs say:
        // split on ",", then on "=".
        let (t, s) = TIKTOK_HEADER.split_once(',').unwrap();
        let reordered = format!("{s}, v=1, {t}");
        assert!(tiktok_verify(Some(&reordered), TIKTOK_BODY, at(0)).is_ok());
        let upper = TIKTOK_HEADER
            .to_uppercase()
            .replace("T=", "t=")
            .replace("S=", "s=");
        assert!(
            tiktok_verify(Some(&upper), TIKTOK_BODY, at(0)).is_ok(),
            "hex in capitals"
        );

        let other_t = TIKTOK_HEADER.replace("t=1800000000", "t=1800000001");
        let tampered = TIKTOK_BODY.replace("act.example", "act.attacker");
        let cases: Vec<(Option<&str>, &str, Refusal)> = vec![
            (Some(&other_t), TIKTOK_BODY, Refusal::BadSignature),
            (Some(TIKTOK_HEADER), &tampered, Refusal::BadSignature),
            (None, TIKTOK_BODY, Refusal::Malformed("no signature header")),
            (
                Some("t=1800000000"),
                TIKTOK_BODY,
                Refusal::Malformed("the signature header lacks t= or s="),
            ),
            (
                Some("t=soon,s=00"),
                TIKTOK_BODY,
                Refusal::Malformed("t= is not a Unix time"),
            ),
            (
                Some("t=1800000000,s=abc"),
                TIKTOK_BODY,
                Refusal::Malformed("s= is not 64 hex digits"),
            ),
        ];
        for (header, body, want) in cases {
            assert_eq!(tiktok_verify(header, body, at(0)), Err(want), "{header:?}");
        }
        let wrong_secret = tiktok_signature(b"nope", 1_800_000_000, TIKTOK_BODY.as_bytes());
        assert_eq!(
            tiktok_verify(Some(&wrong_secret), TIKTOK_BODY, at(0)),
            Err(Refusal::BadSignature)
        );
        // A good signature on a body that is not JSON, or names no user.
        let h = tiktok_signature(TIKTOK_SECRET, 1_800_000_000, b"hello");
        assert_eq!(
            tiktok_verify(Some(&h), "hello", at(0)),
            Err(Refusal::Malformed("the body is not a JSON object"))
        );
        let body = r#"{"event":"authorization.removed"}"#;
        let h = tiktok_signature(TIKTOK_SECRET, 1_800_000_000, body.as_bytes());
        assert_eq!(tiktok_verify(Some(&h), body, at(0)), Err(Refusal::NoUser));
    }

    #[test]
    fn a_stale_tiktok_timestamp_is_refused_and_other_events_change_nothing() {
        assert_eq!(
            tiktok_verify(Some(TIKTOK_HEADER), TIKTOK_BODY, at(301)),
            Err(Refusal::Stale)
        );
        assert_eq!(
            tiktok_verify(Some(TIKTOK_HEADER), TIKTOK_BODY, at(-301)),
            Err(Refusal::Stale),
            "a timestamp from the future is no better"
        );
        let body = r#"{"client_key":"k","event":"video.publish.completed","create_time":1800000000,"user_openid":"u","content":"{}"}"#;
        let h = tiktok_signature(TIKTOK_SECRET, 1_800_000_000, body.as_bytes());
        match tiktok_verify(Some(&h), body, at(0)) {
            Ok(Verified::OtherEvent { event, .. }) => assert_eq!(event, "video.publish.completed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_callback_is_accepted_once_while_it_could_be_fresh() {
        let mut seen = SeenSignatures::new(2);
        let (a, b, c) = (ReplayKey([1; 32]), ReplayKey([2; 32]), ReplayKey([3; 32]));
        assert!(seen.first_time(a, at(300), at(0)));
        assert!(!seen.first_time(a, at(300), at(10)), "a replay");
        seen.forget(&a);
        assert!(
            seen.first_time(a, at(300), at(20)),
            "forgotten after a failure"
        );
        assert!(seen.first_time(b, at(100), at(20)));
        // Full: the one that expires soonest goes.
        assert!(seen.first_time(c, at(400), at(30)));
        assert_eq!(seen.len(), 2);
        assert!(!seen.first_time(a, at(300), at(40)));
        assert!(!seen.first_time(c, at(400), at(40)));
        // Past its freshness it is no longer held against anyone (the stale check refuses it).
        assert!(seen.first_time(a, at(900), at(301)));
    }

    #[test]
    fn the_table_is_checked() {
        assert!(meta().problems().is_empty());
        assert!(tiktok().problems().is_empty());
        let mut m = meta();
        m.issued_at = None;
        m.user_id = "user_id".into();
        let keys: Vec<_> = m.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["user_id", "issued_at"]);
        let mut t = tiktok();
        t.issued_at = Some("/t".into());
        t.events.clear();
        t.max_age = Duration::ZERO;
        let keys: Vec<_> = t.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["issued_at", "events", "max_age"]);
        assert!(
            toml::from_str::<DeauthorizeSpec>("kind = \"carrier_pigeon\"\nuser_id = \"/u\"")
                .is_err()
        );
    }

    #[test]
    fn no_refusal_and_no_debug_output_carries_the_request() {
        let d = match meta_verify(&form(META_SIGNED), at(0)).unwrap() {
            Verified::Deauthorized(d) => d,
            other => panic!("{other:?}"),
        };
        let (sig, _) = META_SIGNED.split_once('.').unwrap();
        assert!(!format!("{d:?}").contains(sig));
        for r in [
            Refusal::BadSignature,
            Refusal::Malformed("x"),
            Refusal::Stale,
            Refusal::NoUser,
            Refusal::Replayed,
            Refusal::UnsupportedAlgorithm,
        ] {
            assert!(!r.to_string().contains(sig));
        }
    }
}
