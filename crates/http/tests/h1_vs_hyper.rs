//! The crate's own HTTP/1.1 loop (`h1`, `Limits::plain_http1`) against hyper: one router served
//! twice, once each way, the same raw bytes sent to both, and what comes back compared (the
//! status line, the headers but for the `Date` value and their order, the decoded body, trailers,
//! whether the connection stays open), along with the requests the router saw. A client must not
//! be able to tell the two apart but by speed, and nothing it sends may get a request past the
//! framing (a smuggled request would show in the router's log).
//!
//! Where the two differ on purpose (ours answers where hyper drops the connection, or leaves out
//! a length the RFC forbids), the test says how and asserts what ours does ([`both`]); every
//! other case must read the same ([`same`]).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokenwarden_http::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards against hangs only: nothing here should take anywhere near this long.
const HANG: Duration = Duration::from_secs(5);
/// The `Date` a handler sets itself (kept as is by both servers).
const OWN_DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame, as a client sends it after the preface.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

// ---------------------------------------------------------------------------------------------
// The router.

/// What reached the router, in order: "METHOD URI".
type Log = Arc<Mutex<Vec<String>>>;

/// A body that yields its pieces with a pause before each but the first, then optionally breaks
/// or ends with trailers. Its length is unknown ahead (both servers frame it chunked).
struct Paced {
    pieces: VecDeque<Bytes>,
    gap: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fail: bool,
    trailers: Option<HeaderMap>,
}

impl Paced {
    fn new(pieces: &[&'static str], gap: Duration) -> Paced {
        Paced {
            pieces: pieces
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
            gap,
            sleep: None,
            fail: false,
            trailers: None,
        }
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if let Some(piece) = this.pieces.pop_front() {
            this.sleep = Some(Box::pin(tokio::time::sleep(this.gap)));
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        if this.fail {
            this.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other("the body broke"))));
        }
        match this.trailers.take() {
            Some(t) => Poll::Ready(Some(Ok(http_body::Frame::trailers(t)))),
            None => Poll::Ready(None),
        }
    }
}

/// Everything a handler can see of a request (and `ConnectInfo`'s peer), and its body.
async fn echo(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> String {
    use http_body::Body as _;
    let (parts, body) = req.into_parts();
    let mut out = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
    let mut names: Vec<&HeaderName> = parts.headers.keys().collect();
    names.sort_by_key(|n| n.as_str());
    for name in names {
        for value in parts.headers.get_all(name) {
            out.push_str(&format!("{name}: {}\n", value.as_bytes().escape_ascii()));
        }
    }
    out.push_str(&format!(
        "peer: {peer}\nbody hint: {:?} end: {}\n",
        body.size_hint().exact(),
        body.is_end_stream()
    ));
    match axum::body::to_bytes(body, 4 << 20).await {
        Ok(b) => out.push_str(&format!("body: {}\n", b.escape_ascii())),
        Err(e) => out.push_str(&format!("body error: {e}\n")),
    }
    out
}

fn router(log: Log) -> Router {
    let large = |Path(n): Path<usize>| async move {
        (0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>()
    };
    Router::new()
        .route(
            "/json",
            get(|| async { axum::Json(std::collections::BTreeMap::from([("ok", 1), ("n", 2)])) }),
        )
        .route("/large/{n}", get(large))
        .route(
            "/stream",
            get(|| async {
                Body::new(Paced::new(
                    &["one,", "two,", "three"],
                    Duration::from_millis(20),
                ))
            }),
        )
        .route(
            "/broken",
            get(|| async {
                let mut body = Paced::new(&["partial-1,", "partial-2"], Duration::from_millis(20));
                body.fail = true;
                Body::new(body)
            }),
        )
        .route(
            "/trailers",
            get(|| async {
                let mut body = Paced::new(&["with ", "trailers"], Duration::from_millis(10));
                let mut t = HeaderMap::new();
                t.insert("x-checksum", HeaderValue::from_static("abc"));
                body.trailers = Some(t);
                ([(header::TRAILER, "x-checksum")], Body::new(body))
            }),
        )
        .route(
            "/nothing",
            get(|| async { (StatusCode::NO_CONTENT, [("x-a", "1")]) }),
        )
        .route(
            "/cached",
            get(|| async { (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"v1\"")]) }),
        )
        .route(
            "/cached-length",
            get(|| async {
                (
                    StatusCode::NOT_MODIFIED,
                    [(header::ETAG, "\"v1\""), (header::CONTENT_LENGTH, "1234")],
                )
            }),
        )
        .route(
            "/own",
            get(|| async {
                (
                    [
                        (header::CONTENT_LENGTH, "5"),
                        (header::DATE, OWN_DATE),
                        (header::CONNECTION, "close"),
                    ],
                    "hello",
                )
            }),
        )
        .route(
            "/own-stream-length",
            get(|| async {
                (
                    [(header::CONTENT_LENGTH, "13")],
                    Body::new(Paced::new(
                        &["one,", "two,", "three"],
                        Duration::from_millis(10),
                    )),
                )
            }),
        )
        .route(
            "/keep-alive-header",
            get(|| async { ([(header::CONNECTION, "keep-alive")], "ka") }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                (StatusCode::from_u16(code).unwrap(), "s").into_response()
            }),
        )
        .route(
            "/te",
            get(|| async { ([(header::TRANSFER_ENCODING, "chunked")], "full") }),
        )
        .route(
            "/slow",
            any(|req: Request| async move {
                let _ = axum::body::to_bytes(req.into_body(), 1 << 20).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow done"
            }),
        )
        .route("/upload", any(|body: Bytes| async move { body }))
        .fallback(echo)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let log = log.clone();
                async move {
                    log.lock()
                        .unwrap()
                        .push(format!("{} {}", req.method(), req.uri()));
                    next.run(req).await
                }
            },
        ))
}

// ---------------------------------------------------------------------------------------------
// The servers.

struct Running {
    addr: SocketAddr,
    log: Log,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(plain_http1: bool, limits: Limits) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Log::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = Limits {
            plain_http1,
            ..limits
        };
        let task = tokio::spawn(serve(listener, router(log.clone()), limits, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            log,
            stop,
            task,
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the server and checks that `serve` returns (its connections all ended).
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(HANG, self.task)
            .await
            .expect("serve returned after the stop")
            .unwrap()
            .unwrap();
    }
}

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(3),
        ..Limits::default()
    }
}

/// Ours (`plain_http1: true`) and hyper's (`false`), serving the same router.
async fn pair(limits: Limits) -> (Running, Running) {
    (
        Running::start(true, limits).await,
        Running::start(false, limits).await,
    )
}

// ---------------------------------------------------------------------------------------------
// A client reading raw answers.

