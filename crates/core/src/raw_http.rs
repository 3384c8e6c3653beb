//! Reads a raw HTTP response as `curl -i` prints it: status line, headers, blank line, body.
//! HTTP/1.x, HTTP/2 and HTTP/3 status lines, CRLF or LF. Intermediate responses (`100 Continue`,
//! a proxy's `200 Connection established`, the redirects of `curl -iL`) are skipped: the last
//! response counts.

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes, untouched.
    pub body: Vec<u8>,
}

/// Why the text is not a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawHttpError {
    /// Nothing was given.
    #[error(
        "the input is empty: paste a response as `curl -i` prints it (status line, headers, blank line, body)"
    )]
    Empty,
    /// The first line is not a status line.
    #[error(
        "line {line} should be a status line like `HTTP/1.1 401 Unauthorized` or `HTTP/2 200`, but it starts with {start:?}"
    )]
    NoStatusLine {
        /// 1-based line number.
        line: usize,
        /// The first characters found there.
        start: String,
    },
    /// A header line without a colon.
    #[error(
        "line {line} should be a header like `Content-Type: application/json`, but it has no colon: {start:?}"
    )]
    BadHeader {
        /// 1-based line number.
        line: usize,
        /// The first characters found there.
        start: String,
    },
}

/// Splits off one line (without its CRLF or LF); `None` at the end.
fn next_line(input: &[u8]) -> Option<(&[u8], &[u8])> {
    if input.is_empty() {
        return None;
    }
    match input.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &input[..i];
            Some((line.strip_suffix(b"\r").unwrap_or(line), &input[i + 1..]))
        }
        None => Some((input, &[])),
    }
}

fn preview(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned()
}

/// Parses `HTTP/1.1 200 OK`, `HTTP/2 401`, `HTTP/2.0 429 Too Many Requests`.
fn status_of(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let mut parts = text.split_whitespace();
    let version = parts.next()?;
    let rest = version.strip_prefix("HTTP/")?;
    if !rest.chars().all(|c| c.is_ascii_digit() || c == '.') || rest.is_empty() {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse::<u16>().ok().filter(|c| (100..=999).contains(c))
}

/// Parses the text; the last response in it counts.
pub fn parse(input: &[u8]) -> Result<RawResponse, RawHttpError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut rest = input;
    let mut line_no = 0usize;
    // Leading blank lines (a paste often starts with one).
    loop {
        match next_line(rest) {
            Some((l, r)) if l.trim_ascii().is_empty() => {
                rest = r;
                line_no += 1;
            }
            Some(_) => break,
            None => return Err(RawHttpError::Empty),
        }
    }
    loop {
        let (status_line, after) = next_line(rest).ok_or(RawHttpError::Empty)?;
        line_no += 1;
        let status = status_of(status_line).ok_or_else(|| RawHttpError::NoStatusLine {
            line: line_no,
            start: preview(status_line),
        })?;
        rest = after;
        let mut headers: Vec<(String, String)> = Vec::new();
        while let Some((line, after)) = next_line(rest) {
            line_no += 1;
            rest = after;
            if line.trim_ascii().is_empty() {
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                // Obsolete folding (RFC 9112 §5.2): continue the previous value.
                if let Some((_, v)) = headers.last_mut() {
                    // One space joins the parts; a value that was empty gains none, so the
                    // value stays trimmed (`Name:` then ` x` is `x`, not ` x`).
                    if !v.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(String::from_utf8_lossy(line.trim_ascii()).as_ref());
                    continue;
                }
            }
            let colon =
                line.iter()
                    .position(|&b| b == b':')
                    .ok_or_else(|| RawHttpError::BadHeader {
                        line: line_no,
                        start: preview(line),
                    })?;
            let name = String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned();
            let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
            headers.push((name, value));
        }
        // Another response follows: this one was intermediate.
        if next_line(rest).and_then(|(l, _)| status_of(l)).is_some() {
            continue;
        }
        return Ok(RawResponse {
            status,
            headers,
            body: rest.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curl_output() {
        let r = parse(b"HTTP/2 401 \r\nwww-authenticate: Bearer error=\"invalid_token\"\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0].0, "www-authenticate");
        assert!(r.body.is_empty());
        let r = parse(b"\nHTTP/1.1 200 OK\nContent-Type: application/json\n\n{\"code\":40100}\n")
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"{\"code\":40100}\n"[..])
        );
    }

    #[test]
    fn skips_intermediate_responses() {
        let text = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\nHTTP/2 429\r\nretry-after: 5\r\n\r\nslow down";
        let r = parse(text).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (429, &b"slow down"[..]));
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(parse(b"").unwrap_err(), RawHttpError::Empty);
        assert_eq!(parse(b"\n\n  \n").unwrap_err(), RawHttpError::Empty);
        let e = parse(b"{\"code\":1}").unwrap_err().to_string();
        assert!(e.contains("status line"), "{e}");
        let e = parse(b"HTTP/1.1 200 OK\nnot a header\n\nbody")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(parse(b"HTTP/1.1 20 OK\n\n").is_err());
    }

    /// Found by the raw_http fuzz target: a folded line under an empty value left a leading
    /// space, so the value read was not the value written back (`Name: x`).
    #[test]
    fn folding_onto_an_empty_value_keeps_it_trimmed() {
        let r = parse(b"HTTP/1.1 200 OK\r\nX-A:\r\n\tpart\r\nX-B: one\r\n two\r\n\r\n").unwrap();
        assert_eq!(
            r.headers,
            vec![
                ("X-A".to_string(), "part".to_string()),
                ("X-B".to_string(), "one two".to_string())
            ]
        );
    }

    #[test]
    fn headers_without_body() {
        let r = parse(b"HTTP/1.1 503 Service Unavailable\nRetry-After: 10").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(
            r.headers,
            vec![("Retry-After".to_string(), "10".to_string())]
        );
    }
}
