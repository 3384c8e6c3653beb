//! The HTTP side of the provider client.

use crate::request::{AppCredentials, Prepared, Vars, authorize_url, prepare};
use crate::response::{TokenError, TokenGrant, read};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::classify::{Classification, Kind, ResponseView};
use tokenwarden_core::clock::Clock;
use tokenwarden_core::provider::{Context, Method, Provider, TokenCall, TokenKind};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use url::Url;

/// At most this much of a token response is read (hardening rule 8).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// How long a token endpoint has to answer a call, connection included (time this process spends
/// stopped does not count; see [`patient`]).
pub const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Talks to token endpoints as each provider's definition says.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl OAuthClient {
    /// A client that never follows redirects (a 307 would re-send the client secret elsewhere;
    /// hardening rule 7), with bounded connect and total times.
    pub fn new(clock: Arc<dyn Clock>) -> Result<OAuthClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            // No total timeout here: reqwest's would throw away an answer that arrived while this
            // process was stopped; `patient` bounds each call instead.
            .user_agent(concat!("tokenwarden/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OAuthClient {
            http,
            clock,
            timeout: TOKEN_CALL_TIMEOUT,
        })
    }

    /// The same client with another limit per call (default [`TOKEN_CALL_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The authorize URL for a new flow.
    pub fn authorize_url(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        state: &str,
        scopes: &[String],
        pkce_challenge: Option<&str>,
    ) -> Url {
        authorize_url(&provider.spec, app, state, scopes, pkce_challenge)
    }

    /// Exchanges an authorization code, then (for Threads and Meta) at once upgrades the
    /// short-lived token to a long-lived one. Either both succeed or nothing is returned.
    pub async fn exchange_code(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        code: &Secret,
        verifier: Option<&Secret>,
    ) -> Result<TokenGrant, TokenError> {
        let vars = Vars {
            code: Some(code),
            code_verifier: verifier,
            ..Default::default()
        };
        let first = self
            .call(provider, &provider.spec.token.exchange, app, &vars, None)
            .await?;
        let Some(upgrade) = &provider.spec.token.upgrade else {
            return Ok(first);
        };
        let vars = Vars {
            access_token: Some(&first.tokens.access_token),
            ..Default::default()
        };
        let mut long = self
            .call(provider, upgrade, app, &vars, Some(&first.tokens))
            .await?;
        for a in first.account_ids {
            if !long.account_ids.contains(&a) {
                long.account_ids.push(a);
            }
        }
        Ok(long)
    }

    /// OAuth 1.0a, first leg: asks for temporary credentials (a request token and its secret)
    /// with tokenwarden's callback (`app.redirect_uri`). The secret signs the access-token call;
    /// the token goes to the authorize page and comes back on the callback.
    pub async fn request_token(
        &self,
        provider: &Provider,
        app: &AppCredentials,
    ) -> Result<RequestToken, TokenError> {
        let id = provider.spec.id.as_str();
        let nonce = tokenwarden_core::oauth1::nonce_from(rand::random());
        let Some(prepared) = crate::request::prepare_request_token(
            &provider.spec,
            app,
            &nonce,
            self.clock.now().timestamp(),
        ) else {
            return Err(TokenError::Malformed {
                provider: id.to_string(),
                reason: "the definition has no [oauth1] table".into(),
            });
        };
        let (status, headers, body) = self.send(provider, prepared).await?;
        let verdict = provider.classifier().classify(
            &ResponseView {
                status,
                headers: &headers,
                body: &body,
            },
            Context::TokenEndpoint,
            self.clock.now(),
        );
        if verdict.kind != Kind::Ok {
            // The request token is the app's own call: a refusal is the app's configuration.
            return Err(match crate::response::failure(id, verdict) {
                TokenError::Refused {
                    provider,
                    classification,
                } => TokenError::Misconfigured {
                    provider,
                    classification,
                },
                other => other,
            });
        }
        let malformed = |reason: &str| TokenError::Malformed {
            provider: id.to_string(),
            reason: reason.to_string(),
        };
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        // RFC 5849 §2.1: the callback must have been accepted.
        if fields.get("oauth_callback_confirmed").map(String::as_str) != Some("true") {
            return Err(malformed("the platform did not confirm the callback"));
        }
        match (fields.get("oauth_token"), fields.get("oauth_token_secret")) {
            (Some(t), Some(s)) if !t.is_empty() && !s.is_empty() => Ok(RequestToken {
                token: t.clone(),
                secret: Secret::new(s.clone()),
            }),
            _ => Err(malformed("no request token in the answer")),
        }
    }

    /// OAuth 1.0a, last leg: exchanges the verifier the callback brought for token credentials,
    /// signing with the request token and its secret.
    pub async fn access_token(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        request: &RequestToken,
        verifier: &Secret,
    ) -> Result<TokenGrant, TokenError> {
        let vars = Vars {
            code: Some(verifier),
            ..Default::default()
        };
        let nonce = tokenwarden_core::oauth1::nonce_from(rand::random());
        let prepared = crate::request::prepare_access_token(
            &provider.spec.token.exchange,
            app,
            &vars,
            &request.token,
            &request.secret,
            &nonce,
            self.clock.now().timestamp(),
        );
        let (status, headers, body) = self.send(provider, prepared).await?;
        read(provider, status, &headers, &body, None, self.clock.now())
    }

    /// Renews `current` (refresh-token grant or self-refresh, as the provider says).
    pub async fn refresh(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        current: &TokenSet,
    ) -> Result<TokenGrant, TokenError> {
        let id = provider.spec.id.as_str();
        let call = provider
            .spec
            .token
            .refresh
            .as_ref()
            .ok_or_else(|| TokenError::Malformed {
                provider: id.to_string(),
                reason: "this provider's tokens cannot be refreshed".into(),
            })?;
        if !provider.spec.refresh.renews(current) {
            // A long-term token of a platform that refreshes only the sets it issued with a
            // refresh token (TikTok Business): there is nothing to send, and a refresh call
            // without one would be refused as a bad request.
            return Err(TokenError::Transient {
                provider: id.to_string(),
                reason: "this token was issued without a refresh token (a long-term token): it is watched, not renewed".into(),
                classification: None,
            });
        }
        let vars = Vars {
            refresh_token: current.refresh_token.as_ref(),
            access_token: Some(&current.access_token),
            ..Default::default()
        };
        let sent_at = std::time::Instant::now();
        let (status, headers, body) = match self.send_raw(provider, prepare(call, app, &vars)).await
        {
            Ok(answer) => answer,
            // The request may have reached the platform and rotated the refresh token, and only
            // the answer was lost. Where the platform still accepts the old token for a while,
            // ask again at once, inside that grace; without one, the old token may already be
            // dead and a reuse could revoke the grant, so the caller decides (and backs off).
            Err(Lost {
                error,
                maybe_delivered: true,
            }) if provider
                .spec
                .refresh
                .reuse_grace
                .is_some_and(|g| sent_at.elapsed() < g) =>
            {
                tracing::info!(
                    provider = id,
                    reason = %error,
                    "a refresh answer was lost; retrying within the reuse grace"
                );
                self.send(provider, prepare(call, app, &vars)).await?
            }
            Err(lost) => return Err(lost.error),
        };
        read(
            provider,
            status,
            &headers,
            &body,
            Some(current),
            self.clock.now(),
        )
    }

    /// Revokes the tokens at the platform, where it has a revocation endpoint: one call, or with
    /// `tokens` listed (RFC 7009), one call per token the set holds, in the listed order. Returns
    /// whether a call was made. The first failure stops the rest.
    pub async fn revoke(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        current: &TokenSet,
    ) -> Result<bool, TokenError> {
        let Some(call) = &provider.spec.token.revoke else {
            return Ok(false);
        };
        let base = Vars {
            refresh_token: current.refresh_token.as_ref(),
            access_token: Some(&current.access_token),
            ..Default::default()
        };
        if call.tokens.is_empty() {
            self.token_endpoint_ok(provider, call, app, &base).await?;
            return Ok(true);
        }
        let mut made = false;
        for kind in &call.tokens {
            let token = match kind {
                TokenKind::AccessToken => Some(&current.access_token),
                TokenKind::RefreshToken => current.refresh_token.as_ref(),
            };
            let Some(token) = token else { continue };
            let vars = Vars {
                token: Some(token),
                token_type_hint: Some(kind.hint()),
                ..base
            };
            self.token_endpoint_ok(provider, call, app, &vars).await?;
            made = true;
        }
        Ok(made)
    }

    /// Asks the introspection endpoint (RFC 7662) whether `current`'s access token is active, and
    /// answers as the classifier would for an API call: `active: true` is ok, `active: false` is
    /// classified as an RFC 6750 `invalid_token` challenge (so the provider's own rules and the
    /// refresh style decide what to do), and a failing endpoint keeps its own verdict (throttled,
    /// down, or the app's credentials refused).
    pub async fn introspect(
        &self,
        provider: &Provider,
        app: &AppCredentials,
        current: &TokenSet,
    ) -> Result<Classification, TokenError> {
        let id = provider.spec.id.as_str();
        let call =
            provider
                .spec
                .token
                .introspect
                .as_ref()
                .ok_or_else(|| TokenError::Malformed {
                    provider: id.to_string(),
                    reason: "this provider has no introspection endpoint".into(),
                })?;
        let vars = Vars {
            access_token: Some(&current.access_token),
            token: Some(&current.access_token),
            token_type_hint: Some(TokenKind::AccessToken.hint()),
            ..Default::default()
        };
        let (status, headers, body) = self.send(provider, prepare(call, app, &vars)).await?;
        let now = self.clock.now();
        let verdict = provider.classifier().classify(
            &ResponseView {
                status,
                headers: &headers,
                body: &body,
            },
            Context::TokenEndpoint,
            now,
        );
        if verdict.kind != Kind::Ok {
            return Ok(verdict);
        }
        let active = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool));
        match active {
            Some(true) => Ok(verdict),
            // RFC 7662 §2.2: inactive means expired, revoked or unknown: what a resource server
            // says with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).
            Some(false) => {
                let challenge = [(
                    "www-authenticate".to_string(),
                    "Bearer error=\"invalid_token\", error_description=\"introspection: the token is not active\"".to_string(),
                )];
                Ok(provider.classifier().classify(
                    &ResponseView {
                        status: 401,
                        headers: &challenge,
                        body: b"",
                    },
                    Context::Api,
                    now,
                ))
            }
            None => Err(TokenError::Malformed {
                provider: id.to_string(),
                reason: "the introspection response has no boolean \"active\"".into(),
            }),
        }
    }

    /// Makes one call whose answer carries no tokens (revocation): ok, or the sorted failure.
    async fn token_endpoint_ok(
        &self,
        provider: &Provider,
        call: &TokenCall,
        app: &AppCredentials,
        vars: &Vars<'_>,
    ) -> Result<(), TokenError> {
        let (status, headers, body) = self.send(provider, prepare(call, app, vars)).await?;
        let verdict = provider.classifier().classify(
            &ResponseView {
                status,
                headers: &headers,
                body: &body,
            },
            Context::TokenEndpoint,
            self.clock.now(),
        );
        match verdict.kind {
            Kind::Ok => Ok(()),
            _ => Err(crate::response::failure(provider.spec.id.as_str(), verdict)),
        }
    }

    async fn call(
        &self,
        provider: &Provider,
        call: &TokenCall,
        app: &AppCredentials,
        vars: &Vars<'_>,
        previous: Option<&TokenSet>,
    ) -> Result<TokenGrant, TokenError> {
        let (status, headers, body) = self.send(provider, prepare(call, app, vars)).await?;
        read(
            provider,
            status,
            &headers,
            &body,
            previous,
            self.clock.now(),
        )
    }

    async fn send(&self, provider: &Provider, p: Prepared) -> Result<Answer, TokenError> {
        self.send_raw(provider, p).await.map_err(|l| l.error)
    }

    async fn send_raw(&self, provider: &Provider, p: Prepared) -> Result<Answer, Lost> {
        match patient(self.timeout, self.send_unbounded(provider, p)).await {
            Some(answer) => answer,
            None => Err(Lost {
                error: TokenError::Transient {
                    provider: provider.spec.id.to_string(),
                    reason: "the token endpoint did not answer in time".into(),
                    classification: None,
                },
                maybe_delivered: true,
            }),
        }
    }

    async fn send_unbounded(&self, provider: &Provider, p: Prepared) -> Result<Answer, Lost> {
        let id = provider.spec.id.as_str();
        // A failure to connect means nothing was sent; any later one may have been delivered.
        let transient = |e: &reqwest::Error| Lost {
            error: TokenError::Transient {
                provider: id.to_string(),
                reason: describe(e),
                classification: None,
            },
            maybe_delivered: !e.is_connect(),
        };
        let mut req = match p.method {
            Method::GET => self.http.get(p.url),
            Method::POST => self.http.post(p.url),
        };
        if !p.form.is_empty() {
            req = req.form(&p.form);
        }
        if let Some(json) = &p.json {
            req = req.json(json);
        }
        if let Some((user, secret)) = &p.basic {
            req = req.basic_auth(user, Some(secret.expose()));
        }
        if let Some(a) = &p.authorization
            && let Ok(mut v) = reqwest::header::HeaderValue::from_str(a.expose())
        {
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        req = req.header(reqwest::header::ACCEPT, "application/json");
        // The definition's own headers for this call (Reddit's User-Agent); a name or value that
        // is not a valid header is skipped (definitions are validated; values are checked when
        // filled). Set after the client's defaults, so a definition's User-Agent replaces ours.
        for (name, value) in &p.headers {
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                req = req.header(n, v);
            }
        }
        // reqwest's errors print the URL, which for GET token calls holds the secret: strip it.
        let mut resp = req.send().await.map_err(|e| transient(&e.without_url()))?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transient(&e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                return Err(Lost {
                    error: TokenError::Malformed {
                        provider: id.to_string(),
                        reason: format!(
                            "the token response is larger than {} KiB",
                            MAX_TOKEN_RESPONSE / 1024
                        ),
                    },
                    maybe_delivered: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }
}

/// OAuth 1.0a temporary credentials. `Debug` shows neither value.
pub struct RequestToken {
    /// The request token (`oauth_token`): goes to the authorize page, comes back on the
    /// callback. Not a bearer credential, but never logged either.
    pub token: String,
    /// Its secret: signs the access-token call only.
    pub secret: Secret,
}

impl std::fmt::Debug for RequestToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestToken { .. }")
    }
}

