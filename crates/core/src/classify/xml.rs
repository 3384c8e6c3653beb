//! A minimal, bounded XML reader for SOAP faults (Microsoft Advertising answers its SOAP errors as
//! `s:Fault` with `detail/AdApiFaultDetail/Errors/AdApiError/Code`, in HTTP 500 and sometimes 200).
//!
//! It is not an XML parser and does not try to be one: it reads elements into a JSON tree that
//! the envelope paths can walk, and gives up (returns `None`) on anything it does not expect. It
//! never expands entities beyond the five predefined ones and numeric character references, and
//! refuses any document with a DOCTYPE, so "billion laughs" and external entities cannot happen.
//! Work is bounded by the input (at most [`super::MAX_CLASSIFIED_BODY`] bytes), [`MAX_DEPTH`]
//! and [`MAX_ELEMENTS`].
//!
//! The tree: an element with child elements is an object keyed by the children's local names
//! (namespace prefixes dropped); only the first of repeated siblings is kept (a fault's first
//! error decides, as `*` paths take the first match in JSON). An element without child elements
//! is its text, trimmed. Attributes, comments, processing instructions and CDATA markers are
//! skipped (CDATA text is kept).

use serde_json::{Map, Value};

/// Deeper documents are not read: a SOAP fault is about eight levels deep.
pub(crate) const MAX_DEPTH: usize = 32;
/// More elements than this and the document is not read.
pub(crate) const MAX_ELEMENTS: usize = 4096;

struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
}

/// Reads `body` as XML into a JSON tree whose root object holds the root element; `None` when it
/// is not well-formed enough, has a DOCTYPE, or exceeds the bounds.
pub(crate) fn to_tree(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if !text.starts_with('<') {
        return None;
    }
    let mut stack: Vec<Frame> = vec![Frame {
        name: String::new(),
        children: Map::new(),
        text: String::new(),
    }];
    let mut elements = 0usize;
    let mut rest = text;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(stack.last_mut()?, rest)?;
            break;
        };
        if lt > 0 {
            push_text(stack.last_mut()?, &rest[..lt])?;
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<?") {
            rest = &after[after.find("?>")? + 2..];
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>")?;
            stack.last_mut()?.text.push_str(&after[..end]);
            rest = &after[end + 3..];
        } else if rest.starts_with("<!") {
            // DOCTYPE (and its entity declarations) is never read.
            return None;
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>')?;
            let name = local(after[..end].trim());
            let frame = stack.pop()?;
            if frame.name != name || stack.is_empty() {
                return None;
            }
            let value = if frame.children.is_empty() {
                Value::String(frame.text.trim().to_string())
            } else {
                Value::Object(frame.children)
            };
            let parent = stack.last_mut()?;
            parent.children.entry(name.to_string()).or_insert(value);
            rest = &after[end + 1..];
        } else {
            let after = &rest[1..];
            let end = tag_end(after)?;
            let inner = &after[..end];
            let self_closing = inner.ends_with('/');
            let inner = inner.trim_end_matches('/');
            let raw_name = inner.split(|c: char| c.is_ascii_whitespace()).next()?;
            if raw_name.is_empty()
                || !raw_name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
            {
                return None;
            }
            elements += 1;
            if elements > MAX_ELEMENTS {
                return None;
            }
            let name = local(raw_name).to_string();
            if self_closing {
                stack
                    .last_mut()?
                    .children
                    .entry(name)
                    .or_insert(Value::String(String::new()));
            } else {
                if stack.len() > MAX_DEPTH {
                    return None;
                }
                stack.push(Frame {
                    name,
                    children: Map::new(),
                    text: String::new(),
                });
            }
            rest = &after[end + 1..];
        }
    }
    // Every element closed, and there was one.
    let root = stack.pop()?;
    (stack.is_empty() && !root.children.is_empty()).then_some(Value::Object(root.children))
}

/// The end of a start tag (`>`), skipping `>` inside quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// The local part of a qualified name (`s:Fault` → `Fault`).
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Adds character data to the open element, decoding the predefined entities and character
/// references; any other `&name;` fails the document (nothing is ever expanded from a DTD).
fn push_text(frame: &mut Frame, raw: &str) -> Option<()> {
    // Text of elements that have children is not kept; no need to decode it, only to check it.
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        frame.text.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10)?;
        let ent = &after[..end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(hex) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    ent.strip_prefix('#')?.parse::<u32>().ok()?
                };
                char::from_u32(n)?
            }
        };
        frame.text.push(c);
        rest = &after[end + 1..];
    }
    frame.text.push_str(rest);
    // A text node is bounded by the body; keep what an envelope could need.
    if frame.text.len() > 8192 {
        let mut cut = 8192;
        while !frame.text.is_char_boundary(cut) {
            cut -= 1;
        }
        frame.text.truncate(cut);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAULT: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h:TrackingId xmlns:h="https://bingads.microsoft.com/Customer/v13">t-1</h:TrackingId></s:Header><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang="en-US">Invalid client data. Check the SOAP fault details for more information. TrackingId: t-1.</faultstring><detail><AdApiFaultDetail xmlns="https://adapi.microsoft.com" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><TrackingId>t-1</TrackingId><Errors><AdApiError><Code>109</Code><Detail i:nil="true"/><ErrorCode>AuthenticationTokenExpired</ErrorCode><Message>Authentication token expired. Please renew it or obtain a new token.</Message></AdApiError><AdApiError><Code>105</Code></AdApiError></Errors></AdApiFaultDetail></detail></s:Fault></s:Body></s:Envelope>"#;

    #[test]
    fn reads_a_soap_fault_by_local_names() {
        let v = to_tree(FAULT.as_bytes()).unwrap();
        let err =
            &v["Envelope"]["Body"]["Fault"]["detail"]["AdApiFaultDetail"]["Errors"]["AdApiError"];
        assert_eq!(err["Code"], "109");
        assert_eq!(err["ErrorCode"], "AuthenticationTokenExpired");
        assert_eq!(err["Detail"], "");
        assert_eq!(v["Envelope"]["Header"]["TrackingId"], "t-1");
    }

    #[test]
    fn decodes_only_predefined_entities() {
        let v = to_tree(b"<a><m>x &lt; y &amp;&#65;&#x42;</m></a>").unwrap();
        assert_eq!(v["a"]["m"], "x < y &AB");
        assert!(to_tree(b"<a><m>&lol;</m></a>").is_none());
    }

    #[test]
    fn refuses_doctype_and_malformed_documents() {
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert!(to_tree(laughs).is_none());
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"</a>",
            b"<a></b>",
            b"not xml",
            b"<>",
            b"<a x=\"1></a>",
            b"",
            b"<a></a><",
        ] {
            assert!(to_tree(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_and_element_count_are_bounded() {
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 2),
            "</a>".repeat(MAX_DEPTH + 2)
        );
        assert!(to_tree(deep.as_bytes()).is_none());
        let wide = format!("<r>{}</r>", "<e/>".repeat(MAX_ELEMENTS + 1));
        assert!(to_tree(wide.as_bytes()).is_none());
        let ok = format!("{}{}", "<a>".repeat(8), "</a>".repeat(8));
        assert!(to_tree(ok.as_bytes()).is_some());
    }

    #[test]
    fn any_bytes_are_read_without_a_panic() {
        let mut seed = 7u64;
        let alphabet = b"<>/a:b= \"'&;#x!-?[]CDATA";
        for _ in 0..20_000 {
            let len = (seed % 40) as usize;
            let mut s = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let _ = to_tree(&s);
        }
    }
}
