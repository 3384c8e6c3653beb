//! The common request served without hyper: an HTTP/1.1 request with no body (a token read, a
//! proxied `GET`), parsed with `httparse` and answered in the connection's own task. hyper's
//! server costs about as much per request as all of tokenwarden's own work on a proxied call
//! (docs/BENCHMARKS.md, issue 19: its serving thread ~28,600 instructions for the floor against
//! ~7,200 for a loop like this one).
//!
//! It serves only what it is certain of, and hands the connection to hyper, with every byte it
//! has read, at the first request that is anything else: a body (`Content-Length` other than 0,
//! `Transfer-Encoding`), `Expect`, `Upgrade` or `Connection: upgrade`, `HEAD`, `CONNECT`,
//! HTTP/1.0, a head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers, or one `httparse`, `http`
//! or this module refuses (an HTTP/2 preface among them). hyper then answers it as it would have
//! (a 400, a 431, HTTP/2) and serves the rest of the connection. What a client can tell apart
//! from hyper alone is listed and tested in `tests/h1_vs_hyper.rs` (a 204 without a length, an
//! answer to a client that half-closed, a handler's `Transfer-Encoding` dropped rather than the
//! connection); and a head handed on unfinished gets a fresh header-read timeout from hyper, so
//! one head per connection can take up to twice the timeout.
//!
//! The parts: [`parse`] (pure: bytes in, a request or a decision out; fuzzed as `h1_request`),
//! [`write_head`] (pure: the answer's head), and [`serve`] (the loop: the header-read timeout,
//! keep-alive, pipelining, shutdown and the hand-off).

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use std::io::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request head longer than this goes to hyper (which allows more, and answers 431 past that).
pub const MAX_HEAD: usize = 16 * 1024;
/// A request with more headers than this goes to hyper.
pub const MAX_HEADERS: usize = 64;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What [`parse`] made of the bytes read so far. Its `Debug` shows no header, path or byte a
/// client sent (an `Authorization` header is among them).
#[allow(
    clippy::large_enum_variant,
    reason = "made once a request and moved once: boxing the request would cost each an allocation"
)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A plain request, its head taken out of the buffer.
    Request {
        /// The request, with an empty body.
        request: Request<Body>,
        /// Whether the client let the connection stay open after the answer.
        keep_alive: bool,
    },
    /// Not one this module serves: the connection goes to hyper with the buffer as it is.
    HandOff,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parsed::Partial => f.write_str("Partial"),
            Parsed::HandOff => f.write_str("HandOff"),
            Parsed::Request {
                request,
                keep_alive,
            } => f
                .debug_struct("Request")
                .field("method", request.method())
                .field("headers", &request.headers().len())
                .field("keep_alive", keep_alive)
                .finish_non_exhaustive(),
        }
    }
}

/// Parses the request head at the start of `buf`. On [`Parsed::Request`] the head's bytes are
/// taken out of `buf` (what follows, a pipelined request, stays); otherwise `buf` is untouched.
pub fn parse(buf: &mut BytesMut) -> Parsed {
    // Uninitialised: a zeroed array of headers costs more than parsing a head.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::HandOff,
    };
    if req.version != Some(1) {
        return Parsed::HandOff;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parsed::HandOff;
    };
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(m) if m != Method::HEAD && m != Method::CONNECT => m,
        _ => return Parsed::HandOff,
    };
    let base = buf.as_ptr() as usize;
    let path_at = path.as_ptr() as usize - base;
    let path_range = path_at..path_at + path.len();
    // Each header's name, and where its value lies in the head, to slice the values out of it
    // once it is taken from `buf`, without copying them.
    let mut named: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(req.headers.len());
    let mut keep_alive = true;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let plain = if name.eq_ignore_ascii_case(b"content-length") {
            // Only an announced empty body is served here; hyper checks and reads the rest.
            h.value == b"0" && !named.iter().any(|(n, _, _)| n == CONTENT_LENGTH)
        } else if name.eq_ignore_ascii_case(b"connection") {
            let mut plain = true;
            // hyper reads the header only when it is all visible ASCII; so does this.
            let tokens = if h
                .value
                .iter()
                .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
            {
                h.value
            } else {
                &[]
            };
            for token in tokens.split(|b| *b == b',') {
                // No CR, LF or form feed gets this far, so this trims spaces and tabs.
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    plain = false;
                }
            }
            plain
        } else {
            // `TE: trailers` asks for trailers, which only hyper sends.
            !(name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade")
                || name.eq_ignore_ascii_case(b"te"))
        };
        if !plain {
            return Parsed::HandOff;
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            return Parsed::HandOff;
        };
        let at = h.value.as_ptr() as usize - base;
        named.push((name, at, at + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_range)) else {
        buf_restore(buf, head);
        return Parsed::HandOff;
    };
    let mut map = HeaderMap::with_capacity(named.len());
    for (name, from, to) in named {
        match HeaderValue::from_maybe_shared(head.slice(from..to)) {
            Ok(value) => {
                map.append(name, value);
            }
            Err(_) => {
                buf_restore(buf, head);
                return Parsed::HandOff;
            }
        }
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = map;
    Parsed::Request {
        request,
        keep_alive,
    }
}