/// A timer this late means the process was stopped (SIGSTOP, a frozen VM or container), not
/// that the platform was slow.
const STOPPED: Duration = Duration::from_secs(1);
/// After such a stop, how long an answer that may be waiting in the socket gets to be read.
const AFTER_STOP: Duration = Duration::from_secs(2);

/// Runs `call` for at most `limit`, except that time this process spent stopped does not count: a
/// token endpoint's answer that arrived while the process was stopped is read, not thrown away
/// (with rotating refresh tokens it is the grant's only future; issue 14). A deadline timer that
/// fires a second or more late shows the stop; the call then gets [`AFTER_STOP`] more. `None`
/// when the time is up.
pub(crate) async fn patient<F: std::future::Future>(limit: Duration, call: F) -> Option<F::Output> {
    tokio::pin!(call);
    let mut deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            biased;
            out = &mut call => return Some(out),
            () = tokio::time::sleep_until(deadline) => {
                let now = tokio::time::Instant::now();
                if now.saturating_duration_since(deadline) < STOPPED {
                    return None;
                }
                tracing::info!(
                    stopped_ms = now.saturating_duration_since(deadline).as_millis() as u64,
                    "this process was stopped during a token endpoint call; reading the answer before giving up"
                );
                deadline = now + AFTER_STOP;
            }
        }
    }
}

