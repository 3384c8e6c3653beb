//! The probe itself: a connection's token sent with its definition's `api.probe` (an API call,
//! or introspection at the authorization server), and the answer read back (a bounded body) and
//! classified. What the answer means for the connection (its state, problems, when to probe
//! next) is the monitor's ([`crate::monitor`]); the connect flow asks here which account a new
//! grant belongs to.
//!
//! The interface: [`client`] (no redirects, bounded time), [`check`] (does this token work?),
//! [`ask_elsewhere`] (does a refused token work on the platform's other host?), [`identify`]
//! (whose token is it?), and [`header_values`] (what the definition's extra headers are filled
//! from).

use crate::ServerState;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Blame, Classification, Kind, ResponseView};
use tokenwarden_core::connection::{Connection, Environment};
use tokenwarden_core::provider::{Context, HeaderValues, ProbeVia, Provider};
use tokenwarden_core::token::TokenSet;

/// At most this much of a probe's body is read.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// The monitor's HTTP client: no redirects followed (the credential would go along), bounded time.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// What an OAuth 1.0a probe is signed with besides the token: the app's consumer secret (its
/// client secret; the consumer key is its client id) and the time. `Debug` shows no secret.
pub(crate) struct Signer {
    pub(crate) consumer_secret: tokenwarden_core::secret::Secret,
    pub(crate) now: DateTime<Utc>,
}

/// The signer for a connection whose definition signs its calls (`credential_in = "oauth1"`).
async fn signer(s: &ServerState, p: &Provider, conn: &Connection) -> Option<Signer> {
    if p.spec.api.credential_in != tokenwarden_core::provider::CredentialPlacement::OAuth1 {
        return None;
    }
    let app = s.store.get_app(&conn.provider, &conn.app).await.ok()??;
    Some(Signer {
        consumer_secret: app.client_secret,
        now: s.clock.now(),
    })
}

async fn fetch(
    http: &reqwest::Client,
    p: &Provider,
    base: &str,
    token: &TokenSet,
    values: &HeaderValues,
    signer: Option<&Signer>,
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
    let api = &p.spec.api;
    let mut url =
        url::Url::parse(&format!("{}{}", base.trim_end_matches('/'), api.probe.path)).ok()?;
    // Threads takes the token as a query parameter: the URL then holds it, and is never logged.
    api.place_query_credential(&mut url, token.access_token.expose());
    let method =
        reqwest::Method::from_bytes(api.probe.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let signature = signer.map(|sg| {
        use tokenwarden_core::oauth1;
        let nonce = oauth1::nonce_from(rand::random());
        // The probe's body is JSON when it has one: never part of the signature.
        oauth1::authorization(
            &oauth1::Request {
                method: method.as_str(),
                url: &url,
                form_body: None,
            },
            &oauth1::Credentials {
                consumer_key: &values.client_id,
                consumer_secret: sg.consumer_secret.expose(),
                token: Some(token.access_token.expose()),
                token_secret: token.token_secret.as_ref().map_or("", |s| s.expose()),
            },
            &oauth1::Stamp {
                nonce: &nonce,
                timestamp: sg.now.timestamp(),
                extra: &[],
            },
        )
    });
    let mut req = http.request(method, url);
    if let Some((name, value)) = api.credential_header_value(token.access_token.expose()) {
        req = req.header(name, value);
    }
    if let Some(sig) = signature
        && let Ok(mut value) = reqwest::header::HeaderValue::from_str(&sig)
    {
        value.set_sensitive(true);
        req = req.header(api.credential_header.as_str(), value);
    }
    // The definition's headers and those of the app's identity (`IdentityProvider: Google`).
    for h in p
        .spec
        .extra_headers(values)
        .into_iter()
        .filter(|h| h.applies_to(&api.probe.path))
    {
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&h.value) else {
            continue;
        };
        value.set_sensitive(h.sensitive);
        req = req.header(h.name, value);
    }
    // A probe that is a POST with a body (Microsoft Advertising `User/Query`).
    if let Some(body) = &api.probe.body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    let mut resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp
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
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(
            &chunk[..chunk.len().min(MAX_PROBE_BODY.saturating_sub(body.len()))],
        );
        if body.len() >= MAX_PROBE_BODY {
            break;
        }
    }
    Some((status, headers, body))
}

/// Asks whether `token` works, the way the provider's probe says: an API call, or introspection
/// at the authorization server (RFC 7662). `None` when there was no usable answer (unreachable).
pub(crate) async fn check(
    s: &ServerState,
    http: &reqwest::Client,
    p: &Provider,
    conn: &Connection,
    token: &TokenSet,
) -> Option<Classification> {
    if p.spec.api.probe.via == ProbeVia::Introspection {
        let app = s.store.get_app(&conn.provider, &conn.app).await.ok()??;
        let creds = tokenwarden_oauth::AppCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
            user_agent: app.user_agent.clone(),
        };
        return s.oauth.introspect(p, &creds, token).await.ok();
    }
    let values = header_values(s, conn).await;
    let signer = signer(s, p, conn).await;
    api_check(s, http, p, &conn.api_base, token, &values, signer.as_ref()).await
}

