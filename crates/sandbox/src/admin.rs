//! The admin API under the reserved prefix `/_sandbox/` (JSON in, JSON out). Faults are scoped
//! per provider; spans are sandbox time, written `90s`, `5m`, `250ms` or as seconds.
//!
//! | method & path | body | effect |
//! |---|---|---|
//! | `GET /_sandbox/grants[?provider=]` | | grants: id, provider, app, environment, account, scopes, state (never tokens) |
//! | `GET /_sandbox/grants/{id}` | | one grant |
//! | `POST /_sandbox/grants/{id}/revoke` | | every token of the grant is refused as revoked; where the platform calls back on removal (Meta, Threads, TikTok Login Kit) and the app has a `deauthorize_url`, the signed callback is sent, and the reply's `deauthorize_callback` says how the app answered |
//! | `POST /_sandbox/grants/{id}/expire` | | every access token issued so far is expired now |
//! | `POST /_sandbox/grants/{id}/remove-scope` | `{"scope"}` | the scope is gone: the platform's scope error |
//! | `POST /_sandbox/grants/{id}/remove-role` | | role on the ad accounts gone (Snapchat, TikTok Business, Meta) |
//! | `GET /_sandbox/apps` | | registered apps and their environment (no secrets) |
//! | `POST /_sandbox/apps` | `{"provider","client_id","client_secret","name","redirect_uris":[],"environment":"production"\|"sandbox","refresh_tokens":false,"deauthorize_url":null}` | register an app; a `sandbox` app's tokens work only on the platform's sandbox host (`/tiktok-business/sandbox/…`); a TikTok Business app with `refresh_tokens` issues creator tokens (24 h, with a refresh token) |
//! | `POST /_sandbox/apps/{provider}/{client_id}/rotate-secret` | | new secret returned; every token of the app dies |
//! | `POST /_sandbox/apps/{provider}/{client_id}/redirect-uris` | `{"redirect_uri"}` | register one more redirect URI |
//! | `POST /_sandbox/apps/{provider}/{client_id}/deauthorize-url` | `{"url": "https://…"\|null}` | where the platform calls back when a user removes the app (Meta, Threads, TikTok Login Kit only) |
//! | `GET /_sandbox/faults` | | every provider's fault settings |
//! | `POST /_sandbox/faults/{provider}/throttle` | `{"next":N}` or `{"rate_per_sec":R,"for":"1m"}`, optional `"target":"api"\|"token"\|"all"`, optional `"limit":"user"\|"app"` | the platform's own rate-limit signal; `"app"`: the app's own quota where the platform has one (Google Ads' daily developer quota) |
//! | `POST /_sandbox/faults/{provider}/outage` | `{"for":"5m","mode":"platform"\|"html","status":502\|503}` | outage on every route of the provider |
//! | `POST /_sandbox/faults/{provider}/latency` | `{"latency":"200ms","for":"1m","after":false}` | added latency (`"0"` clears); with `"after":true` it comes after the platform acted, before its answer leaves |
//! | `POST /_sandbox/faults/{provider}/malformed` | `{"next":N,"mode":"truncated"\|"html"\|"missing_fields"\|"expires_in_string"}` | next N token responses malformed |
//! | `POST /_sandbox/faults/{provider}/rotation` | `{"enabled":bool,"grace":"30s"}` | refresh-token rotation and reuse grace |
//! | `POST /_sandbox/faults/{provider}/unauthorized-style` | `{"style":"plain"\|"empty"\|"challenge"}` | Snapchat's 401 shape (default `plain`, the evidenced one) |
//! | `POST /_sandbox/faults/{provider}/clear` | | clear throttle, outage, latency, malformed |
//! | `GET /_sandbox/counters` / `POST /_sandbox/counters/reset` | | token calls per grant and grant type (and those an outage answered), API calls (and the most in any one second of the sandbox clock), 401s, 429s, tokens used on the other environment's host, credentials sent in an undocumented form (Threads: a Bearer header) |
//! | `GET /_sandbox/clock` | | `{"now","time_scale"}` |
//! | `GET /_sandbox/errors[?provider=]` | | every error the sandbox can send, with the kind it means |

use crate::Sandbox;
use crate::config::AppRegistration;
use crate::fault::{MalformedMode, OutageMode, ThrottleTarget, UnauthorizedStyle};
use crate::ledger::{Grant, to_delta};
use crate::provider::Provider;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokenwarden_core::connection::Environment;

pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/grants", get(list_grants))
        .route("/grants/{id}", get(one_grant))
        .route("/grants/{id}/revoke", post(revoke))
        .route("/grants/{id}/expire", post(expire))
        .route("/grants/{id}/remove-scope", post(remove_scope))
        .route("/grants/{id}/remove-role", post(remove_role))
        .route("/apps", get(list_apps).post(register_app))
        .route(
            "/apps/{provider}/{client_id}/rotate-secret",
            post(rotate_secret),
        )
        .route(
            "/apps/{provider}/{client_id}/redirect-uris",
            post(add_redirect),
        )
        .route(
            "/apps/{provider}/{client_id}/deauthorize-url",
            post(set_deauthorize_url),
        )
        .route("/faults", get(list_faults))
        .route("/faults/{provider}/throttle", post(throttle))
        .route("/faults/{provider}/outage", post(outage))
        .route("/faults/{provider}/latency", post(latency))
        .route("/faults/{provider}/malformed", post(malformed))
        .route("/faults/{provider}/rotation", post(rotation))
        .route(
            "/faults/{provider}/unauthorized-style",
            post(unauthorized_style),
        )
        .route("/faults/{provider}/clear", post(clear))
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        .route("/clock", get(clock))
        .route("/errors", get(errors))
}

/// An admin request that cannot be carried out.
struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type AdminResult = Result<Response, AdminError>;

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

fn provider(id: &str) -> Result<Provider, AdminError> {
    Provider::parse(id).ok_or_else(|| {
        AdminError(
            StatusCode::NOT_FOUND,
            format!(
                "unknown provider {id:?}; one of snapchat, tiktok-business, tiktok, threads, meta"
            ),
        )
    })
}

fn grant(sb: &Sandbox, id: &str) -> Result<Arc<Grant>, AdminError> {
    sb.ledger()
        .grant(id)
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("no grant {id:?}")))
}

/// A span of sandbox time: `"90s"`, `"5m"`, `"250ms"`, or a number of seconds.
fn span(v: Option<&Value>, field: &str) -> Result<Option<Duration>, AdminError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| bad(format!("{field} must be a non-negative number of seconds"))),
        Some(Value::String(s)) => tokenwarden_core::span::parse(s)
            .map(Some)
            .map_err(|e| bad(format!("{field}: {e}"))),
        Some(_) => Err(bad(format!("{field} must be a span like \"90s\""))),
    }
}

fn body(b: Option<Json<Value>>) -> Value {
    b.map(|Json(v)| v).unwrap_or(Value::Null)
}

fn done(v: Value) -> AdminResult {
    Ok(Json(v).into_response())
}

async fn list_grants(
    State(sb): State<Sandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult {
    let only = match q.get("provider") {
        Some(p) => Some(provider(p)?),
        None => None,
    };
    let mut grants: Vec<_> = sb
        .ledger()
        .grants()
        .iter()
        .filter(|g| only.is_none_or(|p| g.provider == p))
        .map(|g| g.view())
        .collect();
    grants.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    done(json!({ "grants": grants }))
}

async fn one_grant(State(sb): State<Sandbox>, Path(id): Path<String>) -> AdminResult {
    done(json!(grant(&sb, &id)?.view()))
}

async fn revoke(State(sb): State<Sandbox>, Path(id): Path<String>) -> AdminResult {
    let g = grant(&sb, &id)?;
    // The platform calls back once, when the grant goes; revoking it again sends nothing.
    let callback = if sb.ledger().revoke_grant(&g) {
        crate::deauthorize::announce(&sb, &g).await
    } else {
        None
    };
    let mut v = json!(g.view());
    if let (Some(cb), Some(obj)) = (callback, v.as_object_mut()) {
        obj.insert("deauthorize_callback".into(), cb);
    }
    done(v)
}

async fn expire(State(sb): State<Sandbox>, Path(id): Path<String>) -> AdminResult {
    let g = grant(&sb, &id)?;
    sb.ledger().expire_now(&g, sb.now());
    done(json!(g.view()))
}

async fn remove_scope(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let g = grant(&sb, &id)?;
    let b = body(b);
    let scope = b
        .get("scope")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("body must be {\"scope\": \"…\"}"))?;
    if !sb.ledger().remove_scope(&g, scope) {
        return Err(bad(format!("the grant does not hold the scope {scope:?}")));
    }
    done(json!(g.view()))
}

