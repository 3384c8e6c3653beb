//! Reading a body defensively: what kind it is, its JSON (repaired if truncated), the envelope's
//! fields, and a message fit to show a person.

use super::scan::{self, Keys};
use super::{MAX_CLASSIFIED_BODY, ResponseView};
use crate::provider::{BodyKind, EnvelopeSpec};
use serde_json::Value;

/// What was read from a body.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) kind: BodyKind,
    pub(super) json: Option<Value>,
    /// For non-JSON bodies: the HTML `<title>` or the leading text.
    pub(super) text_message: Option<String>,
}

impl Body {
    /// Reads a body. `keys`, when given, are every object key a lookup of the classifier can
    /// need ([`Classifier::json_keys`](super::Classifier)): a JSON body that names none of them
    /// is only checked to be JSON, and read as an empty object, which every lookup finds as
    /// empty as it would have found the whole (issue 19: most answers are successes that carry
    /// no envelope, and building their tree was a twentieth of a proxied call).
    pub(super) fn read(resp: &ResponseView<'_>, keys: Option<&Keys>) -> Body {
        let truncated = resp.body.len() > MAX_CLASSIFIED_BODY;
        let raw = &resp.body[..resp.body.len().min(MAX_CLASSIFIED_BODY)];
        let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Body {
                kind: BodyKind::Empty,
                json: None,
                text_message: None,
            };
        }
        // One pass answers for most bodies; what it is not sure of, `serde_json` reads.
        if matches!(trimmed[0], b'{' | b'[')
            && keys.is_some_and(|k| {
                scan::names_no_key(trimmed, k)
                    || !names_any(trimmed, k.as_slice())
                        && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok()
            })
        {
            return Body {
                kind: BodyKind::Json,
                json: Some(Value::Object(serde_json::Map::new())),
                text_message: None,
            };
        }
        if matches!(trimmed[0], b'{' | b'[') {
            let json = serde_json::from_slice::<Value>(trimmed)
                .ok()
                .or_else(|| truncated.then(|| repair_truncated_json(trimmed)).flatten());
            if let Some(json) = json {
                return Body {
                    kind: BodyKind::Json,
                    json: Some(json),
                    text_message: None,
                };
            }
        }
        let text = String::from_utf8_lossy(&trimmed[..trimmed.len().min(4096)]);
        let content_type_html = resp
            .header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("text/html"));
        let head = text.to_ascii_lowercase();
        if head.starts_with('<')
            && (head.contains("<html")
                || head.contains("<!doctype")
                || head.contains("<body")
                || head.contains("<title"))
            || content_type_html && head.starts_with('<')
        {
            return Body {
                kind: BodyKind::Html,
                json: None,
                text_message: html_title(&text),
            };
        }
        let line: String = text.chars().take(300).collect();
        Body {
            kind: BodyKind::Text,
            json: None,
            text_message: Some(line.trim().to_string()),
        }
    }
}

/// A redirect back to the app whose `Location` carries error parameters (RFC 6749 §4.1.2.1
/// `error`, `error_description`; Meta and Threads also send `error_code`, `error_message`,
/// `error_reason`), as the JSON object those parameters make. Only 3xx answers count.
pub(super) fn redirect_error(resp: &ResponseView<'_>) -> Option<Value> {
    if !(300..=399).contains(&resp.status) {
        return None;
    }
    let location = resp.header("location")?;
    let base = url::Url::parse("http://redirect.invalid/").ok()?;
    let url = base.join(location.trim()).ok()?;
    let mut out = serde_json::Map::new();
    // The query, else the fragment (the implicit flow answers in the fragment).
    let params: Vec<(String, String)> = match url.query() {
        Some(_) => url.query_pairs().into_owned().collect(),
        None => url::form_urlencoded::parse(url.fragment().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    };
    for (k, v) in params {
        if matches!(
            k.as_str(),
            "error" | "error_description" | "error_reason" | "error_code" | "error_message"
        ) && !out.contains_key(&k)
        {
            out.insert(k, Value::String(v));
        }
    }
    (out.contains_key("error") || out.contains_key("error_code")).then_some(Value::Object(out))
}

fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let end = lower[open_end..].find("</title")? + open_end;
    let t = html
        .get(open_end..end)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!t.is_empty()).then_some(t)
}

/// Whether a JSON text may hold one of `keys` as an object key: true when any of its strings is
/// one of them, and whenever it has a backslash (a key can be written with escapes, which this
/// does not read). Without backslashes every string is the text between two consecutive quotes.
fn names_any(json: &[u8], keys: &[String]) -> bool {
    if json.contains(&b'\\') {
        return true;
    }
    json.split(|b| *b == b'"')
        .skip(1)
        .step_by(2)
        .any(|s| keys.iter().any(|k| k.as_bytes() == s))
}

