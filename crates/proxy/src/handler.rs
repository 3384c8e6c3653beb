//! `/proxy/{connection_id}/{*path}` with GET, HEAD, POST, PUT, PATCH or DELETE: the HTTP face of
//! the [`Engine`](tokenwarden_engine::Engine). The caller has already been authenticated with its API key (the server mounts
//! this behind its `Caller` extractor, for those methods only: TRACE, CONNECT and OPTIONS are 405).

use crate::answer::{ErrorAnswer, reauthorize_url};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::classify::{Action, Kind};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::oauth1::percent_decode;
use tokenwarden_core::soap::EnvelopeError;
use tokenwarden_engine::call::{Call, Engine, OutBody, Outcome, ProxyError, Report, Target};
use tokenwarden_engine::transport::{ClientError, PooledClient, PooledTransport, Timeouts};
use url::Url;

/// The route the server mounts.
pub const ROUTE: &str = "/proxy/{connection_id}/{*path}";
/// The path prefix of [`ROUTE`].
const PREFIX: &str = "/proxy/";

/// Request header: the caller's budget in milliseconds for queueing and waiting.
pub const BUDGET: &str = "tokenwarden-budget-ms";
/// Response header: the classification's kind.
pub const KIND: &str = "tokenwarden-kind";
/// Response header: what to do now.
pub const ACTION: &str = "tokenwarden-action";
/// Response header: calls made to the platform.
pub const ATTEMPTS: &str = "tokenwarden-attempts";
/// Response header: time spent queueing and waiting, in milliseconds.
pub const WAITED: &str = "tokenwarden-waited-ms";
/// Response header: the wait the platform asked for (or the poll interval), in milliseconds.
pub const RETRY_AFTER: &str = "tokenwarden-retry-after-ms";
/// Response header: `true` when the token was refreshed on the way.
pub const REFRESHED: &str = "tokenwarden-refreshed";
/// Response header: the platform's own error code, when the answer is not a success.
pub const PLATFORM_CODE: &str = "tokenwarden-platform-code";
/// Response header: the link that re-authorizes the connection, when it needs it.
pub const REAUTHORIZE_URL: &str = "tokenwarden-reauthorize-url";

/// The proxy: an engine, the client that reaches the platforms, and where people re-authorize.
#[derive(Debug)]
pub struct Proxy {
    engine: Arc<Engine>,
    client: PooledClient,
    public_url: Url,
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

impl Proxy {
    /// A proxy over `engine`; re-authorization links start at `public_url`.
    pub fn new(engine: Arc<Engine>, public_url: Url) -> Result<Proxy, ClientError> {
        // Hardening rule 7: a redirect would carry the credential (TikTok's Access-Token is not
        // stripped on a cross-host redirect) and the body elsewhere; this client follows none.
        let client = PooledClient::new(Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(120),
        })?;
        Ok(Proxy {
            engine,
            client,
            public_url,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Forwards one request and answers with the platform's response (or our JSON error).
    pub async fn handle(&self, req: Request) -> Response {
        // On the heap: the call's future (the healing loop with its waits and replays) is several
        // KiB, and axum moves the handler's future more than once per request.
        match Box::pin(self.forward(req)).await {
            Ok(r) => r,
            Err(e) => self.error_response(e),
        }
    }

    async fn forward(&self, req: Request) -> Result<Response, ProxyError> {
        let cfg = self.engine.config().clone();
        let (parts, body) = req.into_parts();
        // The raw path, still percent-encoded: the safety checks see what the caller sent.
        let raw = parts.uri.path();
        let rest = raw.strip_prefix(PREFIX).unwrap_or("");
        let (id, path) = match rest.split_once('/') {
            Some((id, p)) => (id, ["/", p].concat()),
            None => (rest, "/".to_string()),
        };
        // The id is one path segment, percent-decoded as every other path parameter is (a client
        // may send `:` as `%3A`); the platform path after it stays raw for the safety checks.
        let Some(connection) = percent_decode(id).and_then(|id| ConnectionId::parse(id).ok())
        else {
            return Ok(bad_request("bad_id", "the connection id is not valid"));
        };
        let budget = match parts.headers.get(crate::handler::BUDGET) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => {
                    return Ok(bad_request(
                        "bad_budget",
                        "tokenwarden-budget-ms must be a whole number of milliseconds",
                    ));
                }
            },
        };
        if parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > cfg.max_request_bytes)
        {
            return Err(ProxyError::RequestTooLarge {
                limit: cfg.max_request_bytes,
            });
        }
        let body = OutBody::from_stream(
            body.into_data_stream(),
            cfg.replay_buffer,
            cfg.max_request_bytes,
        )
        .await?;
        let call = Call {
            connection,
            method: parts.method.clone(),
            target: Target::Path {
                path,
                query: parts.uri.query().map(str::to_string),
            },
            headers: parts.headers,
            body,
            budget,
        };
        let outcome = self
            .engine
            .execute(call, &mut PooledTransport(&self.client))
            .await?;
        Ok(self.respond(outcome, cfg.max_response_bytes))
    }