async fn remove_role(State(sb): State<Sandbox>, Path(id): Path<String>) -> AdminResult {
    let g = grant(&sb, &id)?;
    if matches!(g.provider, Provider::Tiktok | Provider::Threads) {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!(
                "{} has no ad-account roles; remove a scope instead",
                g.provider
            ),
        ));
    }
    sb.ledger().remove_role(&g);
    done(json!(g.view()))
}

fn app_view(a: &crate::ledger::App) -> Value {
    json!({"provider": a.provider, "client_id": a.client_id, "name": a.name, "environment": a.environment, "refresh_tokens": a.refresh_tokens, "redirect_uris": a.redirect_uris(), "deauthorize_url": a.deauthorize_url()})
}

/// A callback URL for `p`'s removal callback: an http(s) URL, on a platform that sends one.
fn deauthorize_url(p: Provider, url: Option<&str>) -> Result<Option<String>, AdminError> {
    let Some(url) = url else { return Ok(None) };
    if p.deauthorize_callback().is_none() {
        let with: Vec<&str> = Provider::ALL
            .into_iter()
            .filter(|q| q.deauthorize_callback().is_some())
            .map(Provider::id)
            .collect();
        return Err(bad(format!(
            "{p} documents no callback when a user removes the app (those that do: {})",
            with.join(", ")
        )));
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            Ok(Some(url.to_string()))
        }
        _ => Err(bad(format!("{url:?} is not an http(s) URL"))),
    }
}

async fn set_deauthorize_url(
    State(sb): State<Sandbox>,
    Path((p, client_id)): Path<(String, String)>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let a = app(&sb, &p, &client_id)?;
    let b = body(b);
    let url = match b.get("url") {
        Some(Value::String(u)) => Some(u.as_str()),
        Some(Value::Null) => None,
        _ => {
            return Err(bad(
                "body must be {\"url\": \"https://…\"} or {\"url\": null}",
            ));
        }
    };
    a.set_deauthorize_url(deauthorize_url(a.provider, url)?);
    done(app_view(&a))
}