/// The fields of one envelope found in a body.
#[derive(Debug)]
pub(super) struct Envelope {
    pub(super) code: String,
    pub(super) subcode: Option<String>,
    pub(super) message: Option<String>,
    pub(super) trace_id: Option<String>,
    pub(super) transient: bool,
}

impl Envelope {
    /// Reads `spec` from `json`; `None` unless its code path holds a non-empty scalar (with
    /// `keyed`, an object of one member holding one).
    pub(super) fn read(json: &Value, spec: &EnvelopeSpec) -> Option<Envelope> {
        let (code, family) = if spec.keyed {
            let (k, v) = lookup_where(json, &spec.code, &|v| keyed(v).is_some()).and_then(keyed)?;
            (v, Some(k))
        } else {
            (
                lookup_where(json, &spec.code, &|v| scalar(v).is_some()).and_then(scalar)?,
                None,
            )
        };
        let field = |p: &Option<String>| {
            p.as_deref()
                .and_then(|p| lookup_where(json, p, &|v| scalar(v).is_some()))
                .and_then(scalar)
        };
        Some(Envelope {
            code,
            subcode: family.or_else(|| field(&spec.subcode)),
            // `details|detail`: the first alternative that holds a value (Amazon Ads' 425 body
            // says `detail` where every other answer says `details`).
            message: spec
                .message
                .as_deref()
                .and_then(|m| m.split('|').find_map(|alt| field(&Some(alt.to_string())))),
            trace_id: field(&spec.trace_id),
            transient: spec
                .transient
                .as_deref()
                .and_then(|p| lookup(json, p))
                .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")),
        })
    }
}

/// An object of exactly one member whose value is a scalar: `(key, value)`.
fn keyed(v: &Value) -> Option<(String, String)> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    let (k, v) = m.iter().next()?;
    Some((k.clone(), scalar(v)?))
}

/// Follows a dotted path (`error.error_subcode`; a numeric segment indexes an array, `*` is any
/// element or member): the first value found.
pub(crate) fn lookup<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    lookup_where(json, path, &|_| true)
}

/// Follows a dotted path to the first value that `ok` accepts; `*` tries each array element or
/// object member in order. Depth is bounded by the path, so hostile bodies cannot recurse deep.
pub(crate) fn lookup_where<'a>(
    json: &'a Value,
    path: &str,
    ok: &dyn Fn(&Value) -> bool,
) -> Option<&'a Value> {
    if path.is_empty() {
        return ok(json).then_some(json);
    }
    let (seg, rest) = match path.split_once('.') {
        Some((seg, rest)) => (seg, Some(rest)),
        None => (path, None),
    };
    let next = |v: &'a Value| match rest {
        Some(r) => lookup_where(v, r, ok),
        None => ok(v).then_some(v),
    };
    match (seg, json) {
        // At most the first 64 children are tried: enough for any envelope, bounded for any body.
        ("*", Value::Array(a)) => a.iter().take(64).find_map(next),
        ("*", Value::Object(m)) => m.values().take(64).find_map(next),
        (_, Value::Object(m)) => m.get(seg).and_then(next),
        (_, Value::Array(a)) => seg
            .parse::<usize>()
            .ok()
            .and_then(|i| a.get(i))
            .and_then(next),
        _ => None,
    }
}