/// Puts a head taken out of `buf` back in front of what followed it.
fn buf_restore(buf: &mut BytesMut, head: Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

/// How an answer's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (1xx, 204, 304): nothing is written after the head.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked: the length is not known ahead.
    Chunked,
}

/// Writes the answer's head into `out` (the status line, the headers, `Date` unless the answer
/// has one, the framing, and `Connection: close` when `close`), and says how the body is framed
/// and whether the connection ends after it. `exact`: the body's length, when known ahead.
///
/// The framing is this module's to choose, as hyper's is: the handler's `Transfer-Encoding` is
/// not passed on, its `Content-Length` frames the body when there is one (a body that then
/// yields another count breaks the connection rather than the framing), else the body's known
/// length, else chunked. 1xx, 204 and 304 answers have neither a body nor a length (hyper drops
/// a 304's too, and axum gives every empty answer one). A status without a standard reason
/// phrase gets hyper's `<none>`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    exact: Option<u64>,
    close: bool,
    date: &[u8],
) -> Head {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut closes = close;
    let mut has_close = false;
    // The handler's length: `Some(None)` when it gave one that is not a number or two that differ.
    let mut announced = None::<Option<u64>>;
    for (name, value) in headers {
        if *name == TRANSFER_ENCODING {
            continue;
        }
        if *name == CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            announced = match announced {
                None => Some(n),
                Some(a) if a == n => Some(a),
                Some(_) => Some(None),
            };
            continue;
        }
        if *name == DATE {
            has_date = true;
        } else if *name == CONNECTION
            && value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            has_close = true;
            closes = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if close && !has_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else {
        match announced.unwrap_or(exact) {
            Some(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
                Framing::Length(n)
            }
            // A length that is not one, or two that disagree: the body's own, else chunked.
            None => match exact {
                Some(n) => {
                    let _ = write!(out, "content-length: {n}\r\n");
                    Framing::Length(n)
                }
                None => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked
                }
            },
        }
    };
    out.extend_from_slice(b"\r\n");
    Head { framing, closes }
}

/// What [`write_head`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// How the body follows.
    pub framing: Framing,
    /// The connection ends after this answer.
    pub closes: bool,
}

/// Today's `Date` value, made at most once a second per thread.
fn date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "an answer's Date header is the wall clock by definition (RFC 9110 §6.6.1)"
    )]
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        // httpdate writes 29 bytes for any year 1970–9999; the epoch stands in otherwise.
        let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
        let made = httpdate::fmt_http_date(now);
        if made.len() == 29 {
            text.copy_from_slice(made.as_bytes());
        }
        c.set((secs, text));
        text
    })
}

/// Why [`serve`] stopped serving a connection itself. Its `Debug` gives the bytes read only
/// as a count.
pub enum Ended {
    /// The connection is finished (closed by either side, timed out, or broken).
    Closed,
    /// A request this module does not serve: hyper serves the connection from `read` on.
    HandOff {
        /// The connection.
        stream: tokio::net::TcpStream,
        /// What was read and not yet served, first in line for hyper.
        read: BytesMut,
        /// It opened with HTTP/2's preface: hyper serves it as HTTP/2. Otherwise as HTTP/1 only,
        /// as hyper alone would after a first HTTP/1 request; and hyper's HTTP/1 connection, told
        /// to stop before its first poll, still answers the request it was given (its version
        /// detection, told so, drops it).
        http2: bool,
    },
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed => f.write_str("Closed"),
            Ended::HandOff { read, http2, .. } => f
                .debug_struct("HandOff")
                .field("read_bytes", &read.len())
                .field("http2", http2)
                .finish_non_exhaustive(),
        }
    }
}