    fn respond(&self, outcome: Outcome, limit: u64) -> Response {
        let Outcome {
            mut response,
            prefix,
            complete,
            report,
        } = outcome;
        let status = response.status();
        let mut headers = tokenwarden_engine::headers::inbound(
            std::mem::take(response.headers_mut()),
            report.credential_header(),
        );
        report_headers(&mut headers, &report, self.engine.config().time_scale);
        if report.reauth_required {
            set(
                &mut headers,
                REAUTHORIZE_URL,
                &reauthorize_url(&self.public_url, report.connection.as_str()),
            );
        }
        // An answer that ended within what the classifier read (most API answers) goes out as
        // the bytes in hand, its length known; only a longer one streams (issue 19). The
        // limit was checked against the prefix already.
        let body = if complete {
            drop(response);
            Body::from(prefix)
        } else {
            Body::from_stream(Outcome::body_stream(prefix, response, limit))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    fn error_response(&self, e: ProxyError) -> Response {
        let (attempts, waited) = match &e {
            ProxyError::OverBudget {
                attempts, waited, ..
            } => (*attempts, *waited),
            ProxyError::Unreachable { attempts, .. } => (*attempts, Duration::ZERO),
            _ => (0, Duration::ZERO),
        };
        respond(self.answer(&e), attempts, waited)
    }

    /// The proxy's own failures, and the token and store failures in the table the API uses too
    /// ([`ErrorAnswer`]).
    fn answer(&self, e: &ProxyError) -> ErrorAnswer {
        let bad = |code, message: String| ErrorAnswer::new(StatusCode::BAD_REQUEST, code, message);
        match e {
            ProxyError::Token { failure, .. } => {
                ErrorAnswer::token_failure(failure, &self.public_url)
            }
            ProxyError::Store(inner) => ErrorAnswer::store(inner),
            ProxyError::Refused(r) => bad("target_refused", r.to_string()),
            ProxyError::BadHeader(b) => bad("bad_header", b.to_string()),
            ProxyError::BadBody => bad("bad_body", e.to_string()),
            ProxyError::Unsignable(_) => bad("unsignable", e.to_string()),
            ProxyError::Envelope(EnvelopeError::TooLarge) => ErrorAnswer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "envelope_too_large",
                e.to_string(),
            ),
            ProxyError::Envelope(_) => bad("bad_envelope", e.to_string()),
            ProxyError::OverBudget {
                would_wait,
                attempts,
                waited,
            } => ErrorAnswer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "budget_exhausted",
                format!(
                    "the call would have to wait {} ms more to stay within the platform's limits; raise {BUDGET} or try later",
                    would_wait.as_millis()
                ),
            )
            .verdict(Kind::RateLimited, Action::BackoffAndRetry)
            .with("would_wait_ms", would_wait.as_millis() as u64)
            .with("attempts", *attempts)
            .with("waited_ms", waited.as_millis() as u64)
            .wait(would_wait.as_secs().max(1)),
            ProxyError::Unreachable { attempts, .. } => {
                ErrorAnswer::new(StatusCode::BAD_GATEWAY, "upstream_unreachable", e.to_string())
                    .verdict(Kind::ServiceUnavailable, Action::BackoffAndRetry)
                    .with("attempts", *attempts)
            }
            ProxyError::RequestTooLarge { .. } => ErrorAnswer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                e.to_string(),
            ),
            ProxyError::ResponseTooLarge { .. } => {
                ErrorAnswer::new(StatusCode::BAD_GATEWAY, "response_too_large", e.to_string())
            }
        }
    }
}

