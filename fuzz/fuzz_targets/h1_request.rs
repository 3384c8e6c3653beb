//! The server's own HTTP/1.1 loop (`tokenwarden_http::h1`): any bytes, parsed as the serve loop
//! parses them (a request taken, the rest parsed again, until the head is incomplete or the
//! connection goes to hyper), never panic; a decision to wait or to hand off leaves the buffer
//! byte for byte as it was (hyper must read what the client sent); a request takes exactly its
//! head off the front, is what httparse reads there, and is one the loop may serve (no body, no
//! `HEAD`/`CONNECT`, no `Transfer-Encoding`, `Upgrade` or `Expect`, at most one
//! `Content-Length`, and that `0`); the same bytes arriving in pieces give the same requests and
//! the same decision. An answer's head (`h1::write_head`, any status 100–999, headers from the
//! input) reads back as a response with that status, with at most one `Content-Length`, never
//! both it and `Transfer-Encoding`, and the framing `write_head` reported.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use tokenwarden_http::h1::{self, Framing, Parsed};

/// Put in front of the fuzzed bytes (chosen by the input), so that most inputs reach the headers.
const PREFIXES: &[&[u8]] = &[
    b"",
    b"GET / HTTP/1.1\r\n",
    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: ",
    b"GET / HTTP/1.1\r\nContent-Length: ",
    b"POST /p HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n",
    b"\r\nGET / HTTP/1.1\r\nX-A: \x80\xff\t1\r\n\r\n",
];

/// Put after the fuzzed bytes when the input says so: a plain request, pipelined.
const SUFFIX: &[u8] = b"GET /next HTTP/1.1\r\nHost: y\r\n\r\n";

/// Names an answer's headers are picked from (or the input's own bytes).
const NAMES: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "date",
    "connection",
    "content-type",
    "trailer",
    "set-cookie",
    "x-a",
];

/// What one call of `parse` decided, as far as the serve loop can tell.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Request {
        taken: usize,
        method: Method,
        uri: String,
        headers: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
    },
    Partial,
    HandOff,
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| {
        let start = t
            .iter()
            .position(|c| !matches!(c, b' ' | b'\t'))
            .unwrap_or(t.len());
        let end = t
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(start, |e| e + 1);
        &t[start..end.max(start)]
    })
}