/// Everything [`serve`] needs besides the connection.
#[allow(
    missing_debug_implementations,
    reason = "a closure has nothing to show"
)]
pub struct Serving<F> {
    /// The answer to a request.
    pub respond: F,
    /// How long a client may take to send a request head, idle time before it included.
    pub header_read_timeout: std::time::Duration,
}

/// Serves plain requests on `stream` until it closes, `stop` changes (then an idle connection is
/// closed and a busy one after its answer), or a request this module does not serve arrives.
pub async fn serve<F, Fut>(
    mut stream: tokio::net::TcpStream,
    serving: Serving<F>,
    stop: tokio::sync::watch::Receiver<()>,
) -> Ended
where
    F: Fn(Request<Body>) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let timer = tokio::time::sleep(serving.header_read_timeout);
    tokio::pin!(timer);
    // `stopped` wakes an idle connection; `probe` tells a busy one, after its answer.
    let probe = stop.clone();
    let mut stop = stop;
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut stopping = false;
    let mut served = false;
    loop {
        // The request's head, within the header-read timeout (reset for each request, as hyper
        // does; a reset to a later time does not touch the timer wheel).
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + serving.header_read_timeout);
        let (request, keep_alive) = loop {
            match parse(&mut buf) {
                Parsed::Request {
                    request,
                    keep_alive,
                } => break (request, keep_alive),
                // The start of an HTTP/2 preface is read whole here, under the header-read
                // timeout: hyper's version detection has none, so a client sending part of it
                // could hold the connection forever.
                Parsed::HandOff
                    if !served && buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) => {}
                Parsed::HandOff => {
                    let http2 = !served && buf.starts_with(H2_PREFACE);
                    return Ended::HandOff {
                        stream,
                        read: buf,
                        http2,
                    };
                }
                Parsed::Partial => {}
            }
            if stopping && buf.is_empty() {
                return Ended::Closed;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                },
                // Closed without an answer, as hyper does.
                () = &mut timer => return Ended::Closed,
                _ = &mut stopped, if !stopping => {
                    stopping = true;
                }
            }
        };
        let answer = (serving.respond)(request).await;
        // A stop that came while the request was served closes the connection after its answer.
        if !stopping && probe.has_changed().unwrap_or(true) {
            stopping = true;
        }
        let close = !keep_alive || stopping;
        served = true;
        match write_answer(&mut stream, &mut out, answer, close).await {
            Ok(true) if !close => {}
            _ => {
                let _ = stream.shutdown().await;
                return Ended::Closed;
            }
        }
    }
}