fn verdict_headers(h: &mut HeaderMap, kind: Kind, action: Action, attempts: u32, waited: Duration) {
    set(h, KIND, kind.as_str());
    set(h, ACTION, action.as_str());
    set(h, ATTEMPTS, &attempts.to_string());
    set(h, WAITED, &waited.as_millis().to_string());
}

fn bad_request(code: &'static str, message: &str) -> Response {
    respond(
        ErrorAnswer::new(StatusCode::BAD_REQUEST, code, message),
        0,
        Duration::ZERO,
    )
}

/// An error answer as the proxy sends it: the JSON body, `Cache-Control: no-store`, the verdict
/// headers, `Retry-After` (and ours in milliseconds) and the re-authorization link.
fn respond(answer: ErrorAnswer, attempts: u32, waited: Duration) -> Response {
    let mut resp = (answer.status, axum::Json(answer.body())).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    verdict_headers(h, answer.kind, answer.action, attempts, waited);
    if let Some(secs) = answer.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
        // Our own waits are real time already.
        set(h, RETRY_AFTER, &(secs * 1000).to_string());
    }
    if let Some(url) = &answer.reauthorize_url {
        set(h, REAUTHORIZE_URL, url);
    }
    resp
}

/// `n` as a header value: the usual small ones (one attempt, no wait) from static text, the
/// others written out (an allocation each).
fn number(n: u64) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match usize::try_from(n).ok().and_then(|i| DIGITS.get(i)) {
        Some(d) => HeaderValue::from_static(d),
        None => HeaderValue::from(n),
    }
}

/// Adds the classification headers every proxied (or in-process) response carries. `time_scale`
/// turns the platform's waits into real time.
pub fn report_headers(h: &mut HeaderMap, r: &Report, time_scale: f64) {
    // Every proxied answer carries these: names and words are static, numbers written with
    // `HeaderValue`'s own integer conversion (no validation pass, no `String`; issue 19).
    static NAMES: [HeaderName; 5] = [
        HeaderName::from_static(KIND),
        HeaderName::from_static(ACTION),
        HeaderName::from_static(ATTEMPTS),
        HeaderName::from_static(WAITED),
        HeaderName::from_static(REFRESHED),
    ];
    static RETRY_AFTER_NAME: HeaderName = HeaderName::from_static(RETRY_AFTER);
    let [kind, action, attempts, waited, refreshed] = &NAMES;
    let c = &r.classification;
    let millis = |d: Duration| number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    h.insert(kind.clone(), HeaderValue::from_static(c.kind.as_str()));
    h.insert(action.clone(), HeaderValue::from_static(r.action.as_str()));
    h.insert(attempts.clone(), number(u64::from(r.attempts)));
    h.insert(waited.clone(), millis(r.waited));
    if r.refreshed {
        h.insert(refreshed.clone(), HeaderValue::from_static("true"));
    }
    if let Some(d) = c.retry_after {
        let real = tokenwarden_core::clock::to_real(d, time_scale);
        h.insert(RETRY_AFTER_NAME.clone(), millis(real));
    }
    if let Some(code) = c.platform_code.as_ref().filter(|_| c.kind != Kind::Ok) {
        set(h, PLATFORM_CODE, code);
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0u64, 1, 9, 10, 11, 99, 1000, 30_000, u64::MAX] {
            assert_eq!(super::number(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn a_connection_id_segment_is_percent_decoded() {
        assert_eq!(percent_decode("acme%3Aeu").as_deref(), Some("acme:eu"));
        assert_eq!(percent_decode("plain-id").as_deref(), Some("plain-id"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("\u{e9}"));
        for bad in ["%", "%4", "%zz", "%FF", "%+1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