/// One answer as a client reads it.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    /// The status line as sent (version, code, reason).
    status: String,
    /// Lower-cased names and escaped values, sorted; a server-made `Date` reads `<http-date>`.
    headers: Vec<(String, String)>,
    /// The body, decoded from its framing (`<N bytes, hash H>` when long).
    body: String,
    trailers: Vec<(String, String)>,
    /// The framing ended where it said it would (false: the connection ended first).
    complete: bool,
}

/// How the exchange ended.
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// The connection answered one more request, with this status line.
    Open(String),
    /// The server closed the connection.
    Closed,
    /// Nothing came for [`HANG`].
    Hung,
    /// Something that is not an HTTP/1.x answer: its first bytes.
    Garbage(String),
}

#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    answers: Vec<Answer>,
    after: After,
    /// What reached the router.
    log: Vec<String>,
}

enum Fill {
    More,
    Eof,
    Hung,
}

struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The client's own address, which echoed bodies show as `<peer>`.
    me: String,
}

fn digest(body: &[u8]) -> String {
    if body.len() <= 2048 {
        return body
            .escape_ascii()
            .to_string()
            .replace("\\'", "'")
            .replace("\\\"", "\"");
    }
    // FNV-1a.
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("<{} bytes, hash {hash:016x}>", body.len())
}

/// `bytes` with every `from` replaced by `to`.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

impl Reader {
    async fn fill(&mut self) -> Fill {
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(HANG, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Fill::Eof,
            Ok(Ok(_)) => Fill::More,
            Err(_) => Fill::Hung,
        }
    }

    fn garbage(&self) -> After {
        let n = self.buf.len().min(9);
        After::Garbage(self.buf[..n].escape_ascii().to_string())
    }

    /// One line (without its CRLF), for chunked framing.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !matches!(self.fill().await, Fill::More) {
                return None;
            }
        }
    }

    async fn exactly(&mut self, n: usize, body: &mut Vec<u8>) -> bool {
        while self.buf.len() < n {
            if !matches!(self.fill().await, Fill::More) {
                body.extend_from_slice(&self.buf);
                self.buf.clear();
                return false;
            }
        }
        body.extend(self.buf.drain(..n));
        true
    }

    /// The next answer (an interim one too); `head`: it answers a HEAD request.
    async fn answer(&mut self, head: bool) -> Result<Answer, After> {
        let (status, code, mut headers, len) = loop {
            if !self.buf.is_empty() {
                let mut raw = [httparse::EMPTY_HEADER; 128];
                let mut res = httparse::Response::new(&mut raw);
                match res.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let line_end = self.buf.windows(2).position(|w| w == b"\r\n").unwrap();
                        let status = self.buf[..line_end].escape_ascii().to_string();
                        let headers: Vec<(String, String)> = res
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    h.value.escape_ascii().to_string(),
                                )
                            })
                            .collect();
                        break (status, res.code.unwrap(), headers, len);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(self.garbage()),
                }
            }
            match self.fill().await {
                Fill::More => {}
                Fill::Eof if self.buf.is_empty() => return Err(After::Closed),
                Fill::Eof => return Err(self.garbage()),
                Fill::Hung => return Err(After::Hung),
            }
        };
        self.buf.drain(..len);
        let value = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let chunked = value("transfer-encoding").last().is_some_and(|v| {
            v.rsplit(',')
                .next()
                .unwrap()
                .trim()
                .eq_ignore_ascii_case("chunked")
        });
        let length = value("content-length")
            .first()
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        let complete = if head || code < 200 || code == 204 || code == 304 {
            true
        } else if chunked {
            loop {
                let Some(line) = self.line().await else {
                    break false;
                };
                let size = String::from_utf8_lossy(&line);
                let size = size.split(';').next().unwrap().trim().to_string();
                let Ok(size) = usize::from_str_radix(&size, 16) else {
                    body.extend_from_slice(b"<bad chunk size>");
                    break false;
                };
                if size == 0 {
                    let mut ended = false;
                    while let Some(line) = self.line().await {
                        if line.is_empty() {
                            ended = true;
                            break;
                        }
                        let text = String::from_utf8_lossy(&line).to_string();
                        let (n, v) = text.split_once(':').unwrap_or((&text, ""));
                        trailers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    break ended;
                }
                if !self.exactly(size, &mut body).await {
                    break false;
                }
                if self.line().await.as_deref() != Some(b"") {
                    break false;
                }
            }
        } else if let Some(n) = length {
            self.exactly(n, &mut body).await
        } else {
            // Delimited by the close.
            while matches!(self.fill().await, Fill::More) {}
            body.append(&mut self.buf);
            true
        };
        for (name, value) in &mut headers {
            if name == "date" && value != OWN_DATE {
                assert!(
                    httpdate::parse_http_date(value).is_ok(),
                    "a bad date: {value}"
                );
                *value = "<http-date>".into();
            }
        }
        headers.sort();
        if !self.me.is_empty() {
            body = replace(&body, self.me.as_bytes(), b"<peer>");
        }
        let body = digest(&body);
        Ok(Answer {
            status,
            headers,
            body,
            trailers,
            complete,
        })
    }
}

/// The bytes a case sends, and how.
#[derive(Clone)]
struct Case {
    /// Written one after another, with `gap` between them.
    writes: Vec<Vec<u8>>,
    gap: Duration,
    /// How many final answers to read (fewer if the connection ends first).
    answers: usize,
    /// The answers are to HEAD requests (no body follows them).
    head: bool,
    /// The client shuts its sending side down after the writes.
    half_close: bool,
}

impl Case {
    fn new(bytes: impl AsRef<[u8]>, answers: usize) -> Case {
        Case {
            writes: vec![bytes.as_ref().to_vec()],
            gap: Duration::ZERO,
            answers,
            head: false,
            half_close: false,
        }
    }

    fn writes(writes: &[&[u8]], gap: Duration, answers: usize) -> Case {
        Case {
            writes: writes.iter().map(|w| w.to_vec()).collect(),
            gap,
            ..Case::new("", answers)
        }
    }
}

/// Sends `case` to `server` and reads what comes back.
async fn exchange(server: &Running, case: &Case) -> Transcript {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let me = stream.local_addr().unwrap().to_string();
    for (i, w) in case.writes.iter().enumerate() {
        if i > 0 && !case.gap.is_zero() {
            tokio::time::sleep(case.gap).await;
        }
        if stream.write_all(w).await.is_err() {
            break;
        }
    }
    if case.half_close {
        let _ = stream.shutdown().await;
    }
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
        me,
    };
    let mut answers = Vec::new();
    let mut finals = 0;
    let mut ended = None;
    while finals < case.answers {
        match reader.answer(case.head).await {
            Ok(a) => {
                let interim = a
                    .status
                    .split(' ')
                    .nth(1)
                    .is_some_and(|c| c.starts_with('1'));
                if !interim {
                    finals += 1;
                }
                let complete = a.complete;
                answers.push(a);
                if !complete {
                    ended = Some(After::Closed);
                    break;
                }
            }
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
    }
    let after = match ended {
        Some(e) => e,
        None if case.half_close => match reader.fill().await {
            Fill::Eof if reader.buf.is_empty() => After::Closed,
            Fill::Hung => After::Hung,
            _ => reader.garbage(),
        },
        None => {
            // One more request tells an open connection from a closed one.
            let _ = reader
                .stream
                .write_all(b"GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n")
                .await;
            match reader.answer(false).await {
                Ok(a) => After::Open(a.status),
                Err(e) => e,
            }
        }
    };
    Transcript {
        answers,
        after,
        log: server.log(),
    }
}