/// What a definition's extra API headers (`api.headers`) are filled from for a connection: its
/// app's client id and its recorded account.
pub(crate) async fn header_values(s: &ServerState, conn: &Connection) -> HeaderValues {
    let (client_id, developer_token, user_agent, identity) =
        match s.store.get_app(&conn.provider, &conn.app).await {
            Ok(Some(app)) => (
                app.client_id,
                app.developer_token,
                app.user_agent,
                app.identity,
            ),
            _ => (String::new(), None, None, None),
        };
    HeaderValues {
        client_id,
        developer_token,
        user_agent,
        identity,
        account_id: conn
            .account
            .as_ref()
            .map(|a| a.id.clone())
            .or_else(|| conn.account_ids.first().cloned()),
    }
}

/// The probe's API call against `base`, classified; `None` when unreachable.
async fn api_check(
    s: &ServerState,
    http: &reqwest::Client,
    p: &Provider,
    base: &str,
    token: &TokenSet,
    values: &HeaderValues,
    signer: Option<&Signer>,
) -> Option<Classification> {
    let (status, headers, body) = fetch(http, p, base, token, values, signer).await?;
    Some(p.classifier().classify(
        &ResponseView {
            status,
            headers: &headers,
            body: &body,
        },
        Context::Api,
        s.clock.now(),
    ))
}

/// What the probe call says of the account behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The platform named the account.
    Known(tokenwarden_core::connection::Account),
    /// The definition names no account field (or probes by introspection): ids from the token
    /// response are all there is.
    NotDefined,
    /// The call failed, was refused or its answer had no such field: the account is not known.
    Unknown,
}

/// Asks the platform, with the probe's request, which account `token` belongs to.
pub(crate) async fn identify(
    p: &Provider,
    base: &str,
    token: &TokenSet,
    values: &HeaderValues,
    now: DateTime<Utc>,
) -> Identity {
    if p.spec.api.probe.via != ProbeVia::Api || p.spec.api.probe.account_id.is_none() {
        return Identity::NotDefined;
    }
    // An OAuth 1.0a definition that names the account in its probe would need the consumer
    // secret here too; the shipped one (x-ads) takes the account from the token answer.
    let Some((status, headers, body)) = fetch(&client(), p, base, token, values, None).await else {
        return Identity::Unknown;
    };
    let c = p.classifier().classify(
        &ResponseView {
            status,
            headers: &headers,
            body: &body,
        },
        Context::Api,
        now,
    );
    if c.kind != Kind::Ok {
        tracing::info!(provider = %p.spec.id, kind = c.kind.as_str(), "the account behind a new grant could not be read");
        return Identity::Unknown;
    }
    p.spec
        .api
        .probe
        .account(&body)
        .map_or(Identity::Unknown, Identity::Known)
}

/// What the platform's other API host says of a token the connection's own host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elsewhere {
    /// The token works there: it belongs to that environment.
    Works(Environment),
    /// No answer to act on (unreachable, throttled, failing): decide at the next probe, mark
    /// nothing now. The wait the platform asked for, if it said.
    Undecided(Option<Duration>),
}

/// Whether the verdict is the platform refusing the token itself (not its scope, app or rate).
/// "Expired" counts too: some platforms answer a token of the other environment with their one
/// authentication failure (Pinterest's 401 code 2 "Authentication failed."), and a token still
/// refused as expired right after a refresh is no expiry.
pub(crate) fn refuses_the_token(c: &Classification) -> bool {
    matches!(
        c.kind,
        Kind::TokenInvalid | Kind::TokenRevoked | Kind::TokenExpired
    ) && c.blame == Blame::Connection
}

/// Asks the definition's other API base about a token the connection's host refused: the same
/// request, credential placement, client (no redirects) and body cap as the probe. Only for
/// definitions with a sandbox host (`api.sandbox_base_url`) and an API-call probe; the token goes
/// nowhere but the definition's own two bases. `None`: no other host, or it refuses the token too.
pub(crate) async fn ask_elsewhere(
    s: &ServerState,
    http: &reqwest::Client,
    p: &Provider,
    conn: &Connection,
    token: &TokenSet,
) -> Option<Elsewhere> {
    // OAuth 1.0a token credentials come from one authorization server for both hosts: a refused
    // one is never the other environment's.
    if p.spec.api.probe.via != ProbeVia::Api
        || p.spec.api.sandbox_base_url.is_none()
        || p.spec.api.credential_in == tokenwarden_core::provider::CredentialPlacement::OAuth1
    {
        return None;
    }
    let other = match conn.environment {
        Environment::Production => Environment::Sandbox,
        Environment::Sandbox => Environment::Production,
    };
    let base = p.spec.api_base(other).as_str();
    if base.trim_end_matches('/') == conn.api_base.trim_end_matches('/') {
        return None;
    }
    let values = header_values(s, conn).await;
    let Some(c) = api_check(s, http, p, base, token, &values, None).await else {
        return Some(Elsewhere::Undecided(None));
    };
    match c.kind {
        Kind::Ok => Some(Elsewhere::Works(other)),
        Kind::RateLimited | Kind::ServiceUnavailable => Some(Elsewhere::Undecided(c.retry_after)),
        _ => None,
    }
}
