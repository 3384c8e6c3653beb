//! Secrets in memory: a value that cannot be printed, logged or serialised by accident.
//!
//! `Secret` has no `Display` and no `Serialize`; its `Debug` prints `Secret([redacted])`. The only
//! way to the text is [`Secret::expose`], which is easy to find in review. Memory is zeroed on drop.

use std::fmt;
use zeroize::Zeroize;

/// A token, refresh token, client secret, API key or key material.
#[derive(Clone)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a value. Prefer moving the `String` in so that no unzeroed copy is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_boxed_str())
    }

    /// The secret text. Every call site is a place where the secret leaves its wrapper: keep them
    /// few (building an outbound request, encrypting for storage, comparing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to show).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last four characters behind an ellipsis (`…a1b2`), for a person who needs to tell two
    /// tokens apart. Secrets shorter than 16 characters show nothing, so the hint never gives away a
    /// meaningful share of the value.
    pub fn hint(&self) -> String {
        let n = self.0.chars().count();
        if n < 16 {
            return "…".to_string();
        }
        let tail: String = self.0.chars().skip(n - 4).collect();
        format!("…{tail}")
    }

    /// Compares in constant time (for API keys and state values).
    pub fn ct_eq(&self, other: &str) -> bool {
        use subtle::ConstantTimeEq;
        let a = self.0.as_bytes();
        let b = other.as_bytes();
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.expose())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// Deserialising a secret is allowed (configuration files carry client secrets); serialising is not.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("very-secret-token-value-123");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn hint_shows_only_the_tail_of_long_values() {
        assert_eq!(Secret::new("abcdefghijklmnopqrstuvwxyz").hint(), "…wxyz");
        assert_eq!(Secret::new("short").hint(), "…");
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
        assert!(Secret::new("key").ct_eq("key"));
    }
}
