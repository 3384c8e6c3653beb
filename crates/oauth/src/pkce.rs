//! PKCE S256 (RFC 7636): a random verifier, and its SHA-256 challenge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokenwarden_core::secret::Secret;

/// A verifier (kept server-side, never in a URL or log) and the challenge sent on the authorize URL.
#[derive(Debug)]
pub struct Pkce {
    /// 43 characters of base64url from 32 random bytes.
    pub verifier: Secret,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    pub fn generate() -> Pkce {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let verifier = Secret::new(URL_SAFE_NO_PAD.encode(bytes));
        let challenge = challenge_of(verifier.expose());
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(
            super::challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = super::Pkce::generate();
        assert_eq!(p.verifier.len(), 43);
    }
}