async fn list_apps(State(sb): State<Sandbox>) -> AdminResult {
    let mut apps: Vec<_> = sb.ledger().apps();
    apps.sort_by(|a, b| (a.provider, &a.client_id).cmp(&(b.provider, &b.client_id)));
    done(json!({"apps": apps.iter().map(|a| app_view(a)).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
struct NewApp {
    provider: String,
    client_id: String,
    client_secret: String,
    name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// `production` (the default) or `sandbox`.
    environment: Option<String>,
    /// TikTok Business: issue creator tokens (24 h, with a refresh token) instead of long-term
    /// advertiser tokens.
    #[serde(default)]
    refresh_tokens: bool,
    /// Where the platform calls back when a user removes the app.
    deauthorize_url: Option<String>,
}

async fn register_app(State(sb): State<Sandbox>, Json(n): Json<NewApp>) -> AdminResult {
    let p = provider(&n.provider)?;
    if n.client_id.is_empty() || n.client_secret.is_empty() {
        return Err(bad("client_id and client_secret must not be empty"));
    }
    if sb.ledger().app(p, &n.client_id).is_some() {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!("{p} already has an app {:?}", n.client_id),
        ));
    }
    for uri in &n.redirect_uris {
        url::Url::parse(uri).map_err(|_| bad(format!("{uri:?} is not a URL")))?;
    }
    let environment = match n.environment.as_deref() {
        None => Environment::Production,
        Some(e) => e.parse::<Environment>().map_err(bad)?,
    };
    if environment == Environment::Sandbox && p.sandbox_host().is_none() {
        let with: Vec<&str> = Provider::ALL
            .into_iter()
            .filter(|q| q.sandbox_host().is_some())
            .map(Provider::id)
            .collect();
        return Err(bad(format!(
            "{p} has no sandbox host, so its apps are all \"production\" (sandbox hosts: {})",
            with.join(", ")
        )));
    }
    if n.refresh_tokens && p != Provider::TiktokBusiness {
        return Err(bad(format!(
            "refresh_tokens chooses between TikTok Business's two kinds of token; {p} issues one kind"
        )));
    }
    let deauthorize_url = deauthorize_url(p, n.deauthorize_url.as_deref())?;
    let app = sb.ledger().register(&AppRegistration {
        provider: p,
        client_id: n.client_id,
        client_secret: n.client_secret,
        name: n.name.unwrap_or_else(|| "Sandbox app".into()),
        redirect_uris: n.redirect_uris,
        environment,
        refresh_tokens: n.refresh_tokens,
        deauthorize_url,
    });
    Ok((StatusCode::CREATED, Json(app_view(&app))).into_response())
}

fn app(sb: &Sandbox, p: &str, client_id: &str) -> Result<Arc<crate::ledger::App>, AdminError> {
    let p = provider(p)?;
    sb.ledger().app(p, client_id).ok_or_else(|| {
        AdminError(
            StatusCode::NOT_FOUND,
            format!("{p} has no app {client_id:?}"),
        )
    })
}

async fn rotate_secret(
    State(sb): State<Sandbox>,
    Path((p, client_id)): Path<(String, String)>,
) -> AdminResult {
    let a = app(&sb, &p, &client_id)?;
    let secret = sb.ledger().rotate_secret(&a);
    done(json!({"provider": a.provider, "client_id": a.client_id, "client_secret": secret}))
}

async fn add_redirect(
    State(sb): State<Sandbox>,
    Path((p, client_id)): Path<(String, String)>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let a = app(&sb, &p, &client_id)?;
    let b = body(b);
    let uri = b
        .get("redirect_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("body must be {\"redirect_uri\": \"…\"}"))?;
    url::Url::parse(uri).map_err(|_| bad(format!("{uri:?} is not a URL")))?;
    sb.ledger().add_redirect_uri(&a, uri.to_string());
    done(app_view(&a))
}

fn faults_view(sb: &Sandbox, p: Provider) -> Value {
    let f = sb.faults(p);
    let s = f.settings.read().clone();
    json!({
        "throttle_next": f.throttle_next.load(Ordering::Acquire),
        "throttle_next_token": f.throttle_next_token.load(Ordering::Acquire),
        "throttle_app": s.throttle_app,
        "throttle_rate": s.throttle_rate.map(|(r, until, target)| json!({"rate_per_sec": r, "until": until, "target": target})),
        "outage": s.outage.map(|(until, mode, status)| json!({"until": until, "mode": mode, "status": status})),
        "latency_ms": s.latency.map(|(d, _)| d.as_millis() as u64),
        "latency_until": s.latency.and_then(|(_, u)| u),
        "answer_latency_ms": s.answer_latency.map(|(d, _)| d.as_millis() as u64),
        "answer_latency_until": s.answer_latency.and_then(|(_, u)| u),
        "malformed_next": f.malformed_next.load(Ordering::Acquire),
        "malformed_mode": s.malformed_mode,
        "unauthorized_style": s.unauthorized_style,
        "rotation": s.rotation,
        "reuse_grace_ms": s.reuse_grace.as_millis() as u64,
    })
}

async fn list_faults(State(sb): State<Sandbox>) -> AdminResult {
    let m: serde_json::Map<String, Value> = Provider::ALL
        .iter()
        .map(|p| (p.id().to_string(), faults_view(&sb, *p)))
        .collect();
    done(Value::Object(m))
}

async fn throttle(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let f = sb.faults(p);
    let target: ThrottleTarget = match b.get("target") {
        None => ThrottleTarget::Api,
        Some(t) => serde_json::from_value(t.clone())
            .map_err(|_| bad("target must be api, token or all"))?,
    };
    let app_quota = match b.get("limit").and_then(Value::as_str) {
        None if b.get("limit").is_none() => false,
        Some("user") => false,
        Some("app") => true,
        _ => return Err(bad("limit must be \"user\" or \"app\"")),
    };
    f.settings.write().throttle_app = app_quota;
    if let Some(n) = b.get("next") {
        let n = n.as_u64().ok_or_else(|| bad("next must be a count"))?;
        if target.covers(false) {
            f.throttle_next.store(n, Ordering::Release);
        }
        if target.covers(true) {
            f.throttle_next_token.store(n, Ordering::Release);
        }
    } else if let Some(rate) = b.get("rate_per_sec") {
        let rate = rate
            .as_f64()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| bad("rate_per_sec must be a non-negative number"))?;
        let dur =
            span(b.get("for"), "for")?.ok_or_else(|| bad("a rate needs \"for\": how long"))?;
        f.settings.write().throttle_rate = Some((rate, sb.now() + to_delta(dur), target));
    } else {
        return Err(bad(
            "body must be {\"next\": N} or {\"rate_per_sec\": R, \"for\": \"1m\"}",
        ));
    }
    done(faults_view(&sb, p))
}

async fn outage(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let dur = span(b.get("for"), "for")?.ok_or_else(|| bad("an outage needs \"for\": how long"))?;
    let mode: OutageMode = match b.get("mode") {
        None => OutageMode::Platform,
        Some(m) => {
            serde_json::from_value(m.clone()).map_err(|_| bad("mode must be platform or html"))?
        }
    };
    let status = match b.get("status").map(Value::as_u64) {
        None => 503,
        Some(Some(s @ (502 | 503))) => s as u16,
        Some(_) => return Err(bad("status must be 502 or 503")),
    };
    sb.faults(p).settings.write().outage = Some((sb.now() + to_delta(dur), mode, status));
    done(faults_view(&sb, p))
}

async fn latency(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let lat = span(b.get("latency"), "latency")?
        .ok_or_else(|| bad("body must be {\"latency\": \"200ms\"}"))?;
    let until = span(b.get("for"), "for")?.map(|d| sb.now() + to_delta(d));
    let after = match b.get("after") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(a)) => *a,
        Some(_) => return Err(bad("\"after\" must be true or false")),
    };
    let mut s = sb.faults(p).settings.write();
    let slot = if after {
        &mut s.answer_latency
    } else {
        &mut s.latency
    };
    *slot = (!lat.is_zero()).then_some((lat, until));
    drop(s);
    done(faults_view(&sb, p))
}

