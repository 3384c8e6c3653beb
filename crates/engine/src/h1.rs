//! HTTP/1.1 on the wire for the outbound client ([`crate::transport`]): the request's head
//! written, the answer's head parsed and its body's framing decoded (RFC 9112). Pure: bytes in,
//! bytes out; the connections and their I/O are the transport's. It replaces hyper's client
//! connection, whose dispatch (a task per connection, a channel to it and one back per call)
//! held the proxy's bare stack to 0.80–0.87× of nginx where a hand-written call reached
//! 0.94–1.06× (issue 19, docs/BENCHMARKS.md).
//!
//! What a platform sends is not trusted: the head is parsed by `httparse` within
//! [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers, a `Content-Length` must be one number (or a
//! list of the same number), a chunked body's sizes, extensions and trailers are bounded, and
//! anything else is a [`WireError`], never a panic. A connection is reused only when its answer
//! said it may be and was framed without doubt: an answer with both `Transfer-Encoding` and
//! `Content-Length` (a smuggling sign, RFC 9112 §6.3) is read as chunked and its connection
//! closed after it.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The largest answer head read (status line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may have (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Room an answer's header map is made with beyond its own headers, for the ones its reader adds
/// on the way back (the proxy's eight verdict headers and the daemon's security headers): added
/// into a map parsed to fit, they would make it grow, rehashing what it holds.
pub const SPARE_HEADERS: usize = 12;
/// The longest chunk-size line (with its extensions) and trailer line.
pub const MAX_LINE: usize = 4 * 1024;
/// The most trailer bytes after a chunked body.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// The most chunk-extension bytes in one chunked body (hyper's limit): without it a platform
/// could send a body of one-byte chunks each carrying a 4 KiB extension, thousands of times the
/// bytes the body's own limit counts.
pub const MAX_EXTENSIONS: usize = 16 * 1024;

/// An answer that is not HTTP/1.1 as RFC 9112 writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("the answer's head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] headers.
    #[error("the answer has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// The status line or a header line is malformed.
    #[error("the answer's head is malformed ({0})")]
    BadHead(httparse::Error),
    /// A header name or value that HTTP does not allow.
    #[error("the answer has a header that HTTP does not allow")]
    BadHeader,
    /// `Content-Length` is not one non-negative number.
    #[error("the answer's Content-Length is invalid")]
    BadLength,
    /// A chunked body's framing is malformed or too long.
    #[error("the answer's chunked body is malformed")]
    BadChunk,
    /// `101 Switching Protocols`, which no request of ours asks for.
    #[error("the platform switched protocols unasked")]
    Upgrade,
}

/// How an answer's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request's answer, 204, 304, or `Content-Length: 0`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the platform closes the connection.
    Close,
}

/// An answer's head.
#[derive(Debug)]
pub struct Head {
    /// The final status (interim 1xx answers are skipped).
    pub status: http::StatusCode,
    /// HTTP/1.1 or HTTP/1.0.
    pub version: http::Version,
    /// The headers, their values sliced from the read bytes.
    pub headers: HeaderMap,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// The connection may carry another request once this answer's body has been read.
    pub reusable: bool,
}

