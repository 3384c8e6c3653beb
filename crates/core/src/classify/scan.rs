//! One pass over a JSON text that answers the classifier's first question about a success's body:
//! is it JSON that names none of the keys any lookup could need? Most answers are successes with
//! no envelope, and checking them with `serde_json` (a scan of every string for the keys, then a
//! parse into `IgnoredAny`) was the largest part of classifying them (issue 19).
//!
//! The answer is only ever "yes, certainly" or "ask `serde_json`": anything this does not read
//! with certainty (a backslash, a byte outside ASCII, nesting deeper than [`MAX_DEPTH`]) is left to
//! the full reading, which is what every body got before. So it accepts a subset of what
//! `serde_json::from_slice::<IgnoredAny>` accepts, and the tests compare the two.

/// The object keys a lookup can need ([`Classifier::json_keys`](super::Classifier)), grouped by
/// length so that a string is compared only with the keys as long as it is: most are turned
/// down by their length alone.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// Sorted by length, then bytes; without repeats.
    keys: Vec<String>,
    /// `keys[at[n]..at[n + 1]]` are the keys `n` bytes long, for `n` < [`SHORT`]; the rest
    /// (`keys[at[SHORT]..]`) are longer.
    at: [usize; SHORT + 1],
}

/// Keys shorter than this have a group of their own.
const SHORT: usize = 64;

impl Keys {
    /// `keys`, in any order.
    pub(crate) fn new(mut keys: Vec<String>) -> Keys {
        keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        keys.dedup();
        let mut at = [0; SHORT + 1];
        for (n, slot) in at.iter_mut().enumerate() {
            *slot = keys.partition_point(|k| k.len() < n);
        }
        Keys { keys, at }
    }

    /// The keys, by length.
    pub(crate) fn as_slice(&self) -> &[String] {
        &self.keys
    }

    /// Whether `s` is one of the keys, byte for byte.
    pub(crate) fn contains(&self, s: &[u8]) -> bool {
        let group = match s.len() {
            n if n < SHORT => &self.keys[self.at[n]..self.at[n + 1]],
            _ => &self.keys[self.at[SHORT]..],
        };
        group.iter().any(|k| k.as_bytes() == s)
    }
}

/// Deeper nesting is left to `serde_json` (whose own limit is 128).
pub(crate) const MAX_DEPTH: u32 = 64;