/// Sends `case` to ours and to hyper (each on a fresh server), asserts that both read the same,
/// and returns ours.
async fn same(case: Case) -> Transcript {
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(exchange(&ours, &case), exchange(&hyper, &case));
    for t in [&a, &b] {
        assert_ne!(t.after, After::Hung, "a server hung: {t:#?}");
    }
    assert_eq!(a, b, "ours (left) and hyper (right) differ");
    ours.stop().await;
    hyper.stop().await;
    a
}

/// Both servers' transcripts of `case`, for the few cases where they differ on purpose (each
/// test says how, and asserts ours).
async fn both(case: Case) -> (Transcript, Transcript) {
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(exchange(&ours, &case), exchange(&hyper, &case));
    for t in [&a, &b] {
        assert_ne!(t.after, After::Hung, "a server hung: {t:#?}");
    }
    ours.stop().await;
    hyper.stop().await;
    (a, b)
}

fn header<'a>(a: &'a Answer, name: &str) -> Vec<&'a str> {
    a.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// Requests.

#[tokio::test]
async fn a_plain_get() {
    let t = same(Case::new(req("/json"), 1)).await;
    assert_eq!(t.answers[0].body, r#"{"n":2,"ok":1}"#);
    assert_eq!(t.after, After::Open("HTTP/1.1 200 OK".into()));
}

#[tokio::test]
async fn a_get_with_a_query_and_what_a_handler_sees() {
    let t = same(Case::new(req("/echo/a%20b?a=1&b=%20x&c&d=%22q%22"), 1)).await;
    assert!(t.answers[0].body.contains("peer: <peer>"), "{t:#?}");
    same(Case::new(req("http://example.com:8080/abs?x=1"), 1)).await;
    same(Case::new("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 1)).await;
    same(Case::new(req("/"), 1)).await;
    same(Case::new("get /lower-case-method HTTP/1.1\r\n\r\n", 1)).await;
    same(Case::new("PURGE /extension-method HTTP/1.1\r\n\r\n", 1)).await;
    same(Case::new(
        "DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        1,
    ))
    .await;
    same(Case::new(req("/a#fragment"), 1)).await;
}

#[tokio::test]
async fn repeated_headers_keep_their_order() {
    same(Case::new(
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: b\r\nx-a: 2\r\nX-A: 3\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        1,
    ))
    .await;
}

#[tokio::test]
async fn header_values_with_obs_text_tabs_and_odd_spacing() {
    same(Case::new(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xc3\xa9 \xff\x80\r\nX-Tab: a\tb\r\nX-Trail: v \t \r\nX-Lead:\t  v\r\nX-Empty:\r\nX-Spaces:    \r\n\r\n",
        1,
    ))
    .await;
    // Header names of every token character.
    same(Case::new(
        "GET /echo HTTP/1.1\r\nX-!#$%&'*+-.^_`|~09Az: v\r\n\r\n",
        1,
    ))
    .await;
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let t = same(Case::new(
        "GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        1,
    ))
    .await;
    assert_eq!(t.after, After::Closed);
    // A streamed answer to a closing request.
    same(Case::new(
        "GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n",
        1,
    ))
    .await;
    for value in [
        "Close",
        "keep-alive, close",
        " close ",
        "foo,close,bar",
        "keep-alive",
    ] {
        same(Case::new(
            format!("GET /json HTTP/1.1\r\nConnection: {value}\r\n\r\n"),
            1,
        ))
        .await;
    }
    // Two lines: a later keep-alive does not undo a close.
    same(Case::new(
        "GET /json HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        1,
    ))
    .await;
    // The request after a closing one is never served.
    let t = same(Case::new(
        "GET /json HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
        2,
    ))
    .await;
    assert!(!t.log.iter().any(|l| l.contains("never")), "{t:#?}");
}

/// hyper reads `Connection` tokens only from a value that is visible ASCII
/// (`HeaderValue::to_str`): a `close` next to obs-text does not close the connection there.
#[tokio::test]
async fn connection_close_next_to_obs_text() {
    same(Case::new(
        b"GET /json HTTP/1.1\r\nConnection: close, \x80\r\n\r\n",
        1,
    ))
    .await;
}

#[tokio::test]
async fn three_pipelined_gets() {
    let t = same(Case::new(
        format!("{}{}{}", req("/json"), req("/echo?2"), req("/large/20000")),
        3,
    ))
    .await;
    assert_eq!(t.answers.len(), 3);
    assert_eq!(t.log.len(), 4, "three and the probe: {:?}", t.log);
    // Fifty, each with a kilobyte of header, and three of 10 KiB each (more than 16 KiB read
    // at once, each head under it): heads straddle every read.
    let mut many = String::new();
    for i in 0..50 {
        many.push_str(&format!(
            "GET /echo?{i} HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(1000)
        ));
    }
    let t = same(Case::new(&many, 50)).await;
    assert_eq!(t.log.len(), 51);
    let pad = "q".repeat(10 * 1024);
    let big = format!("GET /echo HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n");
    same(Case::new(big.repeat(3), 3)).await;
}

#[tokio::test]
async fn a_get_then_a_post_with_a_body_then_a_get_in_one_write() {
    let bytes = format!(
        "{}POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello worldGET /echo?after HTTP/1.1\r\nX-After: 1\r\n\r\n",
        req("/json")
    );
    let t = same(Case::new(&bytes, 3)).await;
    assert_eq!(t.answers[1].body, "hello world");
    // The same, the last request coming later.
    let (first, last) = bytes.split_at(bytes.find("GET /echo?after").unwrap());
    same(Case::writes(
        &[first.as_bytes(), last.as_bytes()],
        Duration::from_millis(50),
        3,
    ))
    .await;
    // A body whose bytes look like a request is the body.
    same(Case::new(
        format!(
            "{}POST /upload HTTP/1.1\r\nContent-Length: 34\r\n\r\n{}",
            req("/json"),
            req("/smuggled")
        ),
        2,
    ))
    .await;
}

#[tokio::test]
async fn a_request_one_byte_at_a_time() {
    let text = b"GET /echo?x=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
    let bytes: Vec<&[u8]> = text.chunks(1).collect();
    same(Case::writes(&bytes, Duration::from_millis(1), 1)).await;
    // A plain one, then one with a body (the hand-off comes mid-head), then a plain one.
    let text = format!(
        "{}POST /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc{}",
        req("/json"),
        req("/echo")
    );
    let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
    same(Case::writes(&bytes, Duration::from_millis(1), 3)).await;
}

#[tokio::test]
async fn http_1_0() {
    let t = same(Case::new("GET /echo HTTP/1.0\r\nHost: x\r\n\r\n", 1)).await;
    assert!(t.answers[0].status.starts_with("HTTP/1.0 200"), "{t:#?}");
    same(Case::new(
        "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        1,
    ))
    .await;
    // An HTTP/1.0 request after a plain one on the same connection.
    same(Case::new(
        format!("{}GET /json HTTP/1.0\r\n\r\n", req("/json")),
        2,
    ))
    .await;
}

#[tokio::test]
async fn head_requests() {
    for path in ["/json", "/large/20000", "/stream", "/nothing"] {
        let mut case = Case::new(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        case.head = true;
        same(case).await;
    }
}

#[tokio::test]
async fn posts_with_a_length_or_chunked() {
    let t = same(Case::new(
        "POST /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        1,
    ))
    .await;
    assert_eq!(t.answers[0].body, "hello");
    let t = same(Case::new(
        "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        1,
    ))
    .await;
    assert_eq!(t.answers[0].body, "hello world");
    same(Case::new(
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        1,
    ))
    .await;
    // A bad chunk.
    same(Case::new(
        "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        1,
    ))
    .await;
}

#[tokio::test]
async fn an_announced_empty_body() {
    same(Case::new(
        "GET /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        1,
    ))
    .await;
    same(Case::new(
        format!(
            "GET /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n{}",
            req("/json")
        ),
        2,
    ))
    .await;
}

#[tokio::test]
async fn duplicate_and_conflicting_lengths() {
    for lengths in [
        "Content-Length: 0\r\nContent-Length: 0\r\n",
        "Content-Length: 0\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 0\r\n",
        "Content-Length: 0, 0\r\n",
        "Content-Length: 00\r\n",
        "Content-Length: +0\r\n",
        "Content-Length: -0\r\n",
        "Content-Length: 0x0\r\n",
        "Content-Length: 0 0\r\n",
        "Content-Length:\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        same(Case::new(
            format!("GET /echo HTTP/1.1\r\n{lengths}\r\nhello{}", req("/next")),
            2,
        ))
        .await;
    }
}

#[tokio::test]
async fn transfer_encoding_with_a_length_smuggles_nothing() {
    let tail = req("/smuggled");
    for head in [
        "POST /upload HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        "GET /echo HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        "GET /echo HTTP/1.1\r\ntRANSFER-eNCODING: chunked\r\nContent-Length: 0\r\n\r\n",
        "GET /echo HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 0\r\n\r\n",
        "GET /echo HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        "GET /echo HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n",
        "GET /echo HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
        "GET /echo HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
        "GET /echo HTTP/1.1\r\nContent-Length: 0\r\nTransfer_Encoding: chunked\r\n\r\n",
        "GET /echo HTTP/1.1\nContent-Length: 0\nTransfer-Encoding: chunked\n\n",
        "GET /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        // The first request's chunked body, if it is read as one, ends before the second.
        let a = same(Case::new(format!("{head}0\r\n\r\n{tail}"), 2)).await;
        let b = same(Case::new(format!("{head}{tail}"), 2)).await;
        // A request framed both ways is answered (or refused) and the connection closed: what
        // follows it is never taken for a request, however it would be read.
        let lower = head.to_ascii_lowercase();
        if lower.contains("content-length:") && lower.contains("transfer-encoding:") {
            for t in [a, b] {
                assert!(
                    !t.log.iter().any(|l| l.contains("smuggled")),
                    "{head:?}: {t:#?}"
                );
                assert_eq!(t.after, After::Closed, "{head:?}: {t:#?}");
            }
        }
    }
}

#[tokio::test]
async fn expect_100_continue() {
    // The client waits for the 100 before the body.
    let t = same(Case::writes(
        &[
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            b"hello",
        ],
        Duration::from_millis(150),
        1,
    ))
    .await;
    assert!(t.answers[0].status.starts_with("HTTP/1.1 100"), "{t:#?}");
    same(Case::new(
        "GET /echo HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        1,
    ))
    .await;
    same(Case::new(
        "GET /echo HTTP/1.1\r\nExpect: something-else\r\n\r\n",
        1,
    ))
    .await;
}

#[tokio::test]
async fn upgrades_go_to_hyper() {
    same(Case::new(
        "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        1,
    ))
    .await;
    same(Case::new("GET /echo HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 1)).await;
    same(Case::new(
        "GET /echo HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        1,
    ))
    .await;
    same(Case::new("CONNECT example.com:443 HTTP/1.1\r\n\r\n", 1)).await;
}

#[tokio::test]
async fn malformed_request_lines() {
    for line in [
        "GET\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /  HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "GET / FOO/1.1\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET /\u{e9} HTTP/1.1\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\n\r\n",
        "GET http:// HTTP/1.1\r\n\r\n",
        "GET //a//b HTTP/1.1\r\n\r\n",
        "GET ? HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\r\n\r\n",
        "\r\n\r\nGET /json HTTP/1.1\r\n\r\n",
        "GET /json HTTP/1.1\nHost: x\n\n",
        "GET /json HTTP/1.1\r\nHost: x\n\r\n",
    ] {
        same(Case::new(line, 1)).await;
        // After a plain request on the same connection.
        same(Case::new(format!("{}{line}", req("/json")), 2)).await;
    }
}

#[tokio::test]
async fn bad_header_bytes_and_nul() {
    for bytes in [
        &b"GET /echo HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
        b"GET /echo HTTP/1.1\r\nX-A : 1\r\n\r\n",
        b"GET /echo HTTP/1.1\r\n: empty-name\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n",
        b"GET /echo HTTP/1.1\r\n folded: a\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-\xe9: a\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\x00\r\n\r\n",
        b"GET /echo HTTP/1.1\r\n\x00: a\r\n\r\n",
        b"\xff\xfe\xfd\r\n\r\n",
    ] {
        same(Case::new(bytes, 1)).await;
        let mut after_plain = req("/json").into_bytes();
        after_plain.extend_from_slice(bytes);
        same(Case::new(after_plain, 2)).await;
    }
}

fn head_of(headers: usize, extra: &str) -> String {
    let mut text = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for i in 0..headers {
        text.push_str(&format!("X-{i}: v{i}\r\n"));
    }
    text.push_str(extra);
    text.push_str("\r\n");
    text
}

#[tokio::test]
async fn long_heads_and_many_headers() {
    // Over our 16 KiB, well under hyper's limit: served (by hyper).
    let big = format!("X-Big: {}\r\n", "b".repeat(20_000));
    let t = same(Case::new(head_of(1, &big), 1)).await;
    assert!(t.answers[0].status.starts_with("HTTP/1.1 200"), "{t:#?}");
    // Just under and just over 16 KiB.
    for n in [16 * 1024 - 64, 16 * 1024 - 30, 16 * 1024, 16 * 1024 + 10] {
        let fill = "c".repeat(n - head_of(0, "X-Fill: \r\n").len());
        same(Case::new(head_of(0, &format!("X-Fill: {fill}\r\n")), 1)).await;
    }
    // Past hyper's own limit.
    let huge = format!("X-Huge: {}\r\n", "h".repeat(600_000));
    same(Case::new(head_of(0, &huge), 1)).await;
    // One header too many for ours (64 + Host), and one too many for hyper (100).
    for n in [63, 64, 65, 99, 100, 101] {
        same(Case::new(head_of(n, ""), 1)).await;
    }
    // A long head after a plain request on the same connection.
    same(Case::new(
        format!("{}{}", req("/json"), head_of(1, &big)),
        2,
    ))
    .await;
}

// ---------------------------------------------------------------------------------------------
// Answers.

#[tokio::test]
async fn large_answers() {
    let t = same(Case::new(req("/large/20000"), 1)).await;
    assert!(
        t.answers[0].body.starts_with("<20000 bytes"),
        "{:?}",
        t.answers[0].body
    );
    let t = same(Case::new(req("/large/1000000"), 1)).await;
    assert!(
        t.answers[0].body.starts_with("<1000000 bytes"),
        "{:?}",
        t.answers[0].body
    );
    same(Case::new(
        format!("{}{}", req("/large/1000000"), req("/large/17000")),
        2,
    ))
    .await;
}

#[tokio::test]
async fn a_streamed_answer() {
    let t = same(Case::new(req("/stream"), 1)).await;
    assert_eq!(t.answers[0].body, "one,two,three");
    // A handler's own length frames a body of unknown length.
    same(Case::new(req("/own-stream-length"), 1)).await;
}

#[tokio::test]
async fn an_answer_that_breaks_midway() {
    let t = same(Case::new(req("/broken"), 1)).await;
    assert!(!t.answers[0].complete, "{t:#?}");
    assert_eq!(t.after, After::Closed);
}

/// hyper sends a body's trailers to a client that asked for them (`TE: trailers`) when the
/// answer names them (`Trailer`); ours sends no trailers, so a request with `TE` is hyper's.
#[tokio::test]
async fn trailers() {
    same(Case::new(req("/trailers"), 1)).await;
    same(Case::new(
        "GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
        1,
    ))
    .await;
}

/// axum gives an empty answer `content-length: 0`; both leave it out of a 304 and a 204: a 304
/// that says 0 for a resource whose 200 has a body is what RFC 9110 §8.6 forbids ("MUST NOT send Content-Length in such a response unless its field value
/// equals the decimal number of octets that would have been sent in the content of a 200").
#[tokio::test]
async fn no_content_and_not_modified() {
    same(Case::new(req("/nothing"), 1)).await;
    same(Case::new(req("/cached"), 1)).await;
    same(Case::new(
        format!("{}{}", req("/nothing"), req("/cached")),
        2,
    ))
    .await;
}

/// A 304 whose handler gave the length of the body it would have had: both drop it (the body is
/// empty).
#[tokio::test]
async fn not_modified_with_its_own_length() {
    same(Case::new(req("/cached-length"), 1)).await;
}

#[tokio::test]
async fn a_handler_s_own_length_date_and_close() {
    let t = same(Case::new(format!("{}{}", req("/own"), req("/never")), 2)).await;
    assert_eq!(t.after, After::Closed);
    assert!(
        t.answers[0]
            .headers
            .contains(&("date".into(), OWN_DATE.into()))
    );
}

#[tokio::test]
async fn a_handler_s_keep_alive_header() {
    same(Case::new(req("/keep-alive-header"), 1)).await;
}

/// The same, when the client asked to close: hyper adds `close` to the handler's `Connection`
/// line (`connection: keep-alive, close`), ours writes a second line (`connection: keep-alive`,
/// `connection: close`). The same meaning, two spellings.
#[tokio::test]
async fn a_handler_s_keep_alive_header_when_the_client_closes() {
    let (ours, hyper) = both(Case::new(
        "GET /keep-alive-header HTTP/1.1\r\nConnection: close\r\n\r\n",
        1,
    ))
    .await;
    assert_eq!(
        header(&hyper.answers[0], "connection"),
        ["keep-alive, close"]
    );
    let mut lines = header(&ours.answers[0], "connection");
    lines.sort_unstable();
    assert_eq!(lines, ["close", "keep-alive"]);
    assert_eq!(ours.answers[0].body, hyper.answers[0].body);
    assert_eq!(ours.after, After::Closed);
    assert_eq!(hyper.after, After::Closed);
}

#[tokio::test]
async fn known_statuses() {
    for code in [200, 201, 202, 400, 404, 418, 500, 503] {
        same(Case::new(req(&format!("/status/{code}")), 1)).await;
    }
}

/// A handler that gives a body with a status that has none: hyper writes the body's length
/// (axum's `content-length: 1`) on the 204 though it sends no body, ours leaves it out
/// (RFC 9110 §8.6: no Content-Length in a 204).
#[tokio::test]
async fn a_body_with_a_status_that_has_none() {
    for code in [204, 304] {
        let (ours, hyper) = both(Case::new(req(&format!("/status/{code}")), 1)).await;
        let (a, b) = (&ours.answers[0], &hyper.answers[0]);
        assert_eq!(a.status, b.status);
        assert_eq!(a.body, "", "{code}: no body");
        assert_eq!(
            header(a, "content-length"),
            Vec::<&str>::new(),
            "{code}: {a:#?}"
        );
        assert_eq!(ours.after, hyper.after);
    }
}

/// A handler that answers with an interim status (hyper makes it a 500: a service has one
/// answer to give, and an interim one would leave the client waiting for the final one).
///
/// Ours says it closes (`connection: close`); hyper closes without saying so.
#[tokio::test]
async fn an_interim_status_from_a_handler() {
    let (ours, hyper) = both(Case::new(req("/status/103"), 1)).await;
    assert_eq!(ours.answers[0].status, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(ours.answers[0].status, hyper.answers[0].status);
    assert_eq!(header(&ours.answers[0], "connection"), ["close"]);
    assert_eq!(header(&ours.answers[0], "content-length"), ["0"]);
    assert_eq!(ours.after, After::Closed);
    assert_eq!(hyper.after, After::Closed);
}

/// A status with no canonical reason phrase: hyper writes `<none>` as the reason ("a reason MUST
/// be written, as many parsers will expect it"), and so does ours.
#[tokio::test]
async fn a_status_without_a_reason_phrase() {
    same(Case::new(req("/status/599"), 1)).await;
}

/// A handler that sets `Transfer-Encoding: chunked` on a body of known length (axum adds the
/// `Content-Length`): hyper refuses to write both and closes the connection unanswered; ours
/// drops the handler's `Transfer-Encoding` and frames the body by its length. Ours answers where
/// hyper does not; a framing choice, compared as it is.
#[tokio::test]
async fn a_handler_s_own_transfer_encoding() {
    let (ours, hyper) = both(Case::new(req("/te"), 1)).await;
    assert!(hyper.answers.is_empty(), "{hyper:#?}");
    let a = &ours.answers[0];
    assert_eq!(a.status, "HTTP/1.1 200 OK");
    assert_eq!(a.body, "full");
    assert_eq!(header(a, "content-length"), ["4"]);
    assert_eq!(header(a, "transfer-encoding"), Vec::<&str>::new());
}

/// A client that sends its request and shuts its sending side down at once, as
/// `printf … | nc -N` does, to a handler that takes a while: hyper (half-close off, its default)
/// sees the end of the input while the request is in flight and drops the connection unanswered;
/// ours answers, then closes.
#[tokio::test]
async fn a_half_closed_client_and_a_slow_handler() {
    let mut case = Case::new(req("/slow"), 1);
    case.half_close = true;
    let (ours, hyper) = both(case).await;
    assert!(hyper.answers.is_empty(), "{hyper:#?}");
    assert_eq!(ours.answers[0].status, "HTTP/1.1 200 OK");
    assert_eq!(ours.after, After::Closed);
    assert_eq!(ours.log, hyper.log, "the handler ran for both");
}

/// An unfinished head and then the client's close: no answer, no request.
#[tokio::test]
async fn a_head_cut_short_by_the_client() {
    let mut case = Case::new("GET /json HTTP/1.1\r\nHost", 1);
    case.half_close = true;
    let t = same(case).await;
    assert!(t.answers.is_empty() && t.log.is_empty(), "{t:#?}");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2.

/// The frames a server sends to a prior-knowledge client, up to its acknowledgement of the
/// client's settings.
async fn h2_greeting(addr: SocketAddr, piece: usize) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for p in PREFACE.chunks(if piece == 0 { PREFACE.len() } else { piece }) {
        s.write_all(p).await.unwrap();
        if piece > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    s.write_all(SETTINGS).await.unwrap();
    let mut got = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        while got.len() >= at + 9 {
            let len = usize::from(got[at]) << 16
                | usize::from(got[at + 1]) << 8
                | usize::from(got[at + 2]);
            if got.len() < at + 9 + len {
                break;
            }
            let (kind, flags) = (got[at + 3], got[at + 4]);
            // A WINDOW_UPDATE goes out when the server's task gets to it, before the
            // acknowledgement or after: it is left out.
            if kind != 8 {
                frames.push(got[at..at + 9 + len].to_vec());
            }
            at += 9 + len;
            if kind == 4 && flags & 1 == 1 {
                return frames;
            }
        }
        let n = tokio::time::timeout(HANG, s.read_buf(&mut got))
            .await
            .expect("the server answers the preface")
            .unwrap();
        assert!(n > 0, "closed after the preface: {got:?}");
    }
}

#[tokio::test]
async fn an_http2_preface_gets_the_same_greeting() {
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(h2_greeting(ours.addr, 0), h2_greeting(hyper.addr, 0));
    assert_eq!(a, b);
    // The preface a byte at a time.
    let (c, d) = tokio::join!(h2_greeting(ours.addr, 1), h2_greeting(hyper.addr, 1));
    assert_eq!(c, d);
    assert_eq!(a, c);
    ours.stop().await;
    hyper.stop().await;
}

/// Requests over HTTP/2 with prior knowledge (hyper's client: reqwest is built without HTTP/2
/// here), as a handler sees them.
async fn h2_requests(addr: SocketAddr) -> Vec<String> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let me = stream.local_addr().unwrap().to_string();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let mut out = Vec::new();
    for (method, path, body) in [
        ("GET", "/echo?h2=1", ""),
        ("GET", "/json", ""),
        ("POST", "/upload", "over h2"),
        ("GET", "/stream", ""),
        ("GET", "/nothing", ""),
    ] {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("x-a", "1")
            .body(Body::from(body))
            .unwrap();
        let res = tokio::time::timeout(HANG, send.send_request(req))
            .await
            .expect("an HTTP/2 answer")
            .unwrap();
        let (parts, body) = res.into_parts();
        let mut headers: Vec<String> = parts
            .headers
            .iter()
            .filter(|(n, _)| *n != header::DATE)
            .map(|(n, v)| format!("{n}: {v:?}"))
            .collect();
        headers.sort();
        let body = axum::body::to_bytes(Body::new(body), 4 << 20)
            .await
            .unwrap();
        out.push(format!(
            "{:?} {} {headers:?}\n{}",
            parts.version,
            parts.status,
            String::from_utf8_lossy(&body)
                .replace(&me, "<peer>")
                .replace(&addr.to_string(), "<server>")
        ));
    }
    drop(send);
    let _ = tokio::time::timeout(HANG, conn).await;
    out
}

#[tokio::test]
async fn an_http2_prior_knowledge_client() {
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(h2_requests(ours.addr), h2_requests(hyper.addr));
    assert!(a[0].starts_with("HTTP/2.0 200"), "{a:#?}");
    assert!(a[0].contains("GET http://"), "{a:#?}");
    assert_eq!(a, b);
    let log = |s: &Running| -> Vec<String> {
        s.log()
            .iter()
            .map(|l| l.replace(&s.addr.to_string(), "<server>"))
            .collect()
    };
    assert_eq!(log(&ours), log(&hyper));
    ours.stop().await;
    hyper.stop().await;
}

/// The HTTP/2 preface after an HTTP/1.1 request on the same connection: hyper, reading HTTP/1
/// there, finds the preface and closes the connection unanswered; ours hands such a connection
/// to hyper's HTTP/1 server, which does the same (only a connection that opens with the preface
/// is served as HTTP/2).
#[tokio::test]
async fn an_http2_preface_after_a_plain_request() {
    let mut bytes = req("/json").into_bytes();
    bytes.extend_from_slice(PREFACE);
    bytes.extend_from_slice(SETTINGS);
    same(Case::new(bytes, 2)).await;
}

/// reqwest (HTTP/1.1) reads the same from both.
#[tokio::test]
async fn reqwest_reads_the_same() {
    async fn read(addr: SocketAddr) -> Vec<String> {
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for path in ["/json", "/stream", "/large/1000000", "/nothing", "/echo?x"] {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let mut headers: Vec<String> = r
                .headers()
                .iter()
                .filter(|(n, _)| *n != header::DATE)
                .map(|(n, v)| format!("{n}: {v:?}"))
                .collect();
            headers.sort();
            let body = r.bytes().await.unwrap();
            out.push(format!("{status} {headers:?} {}", digest(&body)));
        }
        let r = client
            .post(format!("http://{addr}/upload"))
            .body("posted")
            .send()
            .await
            .unwrap();
        out.push(r.text().await.unwrap());
        out
    }
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(read(ours.addr), read(hyper.addr));
    let a: Vec<String> = a
        .into_iter()
        .map(|l| l.replace(&ours.addr.to_string(), "<server>"))
        .collect();
    let b: Vec<String> = b
        .into_iter()
        .map(|l| l.replace(&hyper.addr.to_string(), "<server>"))
        .collect();
    // The echoed peer differs (another connection): compare the rest.
    let strip = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|l| l.split("peer: ").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(strip(a), strip(b));
    ours.stop().await;
    hyper.stop().await;
}

// ---------------------------------------------------------------------------------------------
// ConnectInfo on the fast path.

/// The comparisons above do compare the two: plain requests are served by our loop, the rest
/// (and all of a connection after its first such request) by hyper. Told apart by the order of
/// the headers on the wire (which the comparisons ignore): hyper writes `content-length` before
/// `date`, ours after.
#[tokio::test]
async fn the_fast_path_is_taken() {
    async fn served_by(addr: SocketAddr) -> Vec<&'static str> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let bytes = format!(
            "{}{}POST /upload HTTP/1.1\r\nContent-Length: 1\r\n\r\nx{}",
            req("/json"),
            req("/json"),
            req("/json")
        );
        s.write_all(bytes.as_bytes()).await.unwrap();
        let mut reader = Reader {
            stream: s,
            buf: Vec::new(),
            me: String::new(),
        };
        let mut by = Vec::new();
        for _ in 0..4 {
            // The raw head, before the answer is read from the buffer.
            while !reader.buf.windows(4).any(|w| w == b"\r\n\r\n") {
                assert!(matches!(reader.fill().await, Fill::More));
            }
            let end = reader
                .buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap();
            let text = String::from_utf8_lossy(&reader.buf[..end]).to_string();
            let length = text.find("content-length:").unwrap();
            let date = text.find("date:").unwrap();
            by.push(if length < date { "hyper" } else { "h1" });
            reader.answer(false).await.unwrap();
        }
        by
    }
    let (ours, hyper) = pair(limits()).await;
    let (a, b) = tokio::join!(served_by(ours.addr), served_by(hyper.addr));
    assert_eq!(a, ["h1", "h1", "hyper", "hyper"]);
    assert_eq!(b, ["hyper", "hyper", "hyper", "hyper"]);
    ours.stop().await;
    hyper.stop().await;
}

#[tokio::test]
async fn the_peer_reaches_handlers_on_the_fast_path() {
    let ours = Running::start(true, limits()).await;
    let mut s = TcpStream::connect(ours.addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(req("/echo").as_bytes()).await.unwrap();
    let mut reader = Reader {
        stream: s,
        buf: Vec::new(),
        me: "never-replaced".into(),
    };
    let a = reader.answer(false).await.unwrap();
    assert!(a.body.contains(&format!("peer: {me}\\n")), "{a:#?}");
    // And after the hand-off to hyper, on the same connection.
    reader
        .stream
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let a = reader.answer(false).await.unwrap();
    assert!(a.body.contains(&format!("peer: {me}\\n")), "{a:#?}");
    drop(reader);
    ours.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The header-read timeout.

fn quick() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Writes `first`, then reads until the server closes; what came, and whether it closed within
/// the hang guard.
async fn until_closed(addr: SocketAddr, first: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(first).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(HANG, async {
        loop {
            match s.read_buf(&mut got).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// A head that never ends: both close the connection; what they send first must be the same
/// (nothing: a header-read timeout maps to no status).
#[tokio::test]
async fn a_head_that_never_ends_is_cut_off_the_same_way() {
    let (ours, hyper) = pair(quick()).await;
    let partial = b"GET /json HTTP/1.1\r\nHost: x\r\n";
    let ((a, a_closed), (b, b_closed)) = tokio::join!(
        until_closed(ours.addr, partial),
        until_closed(hyper.addr, partial)
    );
    assert!(a_closed, "ours kept a connection with a partial head");
    assert!(b_closed, "hyper kept a connection with a partial head");
    assert!(ours.log().is_empty() && hyper.log().is_empty());
    assert_eq!(
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b),
        "ours (left) and hyper (right) answer a timed-out head differently"
    );
    ours.stop().await;
    hyper.stop().await;
}

/// An idle keep-alive connection is closed after the header-read timeout, by both.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (ours, hyper) = pair(quick()).await;
    let json = req("/json");
    let ((a, a_closed), (b, b_closed)) = tokio::join!(
        until_closed(ours.addr, json.as_bytes()),
        until_closed(hyper.addr, json.as_bytes())
    );
    assert!(a_closed, "ours kept an idle connection");
    assert!(b_closed, "hyper kept an idle connection");
    // The same answer, but for the order of the headers and the date.
    let text = |b: &[u8]| {
        let mut lines: Vec<String> = String::from_utf8_lossy(b)
            .split("\r\n")
            .filter(|l| !l.starts_with("date: "))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(text(&a), text(&b));
    // After a hand-off too.
    let post = b"POST /upload HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    let ((_, a_closed), (_, b_closed)) = tokio::join!(
        until_closed(ours.addr, post),
        until_closed(hyper.addr, post)
    );
    assert!(a_closed && b_closed);
    ours.stop().await;
    hyper.stop().await;
}

/// A head sent a byte at a time, slower than the timeout allows in all: cut off, not served.
#[tokio::test]
async fn a_trickled_head_is_cut_off() {
    async fn trickle(addr: SocketAddr) -> bool {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let text = req("/json");
        let cut = tokio::time::timeout(HANG, async {
            for b in text.as_bytes() {
                tokio::time::sleep(Duration::from_millis(60)).await;
                if s.write_all(&[*b]).await.is_err() {
                    return true;
                }
                // A closed connection shows as a read of 0 (or the 408 first).
                let mut probe = [0u8; 256];
                if let Ok(r) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
                {
                    match r {
                        Ok(0) | Err(_) => return true,
                        Ok(n) => return !probe[..n].starts_with(b"HTTP/1.1 200"),
                    }
                }
            }
            false
        })
        .await;
        cut == Ok(true)
    }
    let (ours, hyper) = pair(quick()).await;
    let (a, b) = tokio::join!(trickle(ours.addr), trickle(hyper.addr));
    assert!(a, "ours served a head that took longer than the timeout");
    assert!(b, "hyper served a head that took longer than the timeout");
    assert!(ours.log().is_empty() && hyper.log().is_empty());
    ours.stop().await;
    hyper.stop().await;
}

/// A connection that never sends a byte: ours closes it after the header-read timeout. (hyper's
/// auto builder waits for the first bytes to tell HTTP/1 from HTTP/2 with no timeout, so with
/// `plain_http1: false` such a connection stays open until the client or the stop ends it.)
#[tokio::test]
async fn a_silent_connection_is_closed_by_ours() {
    let ours = Running::start(true, quick()).await;
    let (got, closed) = until_closed(ours.addr, b"").await;
    assert!(closed, "a silent connection stayed open");
    assert!(got.is_empty(), "{got:?}");
    ours.stop().await;
}

/// The start of an HTTP/2 preface, and then nothing: ours reads the rest of the preface itself,
/// under the header-read timeout, before it hands the connection to hyper, and closes it when
/// the time is up. (hyper alone, `plain_http1: false`, waits for the rest with no timeout: its
/// auto builder's version detection has none.)
#[tokio::test]
async fn a_preface_that_never_ends_is_cut_off() {
    let ours = Running::start(true, quick()).await;
    let mut s = TcpStream::connect(ours.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(HANG, s.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "a connection that sent 16 bytes of an HTTP/2 preface was still open after 5 s, with a \
         header-read timeout of 300 ms"
    );
    drop(s);
    ours.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.

/// Waits until the router has seen a request for `path`.
async fn entered(server: &Running, path: &str) {
    tokio::time::timeout(HANG, async {
        while !server.log().iter().any(|l| l.contains(path)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request reached the router");
}

/// A slow request in flight when the stop comes: answered in full, then the connection closes
/// and `serve` returns.
async fn stop_in_flight(plain: bool, request: &[u8]) -> Transcript {
    let server = Running::start(plain, limits()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    entered(&server, "/slow").await;
    let Running {
        addr: _,
        log,
        stop,
        task,
    } = server;
    let _ = stop.send(());
    let mut reader = Reader {
        stream: s,
        buf: Vec::new(),
        me: String::new(),
    };
    let answer = reader.answer(false).await;
    let after = match reader.answer(false).await {
        Ok(a) => After::Open(a.status),
        Err(e) => e,
    };
    tokio::time::timeout(HANG, task)
        .await
        .expect("serve returned after the stop")
        .unwrap()
        .unwrap();
    let log = log.lock().unwrap().clone();
    Transcript {
        answers: vec![answer.expect("the request in flight was answered")],
        after,
        log,
    }
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_stop() {
    let request = req("/slow");
    let (a, b) = tokio::join!(
        stop_in_flight(true, request.as_bytes()),
        stop_in_flight(false, request.as_bytes())
    );
    assert_eq!(a.answers[0].body, "slow done");
    assert_eq!(a.after, After::Closed);
    assert_eq!(a, b, "ours (left) and hyper (right) differ");
    // With another request pipelined behind it: that one is not served.
    let request = format!("{}{}", req("/slow"), req("/json"));
    let (a, b) = tokio::join!(
        stop_in_flight(true, request.as_bytes()),
        stop_in_flight(false, request.as_bytes())
    );
    assert_eq!(a, b, "ours (left) and hyper (right) differ");
}

/// Sends `first`, stops the server, then sends `rest`: what is answered, and how the
/// connection ends.
async fn half_sent_at_stop(
    plain: bool,
    first: &[u8],
    rest: &[u8],
) -> (Result<Answer, After>, After, Vec<String>) {
    let server = Running::start(plain, limits()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Running {
        log, stop, task, ..
    } = server;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = s.write_all(rest).await;
    let mut reader = Reader {
        stream: s,
        buf: Vec::new(),
        me: String::new(),
    };
    let answer = reader.answer(false).await;
    let after = match reader.answer(false).await {
        Ok(a) => After::Open(a.status),
        Err(e) => e,
    };
    tokio::time::timeout(HANG, task)
        .await
        .expect("serve returned after the stop")
        .unwrap()
        .unwrap();
    let log = log.lock().unwrap().clone();
    (answer, after, log)
}

/// The stop comes while a head is half sent: the request is still answered (and the connection
/// closed after it), by both.
#[tokio::test]
async fn a_head_half_sent_when_the_stop_comes() {
    let (first, rest) = (b"GET /json HTTP/1.1\r\nHost", b": x\r\n\r\n");
    let (a, b) = tokio::join!(
        half_sent_at_stop(true, first, rest),
        half_sent_at_stop(false, first, rest)
    );
    assert!(a.0.is_ok(), "{a:#?}");
    assert_eq!(a, b, "ours (left) and hyper (right) differ");
}

/// The same, when the request turns out to be one ours hands to hyper (a body): hyper is given
/// the connection after the stop, and must still answer it.
#[tokio::test]
async fn a_handed_off_head_half_sent_when_the_stop_comes() {
    let (first, rest) = (
        b"POST /upload HTTP/1.1\r\nHost",
        b": x\r\nContent-Length: 2\r\n\r\nhi",
    );
    let (a, b) = tokio::join!(
        half_sent_at_stop(true, first, rest),
        half_sent_at_stop(false, first, rest)
    );
    // hyper, handed the whole request, answers it in its first poll, before it is told to stop:
    // the answer does not say `connection: close`, the connection is closed after it all the same.
    let (ours, theirs) = (a.0.expect("ours answered"), b.0.expect("hyper answered"));
    assert_eq!((&ours.status, &ours.body), (&theirs.status, &theirs.body));
    assert_eq!(header(&theirs, "connection"), ["close"]);
    assert_eq!(
        (a.1, a.2),
        (b.1, b.2),
        "closed after it, the request seen once"
    );
}

#[tokio::test]
async fn a_handed_off_request_in_flight_finishes_on_stop() {
    let request = b"POST /slow HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    let (a, b) = tokio::join!(
        stop_in_flight(true, request),
        stop_in_flight(false, request)
    );
    assert_eq!(a.answers[0].body, "slow done");
    assert_eq!(a.after, After::Closed);
    assert_eq!(a, b, "ours (left) and hyper (right) differ");
}

/// An idle keep-alive connection is closed on the stop, and `serve` returns.
#[tokio::test]
async fn an_idle_connection_is_closed_on_stop() {
    for plain in [true, false] {
        let server = Running::start(plain, limits()).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(req("/json").as_bytes()).await.unwrap();
        let mut reader = Reader {
            stream: s,
            buf: Vec::new(),
            me: String::new(),
        };
        reader.answer(false).await.unwrap();
        // And one that has sent nothing yet.
        let silent = TcpStream::connect(server.addr).await.unwrap();
        // Let the server take it before the stop.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Running { stop, task, .. } = server;
        let _ = stop.send(());
        assert!(
            matches!(reader.fill().await, Fill::Eof),
            "plain_http1 {plain}: the idle connection stayed open"
        );
        let mut silent = Reader {
            stream: silent,
            buf: Vec::new(),
            me: String::new(),
        };
        assert!(
            matches!(silent.fill().await, Fill::Eof),
            "plain_http1 {plain}: the silent connection stayed open"
        );
        tokio::time::timeout(HANG, task)
            .await
            .expect("serve returned after the stop")
            .unwrap()
            .unwrap();
    }
}
