//! Sign-in with an admin API key or the configured password, and sign-out.

use super::*;
use crate::limits::ClientAddr;

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    next: String,
}

/// `?next=` of the sign-in page: where a signed-out visit was going.
#[derive(Debug, Deserialize, Default)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

/// A page of this daemon to continue to after sign-in: a path, never another site (`//host`,
/// `/\host` and schemes are refused), else the overview.
pub(super) fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= 512;
    if ok { next } else { "/" }
}

fn login_page(s: &ServerState, status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    Page {
        title: "Sign in",
        nav: Nav::None,
        csrf: None,
        who: None,
        body: format!(
            "<div class=\"card narrow\">{error}<form method=\"post\" action=\"/login\" class=\"stack\">\
<label for=\"secret\">Admin API key or dashboard password</label>\
<input id=\"secret\" name=\"secret\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\
<button type=\"submit\" class=\"primary\">Sign in</button></form>\
<p class=\"muted\">An admin key is in <code>tokenwarden-data/admin.key</code> after <code>tokenwarden serve</code> first runs.</p></div>",
            next = escape(local_path(next))
        ),
        refresh_secs: None,
    }
    .send(status, &s.providers)
}

pub(super) async fn login_form(
    State(s): State<ServerState>,
    Query(q): Query<NextQuery>,
) -> Response {
    login_page(&s, StatusCode::OK, None, &q.next)
}

pub(super) async fn login(
    State(s): State<ServerState>,
    client: ClientAddr,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&s, &headers) {
        return login_page(
            &s,
            StatusCode::FORBIDDEN,
            Some("Sign in from this daemon's own page."),
            &f.next,
        );
    }
    let secret = f.secret.trim();
    // Failures count per address, and per key id when a key was presented (so guesses at one
    // key's secret are limited however many addresses they come from).
    let key_id = tokenwarden_store::api_key_id(secret);
    let sessions = &s.dashboard.sessions;
    let store = &*s.store;
    let unavailable = |e: tokenwarden_store::StoreError| {
        tracing::error!(error = %e, "dashboard sign-in: the store does not answer");
        login_page(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("tokenwarden cannot reach its database right now."),
            &f.next,
        )
    };
    let locked = match sessions
        .locked_out(store, client.key(), key_id, s.clock.now())
        .await
    {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    if let Some(wait) = locked {
        let secs = crate::limits::retry_secs(wait);
        tracing::warn!(%client, "dashboard: a sign-in was refused while locked out");
        let mut r = login_page(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins in the last minute. Wait {secs} seconds and try again."
            )),
            &f.next,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let key = if key_id.is_some() {
        match s.store.verify_api_key(secret).await {
            Ok(Some(k)) if k.role == ApiKeyRole::Admin => Some(format!("API key {}", k.id)),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "dashboard sign-in: the store does not answer");
                return login_page(
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("tokenwarden cannot reach its database right now."),
                    &f.next,
                );
            }
        }
    } else {
        None
    };
    // A password may look like a key; it is checked whenever the key was not a valid admin key.
    let who = key.or_else(|| sessions.password_ok(secret).then(|| "password".to_string()));
    let Some(who) = who else {
        sessions
            .failed(store, client.key(), key_id, s.clock.now())
            .await;
        tracing::warn!(%client, "dashboard: a sign-in was refused");
        return login_page(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That is not an admin API key or the dashboard password."),
            &f.next,
        );
    };
    sessions.signed_in(store, client.key()).await;
    tracing::info!(%who, %client, "dashboard: signed in");
    let id = match sessions.start(store, who, s.clock.now()).await {
        Ok((id, _)) => id,
        Err(e) => return unavailable(e),
    };
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(&s),
        session::SESSION_TTL.as_secs()
    );
    let mut r = Redirect::to(local_path(&f.next)).into_response();
    crate::page::secure_headers(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn logout(
    State(s): State<ServerState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    s.dashboard.sessions.end(&*s.store, &signed.cookie).await;
    let mut r = Redirect::to("/login").into_response();
    crate::page::secure_headers(r.headers_mut());
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(&s)
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn after_sign_in_only_a_page_of_this_daemon_is_followed() {
        for (next, to) in [
            ("/connections/a/reauthorize", "/connections/a/reauthorize"),
            ("/", "/"),
            ("", "/"),
            ("//evil.example/x", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("javascript:alert(1)", "/"),
            ("/a\nb", "/"),
        ] {
            assert_eq!(local_path(next), to, "{next:?}");
        }
    }
}