/// A string, number or boolean as text; nothing for null, objects, arrays and empty strings.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Makes a platform's message fit to show and store: at most 300 characters, no control
/// characters, and any long opaque run (a token echoed back, a signed URL) replaced by
/// `[redacted]`, so a secret reflected by a platform never reaches a log, event or page.
pub fn scrub_message(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    let mut out = String::with_capacity(clean.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.chars().any(|c| c.is_ascii_digit());
        let letters = run.chars().any(|c| c.is_ascii_alphabetic());
        if run.chars().count() >= 24 && digits && letters {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in clean.chars() {
        if c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '~' | '+' | '/' | '=' | '%' | '|')
        {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest trace id shown as it is. Platforms' trace ids are short: TikTok's `request_id` and
/// `log_id` are about 34 characters (a timestamp and hex digits), Meta's `fbtrace_id` about 11 to
/// 27, a UUID 36. The field is the platform's own id for the call, never an echo of what was sent
/// (unlike a message, which can quote a token back); the cap and the character set keep out
/// anything else that lands there.
const TRACE_ID_MAX: usize = 64;

/// Makes a platform's trace id fit to show: an id its support can look up is kept whole, since it
/// is not a secret (the general message scrub would hide TikTok's, a long run of digits and
/// letters); anything longer or not shaped like an id is scrubbed as a message.
pub(crate) fn scrub_trace_id(text: &str) -> String {
    let id = text.trim();
    if !id.is_empty()
        && id.chars().count() <= TRACE_ID_MAX
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        id.to_string()
    } else {
        scrub_message(id)
    }
}

/// Turns the prefix of a truncated JSON document into a complete one by cutting at the last point
/// where a value ended and closing what is open, so the fields that arrived still count.
/// `None` if nothing usable arrived or nesting is deeper than serde_json would accept anyway.
pub fn repair_truncated_json(prefix: &[u8]) -> Option<Value> {
    const MAX_DEPTH: usize = 128;
    let mut stack: Vec<u8> = Vec::new();
    let mut in_str = false;
    let mut escaped = false;
    let mut safe: Option<(usize, Vec<u8>)> = None;
    for (i, &b) in prefix.iter().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                stack.push(b);
                if stack.len() > MAX_DEPTH {
                    return None;
                }
            }
            b'}' | b']' => {
                stack.pop();
                if stack.is_empty() {
                    return serde_json::from_slice(&prefix[..=i]).ok();
                }
                safe = Some((i + 1, stack.clone()));
            }
            b',' => safe = Some((i, stack.clone())),
            _ => {}
        }
    }
    let (cut, open) = safe?;
    let mut doc = prefix[..cut].to_vec();
    doc.extend(
        open.iter()
            .rev()
            .map(|&c| if c == b'{' { b'}' } else { b']' }),
    );
    serde_json::from_slice(&doc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_a_cut_off_document() {
        let v = repair_truncated_json(
            br#"{"code":40100,"message":"slow down","data":{"list":[{"a":1},{"a":2},{"a":"#,
        )
        .unwrap();
        assert_eq!(v["code"], 40100);
        assert_eq!(v["data"]["list"].as_array().unwrap().len(), 2);
        assert!(repair_truncated_json(br#"{"code":4"#).is_none());
        assert!(repair_truncated_json(&[b'['; 10_000]).is_none());
    }

    #[test]
    fn scrubs_tokens_and_control_characters() {
        let m = scrub_message("bad token act.ABCDEFGH12345678abcdefgh99 given\r\n\x1b[31m");
        assert!(!m.contains("ABCDEFGH"), "{m}");
        assert!(m.contains("[redacted]"));
        assert!(!m.contains('\x1b'));
        assert_eq!(
            scrub_message("Session has expired on Tuesday, 01-Jan-20"),
            "Session has expired on Tuesday, 01-Jan-20"
        );
    }

    #[test]
    fn trace_ids_are_kept_and_tokens_are_not() {
        // TikTok's request_id as TikTok sends it, the sandbox's, and a Meta fbtrace_id: whole.
        for id in [
            "202611231022337E1E7C1F0B2B3C4D5E6F",
            "20261204140825FE062F311AFB2DF0083BB434",
            "AbCdEf-12_xYz",
            "r1",
        ] {
            assert_eq!(scrub_trace_id(id), id);
        }
        // Anything not shaped like an id (too long, spaces, other characters): scrubbed as a
        // message, so a token-like run in it is hidden.
        for odd in [
            "EAAGm0PX4ZCpsBAKZC0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789",
            "id with spaces 0123456789abcdefABCDEF0123",
            "snapat.K_bIqaloTZyoQ-ahzXzKtol2BHswsF3pr8zhkp0sHWs/",
        ] {
            assert!(scrub_trace_id(odd).contains("[redacted]"), "{odd}");
        }
        assert!(!scrub_trace_id("a\x1b[31m").contains('\x1b'));
    }

    #[test]
    fn lookup_follows_paths() {
        let v: Value = serde_json::json!({"error":{"code":190,"list":[{"x":"y"}]}});
        assert_eq!(scalar(lookup(&v, "error.code").unwrap()).unwrap(), "190");
        assert_eq!(scalar(lookup(&v, "error.list.0.x").unwrap()).unwrap(), "y");
        assert!(lookup(&v, "error.code.deeper").is_none());
    }

    #[test]
    fn html_title_is_found() {
        assert_eq!(
            html_title("<html><head><TITLE>502 Bad\n Gateway</title>").unwrap(),
            "502 Bad Gateway"
        );
        assert_eq!(html_title("<html>"), None);
    }
}