/// One call of `parse` on `buf`, with every invariant of that one call checked.
fn step(buf: &mut BytesMut) -> Step {
    let before = buf.clone();
    let parsed = h1::parse(buf);
    match parsed {
        Parsed::Partial => {
            assert_eq!(&before[..], &buf[..], "Partial changed the buffer");
            assert!(
                before.len() <= h1::MAX_HEAD,
                "waited for a head past the limit"
            );
            Step::Partial
        }
        Parsed::HandOff => {
            assert_eq!(&before[..], &buf[..], "HandOff changed the buffer");
            Step::HandOff
        }
        Parsed::Request {
            request,
            keep_alive,
        } => {
            assert!(buf.len() < before.len(), "a request took nothing");
            let taken = before.len() - buf.len();
            assert_eq!(&before[taken..], &buf[..], "not exactly a prefix was taken");
            assert!(taken <= h1::MAX_HEAD, "a head past the limit was served");
            // It is what httparse reads at the front, head and all.
            let mut raw = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
            let mut req = httparse::Request::new(&mut raw);
            match req.parse(&before) {
                Ok(httparse::Status::Complete(n)) => assert_eq!(n, taken, "the head's length"),
                other => panic!("served what httparse reads as {other:?}"),
            }
            assert_eq!(req.version, Some(1), "only HTTP/1.1 is served");
            assert_eq!(request.version(), http::Version::HTTP_11);
            assert_eq!(Some(request.method().as_str()), req.method);
            assert!(
                request.method() != Method::HEAD && request.method() != Method::CONNECT,
                "{} served",
                request.method()
            );
            assert_eq!(
                request.headers().len(),
                req.headers.len(),
                "a header was lost or added"
            );
            for h in req.headers.iter() {
                let name = HeaderName::from_bytes(h.name.as_bytes()).expect("a served name");
                let ours: Vec<&[u8]> = request
                    .headers()
                    .get_all(&name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                let theirs: Vec<&[u8]> = req
                    .headers
                    .iter()
                    .filter(|o| o.name.eq_ignore_ascii_case(h.name))
                    .map(|o| o.value)
                    .collect();
                assert_eq!(ours, theirs, "the values of {name}");
            }
            let headers = request.headers();
            for banned in ["transfer-encoding", "upgrade", "expect", "te"] {
                assert!(
                    !headers.contains_key(banned),
                    "a request with {banned} was served"
                );
            }
            let lengths: Vec<_> = headers.get_all("content-length").iter().collect();
            assert!(lengths.len() <= 1, "{} content-lengths", lengths.len());
            if let Some(l) = lengths.first() {
                assert_eq!(l.as_bytes(), b"0", "a body was announced");
            }
            let mut close = false;
            // A value with a byte outside visible ASCII and tab is not read (as hyper does not).
            for v in headers
                .get_all("connection")
                .iter()
                .filter(|v| v.as_bytes().iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t'))
            {
                for t in tokens(v.as_bytes()) {
                    assert!(!t.eq_ignore_ascii_case(b"upgrade"), "an upgrade was served");
                    close |= t.eq_ignore_ascii_case(b"close");
                }
            }
            assert_eq!(
                keep_alive, !close,
                "keep-alive against the Connection header"
            );
            let mut headers: Vec<(String, Vec<u8>)> = request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            headers.sort();
            Step::Request {
                taken,
                method: request.method().clone(),
                uri: request.uri().to_string(),
                headers,
                keep_alive,
            }
        }
    }
}

/// The serve loop over `input` arriving in pieces of `piece` bytes (all at once when 0).
fn serve_loop(input: &[u8], piece: usize) -> Vec<Step> {
    let piece = if piece == 0 {
        input.len().max(1)
    } else {
        piece
    };
    let mut pieces = input.chunks(piece);
    let mut buf = BytesMut::new();
    let mut steps = Vec::new();
    // Each step takes a piece in or a request (at least one byte) out, so this ends; the bound
    // guards a bug that would not.
    for _ in 0..=2 * input.len() + 2 {
        match step(&mut buf) {
            Step::Partial => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => {
                    steps.push(Step::Partial);
                    return steps;
                }
            },
            Step::HandOff => {
                steps.push(Step::HandOff);
                return steps;
            }
            request => steps.push(request),
        }
    }
    panic!("the loop did not end");
}

fn answer_head(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let status = StatusCode::from_u16(u.int_in_range(100..=999)?).expect("100..=999");
    let exact: Option<u64> = if u.arbitrary()? {
        Some(u.int_in_range(0..=1 << 40)?)
    } else {
        None
    };
    let close: bool = u.arbitrary()?;
    let mut headers = HeaderMap::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let pick: u8 = u.arbitrary()?;
        let name = match NAMES.get(usize::from(pick & 0x0f)) {
            Some(n) => HeaderName::from_static(n),
            None => match HeaderName::from_bytes(u.arbitrary::<&[u8]>()?) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        let value = if pick & 0x80 == 0 {
            match HeaderValue::from_bytes(u.arbitrary::<&[u8]>()?) {
                Ok(v) => v,
                Err(_) => continue,
            }
        } else {
            HeaderValue::from(u.arbitrary::<u64>()? % 100_000)
        };
        headers.append(name, value);
    }
    let date = b"Sat, 05 Dec 2026 19:00:00 GMT";
    let mut out = Vec::new();
    let head = h1::write_head(&mut out, status, &headers, exact, close, date);

    let mut raw = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut raw);
    match res.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "bytes after the head"),
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&out)),
    }
    assert_eq!(res.version, Some(1));
    assert_eq!(res.code, Some(status.as_u16()));
    let all = |name: &str| -> Vec<&[u8]> {
        res.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let lengths = all("content-length");
    let encodings = all("transfer-encoding");
    assert!(lengths.len() <= 1, "{} content-lengths", lengths.len());
    assert!(
        lengths.is_empty() || encodings.is_empty(),
        "both content-length and transfer-encoding"
    );
    assert!(!all("date").is_empty(), "no date");
    let closes = all("connection")
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")));
    assert_eq!(head.closes, closes, "closes against the Connection header");
    if close {
        assert!(closes, "asked to close, but no Connection: close");
    }
    let length = lengths.first().map(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a number")
    });
    match head.framing {
        Framing::None => {
            assert!(
                status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED,
                "no body for {status}"
            );
            assert!(encodings.is_empty());
            if status != StatusCode::NOT_MODIFIED {
                assert!(lengths.is_empty(), "a length on {status}");
            }
        }
        Framing::Length(n) => {
            assert_eq!(length, Some(n));
            assert!(encodings.is_empty());
        }
        Framing::Chunked => {
            assert_eq!(encodings, [b"chunked"]);
            assert!(lengths.is_empty());
        }
    }
    if !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
    {
        assert_ne!(
            head.framing,
            Framing::None,
            "{status} must have its body framed"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(flags), Ok(piece)) = (u.arbitrary::<u8>(), u.arbitrary::<u8>()) else {
        return;
    };
    // The answer's head first (a few bytes), then the request bytes: all that is left, between
    // an optional prefix and an optional plain request after them.
    if flags & 0x10 != 0 {
        let _ = answer_head(&mut u);
    }
    let mut input = if flags & 0x20 != 0 {
        // A head that the input's bytes bring to the limit (or past it), a few bytes under it.
        let mut padded = b"GET /pad HTTP/1.1\r\nX-Pad: ".to_vec();
        padded.resize(h1::MAX_HEAD - 64 - usize::from(flags >> 6) * 8, b'p');
        padded.extend_from_slice(b"\r\n");
        padded
    } else {
        PREFIXES[usize::from(flags & 7)].to_vec()
    };
    input.extend_from_slice(u.take_rest());
    if flags & 8 != 0 {
        input.extend_from_slice(SUFFIX);
    }
    let whole = serve_loop(&input, 0);
    // Every piece parses the whole buffer again: small pieces of a long input would take too long.
    let piece = if input.len() > 4096 {
        usize::from(piece).max(1) * 512
    } else {
        usize::from(piece)
    };
    if piece > 1 {
        let pieces = serve_loop(&input, piece);
        assert_eq!(
            whole, pieces,
            "the same bytes in pieces of {piece} read differently"
        );
    }
    // Byte by byte, as the slowest client sends them.
    if input.len() <= 4096 {
        assert_eq!(
            whole,
            serve_loop(&input, 1),
            "the same bytes one at a time read differently"
        );
    }
});