/// Parses the answer's head at the start of `buf`, taking its bytes (and any interim 1xx
/// answers') out of `buf`: `None` when more bytes are needed. `head_request`: the request was a
/// `HEAD`, whose answer has no body whatever its headers say.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, WireError> {
    loop {
        // Uninitialised: a zeroed array of a hundred headers costs more than parsing a head.
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut answer,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(WireError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(WireError::TooManyHeaders),
            Err(e) => return Err(WireError::BadHead(e)),
        };
        if len > MAX_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let code = answer
            .code
            .ok_or(WireError::BadHead(httparse::Error::Status))?;
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(WireError::Upgrade);
            }
            buf.advance(len);
            continue;
        }
        let status = http::StatusCode::from_u16(code)
            .map_err(|_| WireError::BadHead(httparse::Error::Status))?;
        let http11 = answer.version == Some(1);
        let base = buf.as_ptr() as usize;
        // Each header's name, and where its value lies within the head, to slice the values out
        // of it once it is taken from `buf`, without copying them.
        let mut named = Vec::with_capacity(answer.headers.len());
        let mut chunked = None::<bool>;
        let mut length = None::<u64>;
        let mut close = false;
        let mut keep_alive = false;
        for h in answer.headers.iter() {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| WireError::BadHeader)?;
            let at = h.value.as_ptr() as usize - base;
            named.push((name, at, at + h.value.len()));
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding of all the header's values decides (RFC 9112 §6.3); empty list
                // items count for nothing (RFC 9110 §5.6.1).
                let last = h
                    .value
                    .split(|b| *b == b',')
                    .map(trim)
                    .rfind(|c| !c.is_empty());
                chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                for part in h.value.split(|b| *b == b',') {
                    let n = parse_length(trim(part)).ok_or(WireError::BadLength)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(WireError::BadLength);
                    }
                    length = Some(n);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = trim(token);
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        let mut reusable = if http11 { !close } else { keep_alive && !close };
        let framing = if head_request || code == 204 || code == 304 {
            Framing::Empty
        } else if let Some(chunked) = chunked {
            // Both framings named: read as chunked, then close (RFC 9112 §6.3, item 3).
            reusable &= length.is_none();
            if chunked && http11 {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        };
        if framing == Framing::Close {
            reusable = false;
        }
        let head = buf.split_to(len).freeze();
        let mut map = HeaderMap::with_capacity(named.len() + SPARE_HEADERS);
        for (name, from, to) in named {
            // Framed by Transfer-Encoding, a Content-Length beside it is not the body's length
            // and must not be handed on (RFC 9112 §6.3, item 3).
            if chunked.is_some() && name == http::header::CONTENT_LENGTH {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(from..to))
                .map_err(|_| WireError::BadHeader)?;
            map.append(name, value);
        }
        return Ok(Some(Head {
            status,
            version: if http11 {
                http::Version::HTTP_11
            } else {
                http::Version::HTTP_10
            },
            headers: map,
            framing,
            reusable,
        }));
    }
}

/// Whether a head's end (an empty line: `\n\n` or `\n\r\n`) may lie in `buf`, looking only
/// at what came after the first `scanned` bytes (already looked at, less the two a terminator
/// can straddle). The reader asks this before parsing, so that a head arriving a byte at a time
/// is parsed once, not from its start after every byte.
pub fn head_ended(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2).min(buf.len());
    let tail = &buf[from..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// Digits only (no sign, no spaces inside), within `u64`.
fn parse_length(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What a body decoder made of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The body's next bytes.
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    /// The body has ended (its framing's bytes taken too).
    End,
}

/// A chunked body's decoder (RFC 9112 §7.1), fed what has arrived.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    remaining: u64,
    trailer_bytes: usize,
    extension_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// Takes the next piece of the body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let (size, digits) = chunk_size(&buf[..line]).ok_or(WireError::BadChunk)?;
                    self.extension_bytes += line - digits;
                    if self.extension_bytes > MAX_EXTENSIONS {
                        return Err(WireError::BadChunk);
                    }
                    buf.advance(line + 2);
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                    } else {
                        self.remaining = size;
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        // A lone byte that cannot start CRLF is wrong already.
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(WireError::BadChunk);
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::BadChunk);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.trailer_bytes += line + 2;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(WireError::BadChunk);
                    }
                    buf.advance(line + 2);
                    if line == 0 {
                        self.state = ChunkState::Done;
                        return Ok(Decoded::End);
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }

    /// The body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// The length of the CRLF-ended line at the start of `buf` (without the CRLF): `None` while it
