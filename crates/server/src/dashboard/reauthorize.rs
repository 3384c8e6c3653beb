//! Starting a connect flow from the dashboard: the Connect form and the Re-authorize buttons mint
//! a connect session for the signed-in person and start its flow at once (one click; the
//! session is spent as the browser is sent to the platform).
//!
//! `GET /connections/{id}/reauthorize` is the page every re-authorization link points at (API
//! errors, proxy answers, webhooks, alerts): it needs sign-in and starts nothing by itself; its
//! button (a POST with the session's CSRF token) does.

use super::*;
use crate::connect_session::{SessionRequest, mint};

#[derive(Debug, Deserialize)]
pub(super) struct ReauthorizeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    allow_account_change: Option<String>,
}

fn refused_mint(s: &ServerState, signed: &Signed, e: crate::error::ApiError) -> Response {
    message(
        s,
        Some(signed),
        e.status(),
        "Cannot start the authorization",
        e.message(),
    )
}

/// The connection named in the path, or the page that says why there is none.
async fn existing(s: &ServerState, signed: &Signed, id: &str) -> Result<Connection, Response> {
    let none = |text| {
        message(
            s,
            Some(signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            text,
        )
    };
    let Ok(id) = ConnectionId::parse(id) else {
        return Err(none("That is not a connection id."));
    };
    match s.store.get_connection(&id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(none("There is no connection with that id.")),
        Err(e) => Err(store_down(s, signed, e)),
    }
}

/// `GET /connections/{id}/reauthorize`: what will happen, and the button that does it.
pub(super) async fn reauthorize_page(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let conn = match existing(&s, &signed, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let account = conn
        .account
        .as_ref()
        .map_or_else(|| "its platform account".to_string(), |a| a.label());
    let body = format!(
        "<section class=\"card\"><h2>Re-authorize {id}</h2>\
<p>You will be sent to {platform} to approve access again. Sign in there as <strong>{account}</strong>: a grant from another account is refused and the connection keeps its tokens, unless you allow the change below.</p>\
<form method=\"post\" action=\"/connections/{id}/reauthorize\">{csrf}\
<label><input type=\"checkbox\" name=\"allow_account_change\" value=\"yes\" id=\"allow-account-change\"> Allow another account (the old account's grant is revoked)</label>\
<p><button type=\"submit\" class=\"primary\" id=\"reauthorize-go\">Re-authorize</button> <a href=\"/connections/{id}\">Cancel</a></p></form></section>",
        id = escape(conn.id.as_str()),
        platform = escape(&provider_name(&s, conn.provider.as_str())),
        account = escape(&account),
        csrf = csrf_field(&signed.session.csrf),
    );
    Page {
        title: "Re-authorize",
        nav: Nav::Connections,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: None,
    }
    .send(StatusCode::OK, &s.providers)
}

/// `POST /connections/{id}/reauthorize`: a session for this connection, then its link.
pub(super) async fn reauthorize(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ReauthorizeForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let conn = match existing(&s, &signed, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let req = SessionRequest {
        provider: conn.provider.to_string(),
        connection_id: Some(conn.id.to_string()),
        allow_account_change: f.allow_account_change.is_some(),
        ..Default::default()
    };
    match mint(&s, req, &format!("dashboard:{}", signed.session.who)).await {
        Ok(m) => crate::connect::begin(&s, m.token.expose()).await,
        Err(e) => refused_mint(&s, &signed, e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ConnectForm {
    #[serde(default)]
    csrf: String,
    provider: String,
    #[serde(default)]
    connection_id: String,
    #[serde(default)]
    end_user: String,
}

/// `POST /connect-account`: the overview's Connect form.
pub(super) async fn connect_account(
    State(s): State<ServerState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ConnectForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let id = f.connection_id.trim();
    if s.providers.get(&f.provider).is_none()
        || (!id.is_empty() && ConnectionId::parse(id).is_err())
    {
        return message(
            &s,
            Some(&signed),
            StatusCode::BAD_REQUEST,
            "Cannot connect",
            "Pick a platform and give the connection an id of letters, digits, '.', '_' or '-'.",
        );
    }
    let req = SessionRequest {
        provider: f.provider.clone(),
        connection_id: Some(id.to_string()).filter(|i| !i.is_empty()),
        end_user: Some(f.end_user.clone()).filter(|e| !e.trim().is_empty()),
        ..Default::default()
    };
    match mint(&s, req, &format!("dashboard:{}", signed.session.who)).await {
        Ok(m) => crate::connect::begin(&s, m.token.expose()).await,
        Err(e) => refused_mint(&s, &signed, e),
    }
}
