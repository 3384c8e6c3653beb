//! The webhook signature (Standard Webhooks, `v1,base64(HMAC-SHA256(id.timestamp.body))`): the
//! verifier accepts what the signer produced, among any other entries, and refuses it after a
//! change of one bit in the key, the id, the timestamp, the body or the signature. Any header
//! and any `whsec_` secret are read without a panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokenwarden_core::webhook::{secret_from_bytes, secret_key, sign, verify};

#[derive(Debug, Arbitrary)]
struct Input {
    key: Vec<u8>,
    msg_id: String,
    timestamp: i64,
    body: String,
    /// Other entries in the header, before and after ours.
    before: Vec<String>,
    after: Vec<String>,
    /// Which bit of what to change.
    what: u8,
    bit: u32,
    /// Anything a receiver might be sent as a header or a secret.
    header: String,
    secret: String,
}

/// `s` with one bit changed, when that is still text.
fn flip_str(s: &str, bit: u32) -> Option<String> {
    let mut b = s.as_bytes().to_vec();
    if b.is_empty() {
        return None;
    }
    let bit = bit as usize % (b.len() * 8);
    b[bit / 8] ^= 1 << (bit % 8);
    String::from_utf8(b).ok()
}

fuzz_target!(|i: Input| {
    let sig = sign(&i.key, &i.msg_id, i.timestamp, &i.body);
    assert!(verify(&i.key, &i.msg_id, i.timestamp, &i.body, &sig));
    let mut entries = i.before.clone();
    entries.push(sig.clone());
    entries.extend(i.after.iter().cloned());
    assert!(verify(&i.key, &i.msg_id, i.timestamp, &i.body, &entries.join(" ")));

    match i.what % 5 {
        0 if !i.key.is_empty() => {
            let mut key = i.key.clone();
            let bit = i.bit as usize % (key.len() * 8);
            key[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify(&key, &i.msg_id, i.timestamp, &i.body, &sig), "key bit {bit}");
        }
        1 => {
            if let Some(id) = flip_str(&i.msg_id, i.bit) {
                assert!(!verify(&i.key, &id, i.timestamp, &i.body, &sig), "id {id:?}");
            }
        }
        2 => {
            let ts = i.timestamp ^ (1i64 << (i.bit % 64));
            assert!(!verify(&i.key, &i.msg_id, ts, &i.body, &sig), "timestamp {ts}");
        }
        3 => {
            if let Some(body) = flip_str(&i.body, i.bit) {
                assert!(!verify(&i.key, &i.msg_id, i.timestamp, &body, &sig), "body {body:?}");
            }
        }
        _ => {
            if let Some(s) = flip_str(&sig, i.bit) {
                assert!(!verify(&i.key, &i.msg_id, i.timestamp, &i.body, &s), "signature {s:?}");
            }
        }
    }

    // Arbitrary headers and secrets: no panic; a secret that reads is 24 to 64 bytes.
    let _ = verify(&i.key, &i.msg_id, i.timestamp, &i.body, &i.header);
    if let Ok(k) = secret_key(&i.secret) {
        assert!((24..=64).contains(&k.len()));
    }
    if let Ok(k) = <[u8; 32]>::try_from(&i.key[..]) {
        assert_eq!(secret_key(&secret_from_bytes(&k)).as_deref(), Ok(&k[..]));
    }
});
