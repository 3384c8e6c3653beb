//! Credentials inside a SOAP envelope (Microsoft Advertising's SOAP services take the token in the
//! `AuthenticationToken` element of the envelope's `Header`, without "Bearer ", and the developer
//! token, customer and account ids beside it).
//!
//! The caller writes the envelope as the platform documents it, with the credential element
//! present but empty (`<AuthenticationToken/>` in the service's namespace); [`fill`] puts the
//! connection's token there. Only the envelope's own header entries (children of
//! `Envelope/Header`) are ever written: an element of the same name anywhere else (inside the
//! `Body`, where a platform might store it and echo it back) is left as the caller wrote it.
//!
//! A minimal XML scanner, not a parser: it tells tags, comments, CDATA and processing instructions
//! apart and keeps track of the element path as far as the header; the platform still validates
//! the envelope. A document type declaration is refused (SOAP forbids it, and it is how entity
//! tricks start).

use std::fmt;

/// One header entry to write: its local name, its value (not yet escaped), and whether it replaces
/// what the caller wrote there (`false`: only an empty or missing entry is filled).
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    /// Local name (`DeveloperToken`).
    pub name: &'a str,
    /// The value, as text (escaped here).
    pub value: &'a str,
    /// Whether the caller's own non-empty value is replaced.
    pub replaces: bool,
}

impl fmt::Debug for Entry<'_> {
    // The value may be a token or the developer token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("replaces", &self.replaces)
            .finish_non_exhaustive()
    }
}

/// Why an envelope could not carry the credential. The texts name elements, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is larger than the proxy holds for a replay, so it could not be rewritten.
    #[error(
        "the SOAP body is larger than the proxy holds (its replay buffer), so the token cannot be \
         written into it"
    )]
    TooLarge,
    /// Not UTF-8, or not well formed as far as it was read.
    #[error("the SOAP body is not well-formed XML ({0})")]
    Malformed(&'static str),
    /// A `<!DOCTYPE …>`.
    #[error("the SOAP body has a document type declaration, which SOAP does not allow")]
    Doctype,
    /// The root is not an `Envelope`, or it has no `Header` before its `Body`.
    #[error(
        "the SOAP body has no <Envelope> with a <Header>; the credential travels in the header"
    )]
    NoHeader,
    /// The header lacks the credential element.
    #[error(
        "the SOAP header has no <{0}> element; send it empty (in the service's namespace) and \
         tokenwarden fills it with the connection's token"
    )]
    NoCredentialElement(String),
}

/// An element found among the header's entries.
struct Found {
    local: String,
    /// The qualified name as written (`h:DeveloperToken`).
    qname: String,
    /// The namespace declaration on its start tag, if any (`xmlns="…"` or `xmlns:h="…"`).
    xmlns: Option<String>,
    /// Byte range of the whole element (start tag to end tag).
    whole: (usize, usize),
    /// Byte range of its content (empty for `<a/>`, which `whole` then covers).
    content: Option<(usize, usize)>,
}

/// Writes `credential` (required) and `others` into the envelope's header entries.
///
/// The credential always replaces what is there. Each of `others` fills an entry of its name that
/// is empty (or replaces it, with `replaces`); where the header has none, it is added right after
/// the credential element, with the same prefix and namespace declaration (a service's header
/// entries share its namespace).
pub fn fill(
    body: &[u8],
    credential: Entry<'_>,
    others: &[Entry<'_>],
) -> Result<Vec<u8>, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|_| EnvelopeError::Malformed("not UTF-8"))?;
    let found = header_entries(text)?;
    let Some(cred) = found.iter().position(|f| f.local == credential.name) else {
        return Err(EnvelopeError::NoCredentialElement(
            credential.name.to_string(),
        ));
    };
    // (start, end, replacement), in document order once sorted.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let put = |f: &Found, value: &str, edits: &mut Vec<(usize, usize, String)>| {
        let v = escape(value);
        match f.content {
            Some((s, e)) => edits.push((s, e, v)),
            None => {
                let (s, e) = f.whole;
                // `<h:X a="1"/>` → `<h:X a="1">v</h:X>`
                let open = text[s..e]
                    .trim_end_matches('>')
                    .trim_end()
                    .trim_end_matches('/');
                edits.push((s, e, format!("{open}>{v}</{}>", f.qname)));
            }
        }
    };
    for f in found.iter().filter(|f| f.local == credential.name) {
        put(f, credential.value, &mut edits);
    }
    let mut added = String::new();
    for o in others.iter().filter(|o| o.name != credential.name) {
        let mine: Vec<&Found> = found.iter().filter(|f| f.local == o.name).collect();
        if mine.is_empty() {
            let c = &found[cred];
            let xmlns = c
                .xmlns
                .as_deref()
                .map(|x| format!(" {x}"))
                .unwrap_or_default();
            let qname = match c.qname.split_once(':') {
                Some((prefix, _)) => format!("{prefix}:{}", o.name),
                None => o.name.to_string(),
            };
            added.push_str(&format!("<{qname}{xmlns}>{}</{qname}>", escape(o.value)));
            continue;
        }
        for f in mine {
            let empty = f.content.is_none_or(|(s, e)| text[s..e].trim().is_empty());
            if empty || o.replaces {
                put(f, o.value, &mut edits);
            }
        }
    }
    if !added.is_empty() {
        let at = found[cred].whole.1;
        edits.push((at, at, added));
    }
    edits.sort_by_key(|(s, e, _)| (*s, *e));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for (s, e, v) in edits {
        out.push_str(&text[at..s]);
        out.push_str(&v);
        at = e;
    }
    out.push_str(&text[at..]);
    Ok(out.into_bytes())
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A (qualified) XML name as far as this scanner needs: it starts with a letter or `_` and holds
/// only letters, digits, `_`, `-`, `.` and `:` (non-ASCII letters included), so an end tag written
/// from it is well formed.
fn xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || "_-.:".contains(c))
}