/// Status, headers and body of a token endpoint's answer.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A call without a usable answer, and whether the platform may nonetheless have acted on it.
struct Lost {
    error: TokenError,
    maybe_delivered: bool,
}

/// Our own words for a transport failure.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the token endpoint did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to the token endpoint".into()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the answer".into()
    } else {
        "the request to the token endpoint failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that is ready only after `rounds` more polls once `rx` has its value, the way a
    /// response waits for the connection task to read the socket after the process resumes.
    async fn answered(rx: tokio::sync::oneshot::Receiver<u32>, rounds: usize) -> u32 {
        let v = rx.await.unwrap_or(0);
        for _ in 0..rounds {
            tokio::task::yield_now().await;
        }
        v
    }

    fn one_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn an_answer_that_arrived_while_the_process_was_stopped_is_read() {
        one_thread().block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let call = tokio::spawn(patient(Duration::from_millis(300), answered(rx, 3)));
            tokio::task::yield_now().await; // the call is waiting, its deadline set
            // The platform answers while the whole runtime is stuck past the deadline, as a
            // SIGSTOPped process is.
            std::thread::spawn(move || tx.send(7));
            std::thread::sleep(Duration::from_millis(1_600));
            assert_eq!(call.await.expect("joined"), Some(7));
        });
    }

    #[test]
    fn a_platform_that_does_not_answer_in_time_is_given_up() {
        one_thread().block_on(async {
            let (_tx, rx) = tokio::sync::oneshot::channel::<u32>();
            assert_eq!(
                patient(Duration::from_millis(50), answered(rx, 0)).await,
                None
            );
        });
    }
}