/// has not all arrived, which is only while `buf` holds at most `MAX_LINE + 1` bytes. A bare CR
/// or LF, or a line longer than [`MAX_LINE`], is an error.
fn line(buf: &[u8]) -> Result<Option<usize>, WireError> {
    // A line of at most MAX_LINE bytes has its CR within the first MAX_LINE + 1.
    let end = buf
        .iter()
        .take(MAX_LINE + 1)
        .position(|b| *b == b'\r' || *b == b'\n');
    match end {
        Some(at) if buf[at] == b'\n' => Err(WireError::BadChunk),
        Some(at) => match buf.get(at + 1) {
            Some(b'\n') => Ok(Some(at)),
            Some(_) => Err(WireError::BadChunk),
            None => Ok(None),
        },
        None if buf.len() > MAX_LINE => Err(WireError::BadChunk),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" ext ]`: the size, within `u64`, and how many digits wrote it (the rest
/// of the line is extensions, read past).
fn chunk_size(line: &[u8]) -> Option<(u64, usize)> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = trim(&line[digits..]);
    if !(rest.is_empty() || rest[0] == b';') {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    Some((u64::from_str_radix(text, 16).ok()?, digits))
}

/// How a request's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header.
    None,
    /// `Content-Length: n` and exactly `n` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, each chunk written by [`write_chunk_size`].
    Chunked,
}

/// Writes a request head into `out`: `method target HTTP/1.1`, `headers` as they are except any
/// `Content-Length` or `Transfer-Encoding` among them, then `framing`'s own header: the body is
/// framed one way, the way it is written. `target` is the URL's path and query, which `url` has
/// percent-encoded.
pub fn write_head(
    out: &mut Vec<u8>,
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A chunk's size line for `len` bytes of data (the data and its CRLF follow); `len` 0 writes
/// the last chunk and the end of the (empty) trailers.
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    if len == 0 {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(text), false)
    }

    fn ok(text: &str) -> Head {
        head(text).expect("parses").expect("complete")
    }

    #[test]
    fn a_content_length_answer_is_framed_and_reusable() {
        let h =
            ok("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.reusable);
        assert_eq!(h.headers["content-type"], "application/json");
    }

    #[test]
    fn the_head_is_taken_and_the_body_left() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        let h = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn a_head_is_known_to_have_ended_wherever_its_pieces_split() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\nA: b\n\n",
            b"HTTP/1.1 200 OK\nA: b\n\r\n",
        ] {
            for split in 1..text.len() {
                let mut scanned = 0;
                let mut seen = None;
                for end in (split..=text.len()).step_by(split).chain([text.len()]) {
                    if head_ended(&text[..end], scanned) {
                        seen = Some(end);
                        break;
                    }
                    scanned = end;
                }
                assert_eq!(
                    seen,
                    Some(text.len()),
                    "{split}: {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        }
        assert!(!head_ended(b"HTTP/1.1 200 OK\r\nA: b\r\n", 0));
    }

    #[test]
    fn a_partial_head_needs_more_and_leaves_the_buffer() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Len");
        assert!(parse_head(&mut buf, false).unwrap().is_none());
        assert_eq!(buf.len(), 28);
    }

    #[test]
    fn values_of_one_name_keep_their_order() {
        let h = ok(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX: y\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        );
        let all: Vec<_> = h.headers.get_all("set-cookie").iter().collect();
        assert_eq!(all, ["a=1", "b=2"]);
        assert_eq!(h.framing, Framing::Empty);
    }

    #[test]
    fn interim_answers_are_skipped_and_101_refused() {
        let h = ok(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(h.status, 201);
        assert_eq!(
            head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n").unwrap_err(),
            WireError::Upgrade
        );
    }

    #[test]
    fn answers_without_a_body() {
        for text in [
            "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let h = ok(text);
            assert_eq!(h.framing, Framing::Empty, "{text}");
        }
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        let h = parse_head(&mut buf, true).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.reusable);
    }

    #[test]
    fn chunked_wins_over_content_length_and_the_connection_closes_after() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.reusable);
        // The length that is not the body's is not handed on.
        assert!(!h.headers.contains_key("content-length"));
        // Empty list items count for nothing.
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, \r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.reusable);
        // Not chunked last: the body runs to the close.
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.reusable);
    }

    #[test]
    fn bad_or_conflicting_lengths_are_refused() {
        for cl in [
            "-1",
            "1 2",
            "0x10",
            "",
            "+5",
            "99999999999999999999",
            "5, 6",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(head(&text).unwrap_err(), WireError::BadLength, "{cl:?}");
        }
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(head(text).unwrap_err(), WireError::BadLength);
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
    }

    #[test]
    fn which_connections_are_reused() {
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", true),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: x, CLOSE\r\nContent-Length: 1\r\n\r\n",
                false,
            ),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            (
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
                true,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false),
        ];
        for (text, reusable) in cases {
            assert_eq!(ok(text).reusable, reusable, "{text}");
        }
        assert_eq!(ok("HTTP/1.1 200 OK\r\n\r\n").framing, Framing::Close);
    }

    #[test]
    fn malformed_and_oversized_heads_are_errors() {
        for text in [
            "<html>nope</html>\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
        ] {
            assert!(head(text).is_err(), "{text}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(head(&big).unwrap_err(), WireError::HeadTooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let text = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(head(&text).unwrap_err(), WireError::TooManyHeaders);
    }

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, Vec<u8>), WireError> {
        let mut c = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = input.chunks(split.max(1)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            loop {
                match c.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::End => {
                        // What follows the body stays unread: the input's tail.
                        let mut rest = buf.to_vec();
                        pieces[i + 1..]
                            .iter()
                            .for_each(|p| rest.extend_from_slice(p));
                        assert!(c.is_done());
                        return Ok((out, rest));
                    }
                }
            }
        }
        Err(WireError::BadChunk)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1;q=\"a\"\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 1..body.len() {
            let (out, rest) = decode_all(body, split).unwrap();
            assert_eq!(out, b"hello, world", "split {split}");
            assert_eq!(rest, b"NEXT");
        }
        let (out, _) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for body in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"11111111111111111\r\n",
            b"-5\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
        ] {
            assert_eq!(
                decode_all(body, 1000).unwrap_err(),
                WireError::BadChunk,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!("5;{}\r\n", "e".repeat(MAX_LINE));
        assert_eq!(
            decode_all(long.as_bytes(), 100).unwrap_err(),
            WireError::BadChunk
        );
        // A line one byte too long whose CR ends the window: refused, not waited on forever.
        for state in ["", "0\r\n"] {
            let mut c = Chunked::default();
            let text = format!("{state}{}\r...and more", "e".repeat(MAX_LINE + 1));
            let mut buf = BytesMut::from(text.as_str());
            let refused = loop {
                match c.decode(&mut buf) {
                    Ok(Decoded::Data(_)) => {}
                    Ok(other) => break Ok(other),
                    Err(e) => break Err(e),
                }
            };
            assert_eq!(refused, Err(WireError::BadChunk), "{state:?}");
        }
        // The longest line there may be is read.
        let longest = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_LINE - 2));
        assert_eq!(decode_all(longest.as_bytes(), 7).unwrap().0, b"hello");
        // Extensions add up: past MAX_EXTENSIONS in all, the body is refused.
        let one = format!("1;{}\r\nx\r\n", "e".repeat(1000));
        let many = one.repeat(MAX_EXTENSIONS / 1000 + 1) + "0\r\n\r\n";
        assert_eq!(
            decode_all(many.as_bytes(), 4096).unwrap_err(),
            WireError::BadChunk
        );
        let few = one.repeat(MAX_EXTENSIONS / 1000 - 1) + "0\r\n\r\n";
        assert!(decode_all(few.as_bytes(), 4096).is_ok());
        let trailers = format!("0\r\n{}\r\n", "T: v\r\n".repeat(MAX_TRAILERS / 6 + 1));
        assert_eq!(
            decode_all(trailers.as_bytes(), 100).unwrap_err(),
            WireError::BadChunk
        );
    }

    #[test]
    fn a_request_head_is_written_as_http_1_1() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api.example"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        // The caller's framing headers never reach the wire: the body's own do.
        headers.append("content-length", HeaderValue::from_static("3"));
        headers.append("transfer-encoding", HeaderValue::from_static("chunked"));
        let mut out = Vec::new();
        write_head(
            &mut out,
            &http::Method::POST,
            "/v1/me?x=1",
            &headers,
            RequestFraming::Length(1234567890),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/me?x=1 HTTP/1.1\r\nhost: api.example\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 1234567890\r\n\r\n"
        );
        let mut out = Vec::new();
        write_head(
            &mut out,
            &http::Method::GET,
            "/",
            &HeaderMap::new(),
            RequestFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        write_head(
            &mut out,
            &http::Method::PUT,
            "/",
            &HeaderMap::new(),
            RequestFraming::Chunked,
        );
        assert_eq!(out, b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    }

    #[test]
    fn chunks_written_decode_back() {
        let mut wire = Vec::new();
        for piece in [&b"a"[..], &[7u8; 300], b"xyz"] {
            write_chunk_size(&mut wire, piece.len());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        write_chunk_size(&mut wire, 0);
        let (out, rest) = decode_all(&wire, 7).unwrap();
        assert_eq!(out.len(), 304);
        assert!(rest.is_empty());
        for n in [0u64, 9, 10, 255, u64::MAX] {
            let mut s = Vec::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string().into_bytes());
        }
    }
}