fn local(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

/// The children of `Envelope/Header`, read up to the end of the header.
fn header_entries(text: &str) -> Result<Vec<Found>, EnvelopeError> {
    use EnvelopeError::Malformed;
    let b = text.as_bytes();
    let mut i = 0;
    // Open elements: (qualified name, start of the start tag, end of the start tag).
    let mut stack: Vec<(String, usize, usize)> = Vec::new();
    let mut found = Vec::new();
    let mut saw_header = false;
    while let Some(off) = text[i..].find('<') {
        let s = i + off;
        let rest = &text[s..];
        // Skipped whole: comments, CDATA and processing instructions (`(opening, closing)`).
        let skipped = [
            ("<!--", "-->", "an unclosed comment"),
            ("<![CDATA[", "]]>", "an unclosed CDATA section"),
            ("<?", "?>", "an unclosed processing instruction"),
        ]
        .into_iter()
        .find_map(|(open, close, what)| {
            rest.strip_prefix(open).map(|after| {
                after
                    .find(close)
                    .map(|at| s + open.len() + at + close.len())
                    .ok_or(Malformed(what))
            })
        });
        if let Some(next) = skipped {
            i = next?;
            continue;
        }
        if rest.starts_with("<!") {
            return Err(EnvelopeError::Doctype);
        }
        // A tag: find its end outside quoted attribute values.
        let mut j = s + 1;
        let mut quote = None;
        while j < b.len() {
            match (quote, b[j]) {
                (None, b'>') => break,
                (None, q @ (b'"' | b'\'')) => quote = Some(q),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            j += 1;
        }
        if j >= b.len() {
            return Err(Malformed("an unclosed tag"));
        }
        let end = j + 1;
        let inner = &text[s + 1..j];
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim_end();
            if !xml_name(name) {
                return Err(Malformed("an end tag without a valid name"));
            }
            let Some((open, open_s, open_e)) = stack.pop() else {
                return Err(Malformed("an end tag without a start"));
            };
            if open != name {
                return Err(Malformed("mismatched tags"));
            }
            if stack.len() == 2
                && local(&stack[0].0) == "Envelope"
                && local(&stack[1].0) == "Header"
            {
                found.push(entry(text, &open, open_s, open_e, Some((open_e, s)), end));
            }
            if stack.len() == 1 && local(&open) == "Header" {
                return Ok(found);
            }
            i = end;
            continue;
        }
        let self_closing = inner.ends_with('/');
        let qname = inner
            .split(|c: char| c.is_ascii_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        if !xml_name(qname) {
            return Err(Malformed("a tag without a valid name"));
        }
        match stack.len() {
            0 if local(qname) != "Envelope" => return Err(EnvelopeError::NoHeader),
            1 if local(qname) == "Header" => saw_header = true,
            1 => return Err(EnvelopeError::NoHeader),
            _ => {}
        }
        if self_closing {
            if stack.len() == 2 && saw_header {
                found.push(entry(text, qname, s, end, None, end));
            }
            if stack.len() == 1 {
                // `<Header/>`: a header with no entries.
                return Ok(found);
            }
        } else {
            stack.push((qname.to_string(), s, end));
        }
        i = end;
    }
    Err(if saw_header {
        Malformed("the header does not end")
    } else {
        EnvelopeError::NoHeader
    })
}

fn entry(
    text: &str,
    qname: &str,
    start: usize,
    start_tag_end: usize,
    content: Option<(usize, usize)>,
    end: usize,
) -> Found {
    let prefix = qname.split_once(':').map(|(p, _)| p);
    let tag = &text[start..start_tag_end];
    let wanted = match prefix {
        Some(p) => format!("xmlns:{p}="),
        None => "xmlns=".to_string(),
    };
    let xmlns = tag.find(&wanted).and_then(|at| {
        let v = &tag[at + wanted.len()..];
        let q = v.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let close = v[1..].find(q)?;
        Some(tag[at..at + wanted.len() + close + 2].to_string())
    });
    Found {
        local: local(qname).to_string(),
        qname: qname.to_string(),
        xmlns,
        whole: (start, end),
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: Entry<'static> = Entry {
        name: "AuthenticationToken",
        value: "SECRET&<en>",
        replaces: true,
    };

    fn filled(xml: &str, others: &[Entry<'_>]) -> Result<String, EnvelopeError> {
        fill(xml.as_bytes(), TOKEN, others).map(|v| String::from_utf8(v).unwrap())
    }

    const GET_USER: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header>
    <h:AuthenticationToken xmlns:h="https://bingads.microsoft.com/Customer/v13"/>
    <h:CustomerId xmlns:h="https://bingads.microsoft.com/Customer/v13">42</h:CustomerId>
  </s:Header>
  <s:Body><GetUserRequest xmlns="https://bingads.microsoft.com/Customer/v13"><UserId i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/></GetUserRequest></s:Body>
</s:Envelope>"#;

    #[test]
    fn the_token_fills_the_empty_element_escaped() {
        let out = filled(GET_USER, &[]).unwrap();
        assert!(out.contains(
            r#"<h:AuthenticationToken xmlns:h="https://bingads.microsoft.com/Customer/v13">SECRET&amp;&lt;en&gt;</h:AuthenticationToken>"#
        ), "{out}");
        assert!(out.contains(
            "<h:CustomerId xmlns:h=\"https://bingads.microsoft.com/Customer/v13\">42</h:CustomerId>"
        ));
        assert!(out.ends_with("</s:Envelope>"));
    }

    #[test]
    fn a_callers_own_token_is_replaced() {
        let xml = GET_USER.replace(
            r#"<h:AuthenticationToken xmlns:h="https://bingads.microsoft.com/Customer/v13"/>"#,
            "<AuthenticationToken xmlns=\"urn:x\">callers-own</AuthenticationToken>",
        );
        let out = filled(&xml, &[]).unwrap();
        assert!(out.contains(
            "<AuthenticationToken xmlns=\"urn:x\">SECRET&amp;&lt;en&gt;</AuthenticationToken>"
        ));
        assert!(!out.contains("callers-own"));
    }

    #[test]
    fn a_missing_entry_is_added_beside_the_token_in_its_namespace() {
        let dev = Entry {
            name: "DeveloperToken",
            value: "DEV",
            replaces: true,
        };
        let out = filled(GET_USER, &[dev]).unwrap();
        assert!(out.contains(
            r#"</h:AuthenticationToken><h:DeveloperToken xmlns:h="https://bingads.microsoft.com/Customer/v13">DEV</h:DeveloperToken>"#
        ), "{out}");
    }

    #[test]
    fn an_entry_the_caller_filled_is_kept_unless_ours_replaces_it() {
        let keep = Entry {
            name: "CustomerId",
            value: "7",
            replaces: false,
        };
        let out = filled(GET_USER, &[keep]).unwrap();
        assert!(out.contains(">42</h:CustomerId>"));
        let replace = Entry {
            replaces: true,
            ..keep
        };
        let out = filled(GET_USER, &[replace]).unwrap();
        assert!(out.contains(">7</h:CustomerId>") && !out.contains(">42<"));
    }

    #[test]
    fn only_the_headers_own_entries_are_written() {
        // The same name in the body (a campaign's field, which the platform could echo back), in a
        // comment and in CDATA is never filled.
        let xml = r#"<s:Envelope xmlns:s="x"><s:Header><!-- <AuthenticationToken/> --><a:AuthenticationToken xmlns:a="y"></a:AuthenticationToken><a:Other><AuthenticationToken/></a:Other></s:Header><s:Body><AuthenticationToken/><![CDATA[<AuthenticationToken/>]]></s:Body></s:Envelope>"#;
        let out = filled(xml, &[]).unwrap();
        assert_eq!(out.matches("SECRET&amp;").count(), 1, "{out}");
        assert!(out.contains("<!-- <AuthenticationToken/> -->"));
        assert!(out.contains("<a:Other><AuthenticationToken/></a:Other>"));
        assert!(
            out.contains(
                "<s:Body><AuthenticationToken/><![CDATA[<AuthenticationToken/>]]></s:Body>"
            )
        );
    }

    #[test]
    fn quoted_angle_brackets_do_not_end_a_tag() {
        let xml = r#"<s:Envelope xmlns:s="x"><s:Header a="1>2"><AuthenticationToken b='<'/></s:Header><s:Body/></s:Envelope>"#;
        let out = filled(xml, &[]).unwrap();
        assert!(
            out.contains("<AuthenticationToken b='<'>SECRET&amp;&lt;en&gt;</AuthenticationToken>"),
            "{out}"
        );
    }

    #[test]
    fn envelopes_that_cannot_carry_it_are_refused_with_words() {
        let cases: &[(&str, EnvelopeError)] = &[
            (
                "<s:Envelope xmlns:s=\"x\"><s:Body/></s:Envelope>",
                EnvelopeError::NoHeader,
            ),
            (
                "<s:Envelope xmlns:s=\"x\"><s:Header/><s:Body/></s:Envelope>",
                EnvelopeError::NoCredentialElement("AuthenticationToken".into()),
            ),
            (
                "<s:Envelope xmlns:s=\"x\"><s:Header><CustomerId>1</CustomerId></s:Header></s:Envelope>",
                EnvelopeError::NoCredentialElement("AuthenticationToken".into()),
            ),
            (
                "<Other><Header><AuthenticationToken/></Header></Other>",
                EnvelopeError::NoHeader,
            ),
            ("{\"json\": true}", EnvelopeError::NoHeader),
            ("", EnvelopeError::NoHeader),
            (
                "<!DOCTYPE x [<!ENTITY a \"b\">]><s:Envelope/>",
                EnvelopeError::Doctype,
            ),
            (
                "<s:Envelope><s:Header><AuthenticationToken>",
                EnvelopeError::Malformed("the header does not end"),
            ),
            (
                "<s:Envelope><s:Header><AuthenticationToken></Other></s:Header>",
                EnvelopeError::Malformed("mismatched tags"),
            ),
            (
                "<s:Envelope><s:Header><AuthenticationToken a=\"",
                EnvelopeError::Malformed("an unclosed tag"),
            ),
            (
                "<s:Envelope><s:Header><!-- x",
                EnvelopeError::Malformed("an unclosed comment"),
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(filled(xml, &[]).unwrap_err(), *want, "{xml}");
        }
        assert_eq!(
            fill(&[0xff, 0xfe], TOKEN, &[]).unwrap_err(),
            EnvelopeError::Malformed("not UTF-8")
        );
        // No error text carries a value.
        for (xml, _) in cases {
            let e = filled(xml, &[]).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    /// Found by the `soap_envelope` fuzz target: a start tag whose "name" ran on through `/`,
    /// quotes and `<` to end in `:CustomerId` was taken for that entry, and the end tag written
    /// from it broke the envelope. A name is now XML's name characters only.
    #[test]
    fn a_name_that_is_not_one_is_refused_not_copied() {
        let xml = r#"<s:Envelope xmlns:s="x"><s:Header><AuthenticationToken/><h:Cust/merId x="1<h:CustomerId"/></s:Header></s:Envelope>"#;
        let keep = Entry {
            name: "CustomerId",
            value: "42",
            replaces: false,
        };
        let once = filled(xml, &[keep]).unwrap();
        assert_eq!(filled(&once, &[keep]).unwrap(), once);
        assert!(
            once.contains("<h:Cust/merId x=\"1<h:CustomerId\"/>"),
            "{once}"
        );
        for bad in [
            "<s:Envelope><s:Header><1a/>",
            "<s:Envelope><s:Header><a\"b/>",
            "<s:Envelope><s:Header></ a>",
        ] {
            assert!(
                matches!(filled(bad, &[]), Err(EnvelopeError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let base = GET_USER.as_bytes();
        for cut in 0..base.len() {
            let _ = fill(&base[..cut], TOKEN, &[]);
            let mut v = base.to_vec();
            v[cut] = b'<';
            let _ = fill(&v, TOKEN, &[]);
            v[cut] = b'"';
            let _ = fill(&v, TOKEN, &[]);
        }
    }
}