async fn malformed(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let n = b.get("next").and_then(Value::as_u64).unwrap_or(1);
    let mode: MalformedMode = match b.get("mode") {
        None => MalformedMode::Truncated,
        Some(m) => serde_json::from_value(m.clone()).map_err(|_| {
            bad("mode must be truncated, html, missing_fields or expires_in_string")
        })?,
    };
    let f = sb.faults(p);
    f.settings.write().malformed_mode = mode;
    f.malformed_next.store(n, Ordering::Release);
    done(faults_view(&sb, p))
}

async fn rotation(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let enabled = b
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("body must be {\"enabled\": true|false, \"grace\": \"30s\"}"))?;
    let grace = span(b.get("grace"), "grace")?;
    let mut s = sb.faults(p).settings.write();
    s.rotation = enabled;
    if let Some(g) = grace {
        s.reuse_grace = g;
    }
    drop(s);
    // Rotation is part of what the sandbox keeps across restarts (`LedgerFile`).
    sb.ledger().touch();
    done(faults_view(&sb, p))
}

async fn unauthorized_style(
    State(sb): State<Sandbox>,
    Path(p): Path<String>,
    b: Option<Json<Value>>,
) -> AdminResult {
    let p = provider(&p)?;
    let b = body(b);
    let style: UnauthorizedStyle = b
        .get("style")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| bad("body must be {\"style\": \"plain\"|\"empty\"|\"challenge\"}"))?;
    sb.faults(p).settings.write().unauthorized_style = style;
    done(faults_view(&sb, p))
}

async fn clear(State(sb): State<Sandbox>, Path(p): Path<String>) -> AdminResult {
    let p = provider(&p)?;
    sb.faults(p).clear();
    done(faults_view(&sb, p))
}

async fn counters(State(sb): State<Sandbox>) -> AdminResult {
    done(sb.counters().snapshot())
}

async fn reset_counters(State(sb): State<Sandbox>) -> AdminResult {
    sb.counters().reset();
    done(sb.counters().snapshot())
}

async fn clock(State(sb): State<Sandbox>) -> AdminResult {
    done(json!({"now": sb.now(), "time_scale": sb.config().time_scale}))
}

/// The error catalogue, for people rehearsing their own error handling.
async fn errors(Query(q): Query<HashMap<String, String>>) -> AdminResult {
    let only = match q.get("provider") {
        Some(p) => Some(provider(p)?),
        None => None,
    };
    let list: Vec<Value> = crate::error_case::error_catalogue()
        .into_iter()
        .filter(|(p, ..)| only.is_none_or(|o| o.id() == *p))
        .map(|(p, case, status, headers, body)| {
            json!({
                "provider": p,
                "case": case,
                "intended_kind": case.intended_kind(),
                "status": status,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            })
        })
        .collect();
    done(json!({ "errors": list }))
}
