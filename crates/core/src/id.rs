//! Validated identifiers. Each is a newtype over a short ASCII string so that an id can be put in
//! a URL path, a log line or a metric label without escaping, and so that one kind of id cannot be
//! passed where another is expected.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {why}")]
pub struct IdError {
    what: &'static str,
    value: String,
    why: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $allowed:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                let why = if value.is_empty() {
                    Some("it is empty")
                } else if value.len() > $max {
                    Some(concat!("it is longer than ", stringify!($max), " characters"))
                } else if !value.chars().all($allowed) {
                    Some($rule)
                } else {
                    None
                };
                match why {
                    Some(why) => {
                        // Never echo a huge or binary value back in full.
                        let shown: String = value.chars().take(80).collect();
                        Err(IdError { what: $what, value: shown, why })
                    }
                    None => Ok(Self(value)),
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        // A map keyed by the id is searched with a `&str` without making an id of it: the
        // derived `Eq`, `Ord` and `Hash` are the `String`'s, as `Borrow` requires.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

fn is_provider_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

id_type!(
    /// A connection: one grant by one account of one platform to one app. Chosen by the user
    /// (e.g. `acme-snap-main`) or generated.
    ConnectionId,
    "connection id",
    128,
    is_key_char,
    "use letters, digits and - _ . : only"
);

id_type!(
    /// A platform definition, e.g. `snapchat`, `tiktok-business`.
    ProviderId,
    "provider id",
    40,
    is_provider_char,
    "use lowercase letters, digits and - only"
);

id_type!(
    /// A registered OAuth app (client) of one provider; a provider may have several.
    AppId,
    "app id",
    128,
    is_key_char,
    "use letters, digits and - _ . : only"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(ConnectionId::parse("acme-snap_1.main:eu").is_ok());
        assert!(ConnectionId::parse("").is_err());
        assert!(ConnectionId::parse("a/b").is_err());
        assert!(ConnectionId::parse("x".repeat(129)).is_err());
        assert!(ProviderId::parse("tiktok-business").is_ok());
        assert!(ProviderId::parse("TikTok").is_err());
        let e = ProviderId::parse("../etc").unwrap_err().to_string();
        assert!(e.contains("provider id"), "{e}");
    }

    #[test]
    fn serde_validates() {
        let ok: ConnectionId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<ConnectionId>("\"a b\"").is_err());
    }
}