/// Writes `answer`; `Ok(true)` when the connection may carry another request after it.
async fn write_answer(
    stream: &mut tokio::net::TcpStream,
    out: &mut Vec<u8>,
    answer: Response<Body>,
    mut close: bool,
) -> std::io::Result<bool> {
    use http_body::Body as _;
    let (mut parts, mut body) = answer.into_parts();
    if parts.status.is_informational() {
        // An interim status is no answer: hyper sends a 500 and closes instead; so does this.
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        parts.headers.clear();
        body = Body::empty();
        close = true;
    }
    out.clear();
    let exact = body.size_hint().exact();
    let head = write_head(out, parts.status, &parts.headers, exact, close, &date());
    if head.framing == Framing::None {
        stream.write_all(out).await?;
        return Ok(!head.closes);
    }
    let chunked = head.framing == Framing::Chunked;
    let mut sent: u64 = 0;
    // `out` holds what is not written yet: the head, then small pieces of the body after it, so
    // that a small answer goes out in one write. Nothing is held back while the body makes the
    // connection wait (a stream's first piece may be late: the client gets the head at once).
    loop {
        let ready = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut body).poll_frame(cx))
        })
        .await;
        let frame = match ready {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => {
                if !out.is_empty() {
                    stream.write_all(out).await?;
                    out.clear();
                }
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not sent (hyper sends them only to a client that asked).
                Err(_) => continue,
            },
            // The body broke: the client must not take what it got for the whole answer.
            Some(Err(_)) => return Ok(false),
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if let Framing::Length(n) = head.framing
            && sent > n
        {
            return Ok(false);
        }
        if chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if data.len() <= 16 * 1024 {
            out.extend_from_slice(&data);
        } else {
            stream.write_all(out).await?;
            out.clear();
            stream.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= 16 * 1024 {
            stream.write_all(out).await?;
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        stream.write_all(out).await?;
    }
    Ok(match head.framing {
        Framing::Length(n) => sent == n && !head.closes,
        _ => !head.closes,
    })
}

/// A connection with bytes already read from it in front: what hyper serves after a hand-off.
/// Its `Debug` gives those bytes only as a count.
pub struct Prefixed {
    read: BytesMut,
    stream: tokio::net::TcpStream,
}

impl Prefixed {
    /// `stream`, reading `read` first.
    pub fn new(read: BytesMut, stream: tokio::net::TcpStream) -> Prefixed {
        Prefixed { read, stream }
    }
}

impl std::fmt::Debug for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed")
            .field("read_bytes", &self.read.len())
            .finish_non_exhaustive()
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.read.is_empty() {
            return std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        if self.read.is_empty() {
            // Its memory is not kept for the connection's life once read.
            self.read = BytesMut::new();
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let p = parse(&mut buf);
        (p, buf)
    }

    #[test]
    fn a_plain_get_is_parsed_and_its_bytes_taken() {
        let (p, rest) =
            parsed(b"GET /proxy/c1/me?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next");
        let Parsed::Request {
            request,
            keep_alive,
        } = p
        else {
            panic!("not parsed: {p:?}");
        };
        assert!(keep_alive);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/proxy/c1/me");
        assert_eq!(request.uri().query(), Some("x=1"));
        assert_eq!(request.version(), http::Version::HTTP_11);
        assert_eq!(request.headers()["authorization"], "Bearer k");
        let both: Vec<_> = request.headers().get_all("x-a").iter().collect();
        assert_eq!(both, ["1", "2"]);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[tokio::test]
    async fn debug_output_shows_nothing_a_client_sent() {
        let secret = "tw_k1_not-for-logs";
        let text = format!(
            "GET /proxy/c1/me?access_token={secret} HTTP/1.1\r\nAuthorization: Bearer {secret}\r\n\r\n"
        );
        let (p, _) = parsed(text.as_bytes());
        assert!(matches!(p, Parsed::Request { .. }));
        let shown = format!("{p:?}");
        assert!(
            !shown.contains(secret) && !shown.contains("access_token"),
            "{shown}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let held = Prefixed::new(BytesMut::from(text.as_bytes()), stream);
        let shown = format!("{held:?}");
        assert!(!shown.contains(secret), "{shown}");
        let ended = Ended::HandOff {
            stream: held.stream,
            read: BytesMut::from(text.as_bytes()),
            http2: false,
        };
        let shown = format!("{ended:?}");
        assert!(
            !shown.contains(secret) && shown.contains("HandOff"),
            "{shown}"
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..text.len() {
            let (p, rest) = parsed(&text[..cut]);
            assert!(matches!(p, Parsed::Partial), "at {cut}: {p:?}");
            assert_eq!(&rest[..], &text[..cut]);
        }
    }

    #[test]
    fn connection_close_ends_keep_alive() {
        for value in ["close", "Close", "keep-alive, close", " close "] {
            let text = format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n");
            let (p, _) = parsed(text.as_bytes());
            assert!(
                matches!(
                    p,
                    Parsed::Request {
                        keep_alive: false,
                        ..
                    }
                ),
                "{value}: {p:?}"
            );
        }
        let (p, _) = parsed(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n");
        assert!(matches!(
            p,
            Parsed::Request {
                keep_alive: true,
                ..
            }
        ));
    }

    #[test]
    fn anything_but_a_plain_request_goes_to_hyper_untouched() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: +0\r\n\r\n",
            b"GET / HTTP/1.1\r\ncontent-length: 0, 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
            b"HEAD / HTTP/1.1\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"G\x00T / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        ];
        for case in cases {
            let (p, rest) = parsed(case);
            assert!(
                matches!(p, Parsed::HandOff),
                "{:?}: {p:?}",
                String::from_utf8_lossy(case)
            );
            assert_eq!(&rest[..], *case, "the bytes are handed on as read");
        }
    }

    #[test]
    fn an_announced_empty_body_is_plain() {
        let (p, _) = parsed(b"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(p, Parsed::Request { .. }), "{p:?}");
    }

    #[test]
    fn heads_past_the_limits_go_to_hyper() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        let (p, _) = parsed(&long);
        assert!(
            matches!(p, Parsed::HandOff),
            "an unfinished head past the limit"
        );
        long.extend_from_slice(b"\r\n\r\n");
        let (p, _) = parsed(&long);
        assert!(
            matches!(p, Parsed::HandOff),
            "a finished head past the limit"
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (p, _) = parsed(&many);
        assert!(matches!(p, Parsed::HandOff), "too many headers");
        let mut enough = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            enough.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        enough.extend_from_slice(b"\r\n");
        let (p, _) = parsed(&enough);
        assert!(matches!(p, Parsed::Request { .. }), "{MAX_HEADERS} headers");
    }

    fn head(
        status: u16,
        headers: &[(&str, &str)],
        exact: Option<u64>,
        close: bool,
    ) -> (String, Head) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut out = Vec::new();
        let f = write_head(
            &mut out,
            StatusCode::from_u16(status).unwrap(),
            &map,
            exact,
            close,
            b"Sat, 05 Dec 2026 19:00:00 GMT",
        );
        (String::from_utf8(out).unwrap(), f)
    }

    #[test]
    fn heads_are_written_with_their_framing() {
        let (h, f) = head(
            200,
            &[("content-type", "application/json")],
            Some(12),
            false,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: Sat, 05 Dec 2026 19:00:00 GMT\r\ncontent-length: 12\r\n\r\n"
        );
        assert_eq!(f.framing, Framing::Length(12));
        let (h, f) = head(200, &[], None, true);
        assert!(
            h.ends_with("connection: close\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{h}"
        );
        assert_eq!(f.framing, Framing::Chunked);
        // A length the handler set frames the body.
        let (h, f) = head(200, &[("content-length", "5")], None, false);
        assert!(
            h.contains("content-length: 5\r\n") && !h.contains("chunked"),
            "{h}"
        );
        assert_eq!(f.framing, Framing::Length(5));
        // No body after 204 and 304, nor a length (hyper drops a 304's too).
        let (h, f) = head(204, &[("content-length", "5")], Some(0), false);
        assert!(!h.contains("content-length"), "{h}");
        assert_eq!(f.framing, Framing::None);
        let (h, f) = head(304, &[("content-length", "5")], Some(0), false);
        assert!(!h.contains("content-length"), "{h}");
        assert_eq!(f.framing, Framing::None);
        // The answer's own Date and Connection are kept, not doubled; its Transfer-Encoding is
        // not passed on.
        let (h, f) = head(
            503,
            &[
                ("date", "x"),
                ("connection", "close"),
                ("transfer-encoding", "gzip"),
            ],
            Some(0),
            true,
        );
        assert_eq!(
            h,
            "HTTP/1.1 503 Service Unavailable\r\ndate: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        );
        assert!(f.closes);
        // The handler's own `Connection: close` ends the connection too.
        let (_, f) = head(200, &[("connection", "close")], Some(0), false);
        assert!(f.closes);
        let (_, f) = head(200, &[], Some(0), false);
        assert!(!f.closes);
        // Two lengths that disagree, or one that is no number: the body's own length frames it.
        let (h, f) = head(
            200,
            &[("content-length", "5"), ("content-length", "6")],
            Some(2),
            false,
        );
        assert_eq!(f.framing, Framing::Length(2));
        assert_eq!(h.matches("content-length").count(), 1, "{h}");
        let (h, f) = head(200, &[("content-length", "x")], None, false);
        assert_eq!(f.framing, Framing::Chunked);
        assert!(!h.contains("content-length"), "{h}");
        // A status without a standard reason phrase gets hyper's.
        let (h, _) = head(599, &[], Some(0), false);
        assert!(h.starts_with("HTTP/1.1 599 <none>\r\n"), "{h}");
    }

    #[test]
    fn the_date_is_an_http_date() {
        let d = date();
        let text = std::str::from_utf8(&d).unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