/// Whether `json` is, certainly, one JSON value (white space around it allowed) in which no
/// object key is one of `keys`. `false` means "not known": it may still be JSON, and may still
/// name no key.
pub(crate) fn names_no_key(json: &[u8], keys: &Keys) -> bool {
    let mut s = Scanner { b: json, i: 0 };
    s.value_names_no_key(keys).is_some()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The value, then only white space to the end. `None`: not certainly JSON, or a key named.
    fn value_names_no_key(&mut self, keys: &Keys) -> Option<()> {
        // The open containers, innermost last: bit `d` set when the one at depth `d` is an
        // object.
        let mut objects: u64 = 0;
        let mut depth: u32 = 0;
        'value: loop {
            self.skip_ws();
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let object = open == b'{';
                    if object {
                        objects |= 1 << depth;
                    } else {
                        objects &= !(1 << depth);
                    }
                    depth += 1;
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        depth -= 1;
                    } else if object {
                        self.key(keys)?;
                        continue 'value;
                    } else {
                        continue 'value;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: the end, or what its container expects next.
            loop {
                self.skip_ws();
                if depth == 0 {
                    return (self.i == self.b.len()).then_some(());
                }
                let object = objects & (1 << (depth - 1)) != 0;
                match (self.peek()?, object) {
                    (b',', true) => {
                        self.i += 1;
                        self.skip_ws();
                        self.key(keys)?;
                        continue 'value;
                    }
                    (b',', false) => {
                        self.i += 1;
                        continue 'value;
                    }
                    (b'}', true) | (b']', false) => {
                        self.i += 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// An object's key (not one of `keys`) and its colon.
    fn key(&mut self, keys: &Keys) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        self.string()?;
        if keys.contains(&self.b[start..self.i - 1]) {
            return None;
        }
        self.skip_ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        Some(())
    }

    /// A string without escapes, in ASCII, with no control character; `i` after its closing
    /// quote.
    #[inline]
    fn string(&mut self) -> Option<()> {
        let rest = self.b.get(self.i + 1..)?;
        let n = stop(rest)?;
        if rest[n] != b'"' {
            return None;
        }
        self.i += n + 2;
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

/// Whether a string stops at `c`: its closing quote, or something this does not read (a
/// backslash, a control character, a byte outside ASCII).
fn stops(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)
}

/// Where the first byte that [`stops`] a string is, eight bytes at a time: most of a body is
/// its strings.
fn stop(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each zero byte of `x`, and perhaps of bytes above the first such one
    // (a borrow), never below it: the lowest bit set is exact.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(chunk) = b.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let found = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            // Below 0x20 (the same borrow, the same exact lowest bit), or 0x80 and above.
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | (w & HIGH);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    b[at..].iter().position(|&c| stops(c)).map(|n| at + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn keys(k: &[&str]) -> Keys {
        Keys::new(k.iter().map(|s| s.to_string()).collect())
    }

    /// Whether some object in `v` has a key in `keys`.
    fn has_key(v: &Value, keys: &Keys) -> bool {
        match v {
            Value::Object(m) => m
                .iter()
                .any(|(k, v)| keys.contains(k.as_bytes()) || has_key(v, keys)),
            Value::Array(a) => a.iter().any(|v| has_key(v, keys)),
            _ => false,
        }
    }

    /// What the fast answer promises: `serde_json` reads the text (as the classifier's
    /// `IgnoredAny` check does), and where it builds a tree, no object in it has one of the keys.
    fn promise_holds(text: &[u8], k: &Keys) {
        if names_no_key(text, k) {
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok(),
                "said JSON, serde_json disagrees: {:?}",
                String::from_utf8_lossy(text)
            );
            if let Ok(v) = serde_json::from_slice::<Value>(text) {
                assert!(!has_key(&v, k), "a key was named: {v}");
            }
        }
    }

    #[test]
    fn reads_what_successes_look_like() {
        let k = keys(&["code", "error", "error_code", "sub_request_status"]);
        for ok in [
            r#"{"request_status":"SUCCESS","request_id":"5f1c","me":{"id":"8a7f","display_name":"bench"}}"#,
            r#"  {"data": [1, -2.5e+10, 0.5, true, false, null, {}, [], [[]], {"a": {"b": []}}]} "#,
            r#"[]"#,
            r#""a string""#,
            "-0",
            "0.0e0",
            "{\n\t\"k\" : \"v\" ,\r\n \"n\":1E-3}",
            // A key's name as a value names no key.
            r#"{"message": "code", "list": ["error"]}"#,
        ] {
            assert!(names_no_key(ok.as_bytes(), &k), "{ok}");
            promise_holds(ok.as_bytes(), &k);
        }
    }

    #[test]
    fn names_a_key_or_is_not_certain() {
        let k = keys(&["code", "error", "error_code", "sub_request_status"]);
        for unsure in [
            // A key anywhere, at any depth.
            r#"{"code": 0}"#,
            r#"{"a": 1, "error": {}}"#,
            r#"[{"x": [{"sub_request_status": "ERROR"}]}]"#,
            // Escapes and non-ASCII are left to serde_json.
            r#"{"co\u0064e": 0}"#,
            r#"{"a": "\n"}"#,
            "{\"a\": \"caf\u{e9}\"}",
            // Not JSON.
            "",
            "   ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1: 2}",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "-",
            "tru",
            "nul",
            "True",
            "{} {}",
            "[]x",
            "\"a\tb\"",
            "\"unterminated",
            "<html></html>",
            "{\"a\":[}",
            "[{]}",
        ] {
            assert!(!names_no_key(unsure.as_bytes(), &k), "{unsure:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_left_to_serde_json() {
        let k = keys(&["code"]);
        let depth = MAX_DEPTH as usize;
        let at_limit = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(names_no_key(at_limit.as_bytes(), &k));
        let over = format!("{}{}", "[".repeat(depth + 1), "]".repeat(depth + 1));
        assert!(!names_no_key(over.as_bytes(), &k));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(names_no_key(objects.as_bytes(), &k));
        promise_holds(objects.as_bytes(), &k);
    }

    #[test]
    fn keys_of_every_length_are_found() {
        for n in [1usize, 7, 63, 64, 65, 200] {
            let key = "k".repeat(n);
            let k = keys(&[&key, "other"]);
            let body = format!("{{\"a\": {{\"{key}\": 1}}}}");
            assert!(!names_no_key(body.as_bytes(), &k), "{n}");
            // One byte shorter or longer is another key.
            let near = format!(
                "{{\"{}\": 1, \"{}\": 2}}",
                "k".repeat(n + 1),
                "k".repeat(n - 1)
            );
            assert!(names_no_key(near.as_bytes(), &k), "{n}");
        }
        // No key at all: any JSON.
        assert!(names_no_key(br#"{"a": {"b": 1}}"#, &Keys::new(Vec::new())));
    }

    #[test]
    fn the_stop_is_found_whatever_the_byte_and_where() {
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    let want = b.iter().position(|&c| stops(c));
                    assert_eq!(stop(&b), want, "{len} {at} {c}");
                    // A second stop after the first changes nothing.
                    if at + 1 < len {
                        b[at + 1] = 0;
                        assert_eq!(stop(&b), b.iter().position(|&c| stops(c)), "{len} {at} {c}");
                    }
                }
            }
        }
    }

    /// JSON-like texts: the pieces JSON is made of, and a few that break it.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"",
            "\"code\"",
            "\"a\"",
            "\"error\"",
            "0",
            "-",
            "1",
            "9",
            ".",
            "e",
            "E",
            "+",
            "true",
            "false",
            "null",
            "\\",
            "\u{e9}",
            "\t",
            "x",
            "\"\":",
            "\u{1}",
        ]);
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    /// Texts that are JSON (serialized trees), some naming a key deep inside.
    fn json_values() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z_]{0,8}".prop_map(Value::String),
        ];
        let tree = leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["code", "error", "a", "id", "data", "b"]),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        });
        (tree, any::<bool>()).prop_map(|(v, pretty)| {
            if pretty {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            } else {
                v.to_string()
            }
        })
    }

    proptest! {
        #[test]
        fn the_stop_is_the_first_byte_that_stops(b in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(stop(&b), b.iter().position(|&c| stops(c)));
        }

        #[test]
        fn never_says_more_than_serde_json(text in jsonish()) {
            promise_holds(text.as_bytes(), &keys(&["code", "error"]));
        }

        #[test]
        fn agrees_with_serde_json_on_json(text in json_values()) {
            let k = keys(&["code", "error"]);
            promise_holds(text.as_bytes(), &k);
            // On ASCII JSON without escapes it is certain: it says yes exactly when no key is
            // named.
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if text.is_ascii() && !text.contains('\\') {
                prop_assert_eq!(names_no_key(text.as_bytes(), &k), !has_key(&v, &k));
            }
        }
    }
}
