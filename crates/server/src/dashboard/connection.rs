//! `/connections/{id}`: one connection, and its refresh-now and probe-now buttons.

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

fn notice_text(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "refreshed" => ("ok", "Refreshed: a new token is stored."),
        "not_renewable" => (
            "ok",
            "Not refreshed: the platform does not renew this token. It is served until it expires; the health probe checks that it still works, a warning comes days before the end, and then the connection must be authorized again.",
        ),
        "newer_stored" => (
            "ok",
            "Not refreshed by this click: another refresh stored a newer token meanwhile.",
        ),
        "refresh_failed" => (
            "error",
            "The refresh did not succeed; the problems and the timeline below say why.",
        ),
        "probed" => ("ok", "Probed: the state below is the platform's answer."),
        "probe_skipped" => (
            "error",
            "Not probed: a connection that needs re-authorization or is pending has no token to probe with.",
        ),
        _ => return None,
    })
}

pub(super) async fn connection(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let now = s.clock.now();
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    let conn = match s.store.get_connection(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return message(
                &s,
                Some(&signed),
                StatusCode::NOT_FOUND,
                "No such connection",
                &format!("There is no connection {id}."),
            );
        }
        Err(e) => return store_down(&s, &signed, e),
    };
    let tokens = match s.store.get_tokens(&id).await {
        Ok(t) => t,
        Err(e) => return store_down(&s, &signed, e),
    };
    let (bars, last_refresh) = match s
        .dashboard
        .activity
        .bars(&*s.store, Some(id.as_str()), now)
        .await
    {
        Ok(b) => b,
        Err(e) => return store_down(&s, &signed, e),
    };
    let events = match recent_events(&s, &id, 100).await {
        Ok(e) => e,
        Err(e) => return store_down(&s, &signed, e),
    };
    // As the connection's app sees it: a sandbox app's scopes have the sandbox's names, and an
    // app of another identity (Google sign-in) asks for that issuer's scopes.
    let identity = s
        .store
        .get_app(&conn.provider, &conn.app)
        .await
        .ok()
        .flatten()
        .and_then(|a| a.identity);
    let provider = s.providers.get(conn.provider.as_str()).map(|p| {
        p.for_app(
            conn.region.as_deref(),
            identity.as_deref(),
            conn.environment,
            None,
        )
        .into_owned()
    });
    let csrf = csrf_field(&signed.session.csrf);
    let mut body = String::new();
    if let Some((class, text)) = notice_text(&nq.notice) {
        let _ = write!(
            body,
            "<p class=\"notice {class}\" role=\"status\">{}</p>",
            escape(text)
        );
    }
    let _ = write!(
        body,
        "<section class=\"card head\"><div class=\"title-row\">{} <span class=\"provider\">{}</span></div>\
<div class=\"actions\"><form method=\"post\" action=\"/connections/{id}/reauthorize\" class=\"inline\">{csrf}<button type=\"submit\" class=\"primary\" id=\"reauthorize\">Re-authorize</button></form>\
<form method=\"post\" action=\"/connections/{id}/refresh\" class=\"inline\">{csrf}<button type=\"submit\" id=\"refresh-now\">Refresh now</button></form>\
<form method=\"post\" action=\"/connections/{id}/probe\" class=\"inline\">{csrf}<button type=\"submit\" id=\"probe-now\">Probe now</button></form></div></section>",
        badge(conn.state),
        escape(&provider_name(&s, conn.provider.as_str())),
        id = escape(conn.id.as_str()),
    );

    body.push_str("<section class=\"card\" id=\"problems\"><h2>Open problems</h2>");
    if conn.problems.is_empty() {
        body.push_str("<p class=\"ok-note\">No open problems.</p>");
    } else {
        body.push_str("<ul class=\"problems\">");
        for p in &conn.problems {
            let _ = write!(
                body,
                "<li data-code=\"{}\"><strong>{}</strong><p class=\"fix\"><b>Fix:</b> {}</p><p class=\"muted\">code {} · since {}</p></li>",
                escape(p.code.as_str()),
                escape(&p.title),
                escape(&p.fix),
                escape(p.code.as_str()),
                when(Some(p.since))
            );
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>");

    body.push_str("<div class=\"grid2\"><section class=\"card\"><h2>Token</h2><dl>");
    match &tokens {
        Some(t) => {
            let _ = write!(
                body,
                "<dt>Access token</dt><dd><code id=\"token-hint\">{}</code> <span class=\"muted\">(last four characters only)</span></dd>\
<dt>Expires</dt><dd>{}</dd><dt>Refresh token expires</dt><dd>{}</dd><dt>Issued</dt><dd>{}</dd><dt>Last refresh</dt><dd>{}</dd><dt>Version</dt><dd>{}</dd>",
                escape(&t.set.access_token.hint()),
                countdown(t.set.expires_at, now),
                if t.set.refresh_token.is_some() { countdown(t.set.refresh_expires_at, now) } else { "<span class=\"muted\">none</span>".into() },
                when(Some(t.set.issued_at)),
                when(last_refresh),
                t.version
            );
        }
        None => body.push_str("<dt>Access token</dt><dd class=\"muted\">none yet: authorization has not completed</dd>"),
    }
    let _ = write!(
        body,
        "<dt>Account</dt><dd id=\"account\">{}</dd><dt>Account ids</dt><dd>{}</dd><dt>For</dt><dd id=\"end-user\">{}</dd><dt>App</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Connected</dt><dd>{}</dd><dt>Changed</dt><dd>{}</dd></dl></section>",
        conn.account.as_ref().map_or_else(
            || "<span class=\"muted\">not read yet</span>".to_string(),
            |a| escape(&a.label())
        ),
        if conn.account_ids.is_empty() {
            "<span class=\"muted\">—</span>".to_string()
        } else {
            escape(&conn.account_ids.join(", "))
        },
        conn.end_user
            .as_deref()
            .map_or_else(|| "<span class=\"muted\">—</span>".to_string(), escape),
        // The app, and who issues its tokens when it is not the platform's own sign-in.
        escape(&match &identity {
            Some(i) => format!("{} (signed in with {i})", conn.app),
            None => conn.app.to_string(),
        }),
        // The platform region, where the definition has regions (Amazon Ads: na, eu, fe).
        escape(&match &conn.region {
            Some(r) => format!("{}, region {r}", conn.environment.as_str()),
            None => conn.environment.as_str().to_string(),
        }),
        when(Some(conn.created_at)),
        when(Some(conn.updated_at)),
    );

    body.push_str("<div class=\"column\"><section class=\"card\" id=\"scopes\"><h2>Scopes</h2><table><thead><tr><th>Scope</th><th>Required</th><th>Granted</th></tr></thead><tbody>");
    let required: Vec<String> = provider
        .as_ref()
        .map(|p| {
            let mut r = p.spec.authorize.required_scopes.clone();
            for d in &p.spec.authorize.default_scopes {
                if !r.contains(d) {
                    r.push(d.clone());
                }
            }
            r
        })
        .unwrap_or_default();
    let must: Vec<String> = provider
        .as_ref()
        .map(|p| p.spec.authorize.required_scopes.clone())
        .unwrap_or_default();
    let mut all = required.clone();
    for g in &conn.scopes {
        if !all.contains(g) {
            all.push(g.clone());
        }
    }
    for sc in &all {
        let granted = conn.scopes.contains(sc);
        let _ = write!(
            body,
            "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            if must.contains(sc) && !granted {
                "missing"
            } else {
                ""
            },
            escape(sc),
            if must.contains(sc) {
                "required"
            } else if required.contains(sc) {
                "requested"
            } else {
                "—"
            },
            if granted {
                "✓ granted"
            } else {
                "✗ not granted"
            }
        );
    }
    if all.is_empty() {
        body.push_str("<tr><td colspan=\"3\" class=\"muted\">This platform takes no scopes (permissions are set on the app).</td></tr>");
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&chart_card("Activity of this connection", &bars));
    body.push_str("</div></div>");

    body.push_str(
        "<section class=\"card\" id=\"timeline\"><h2>Timeline</h2><ol class=\"timeline\">",
    );
    for e in events.iter().rev() {
        let _ = write!(
            body,
            "<li class=\"ev {}\"><span class=\"kind\">{}</span> {} <span class=\"muted\">{}</span></li>",
            escape(&e.kind),
            escape(&e.kind),
            escape(&e.message),
            when(Some(e.at))
        );
    }
    if events.is_empty() {
        body.push_str("<li class=\"muted\">No events yet.</li>");
    }
    body.push_str("</ol></section>");
    let title = format!("Connection {}", conn.id);
    Page {
        title: &title,
        nav: Nav::Connections,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(20),
    }
    .send(StatusCode::OK, &s.providers)
}

/// The last `keep` events of a connection (the store lists oldest first, so page to the end).
async fn recent_events(
    s: &ServerState,
    id: &ConnectionId,
    keep: usize,
) -> Result<Vec<tokenwarden_store::Event>, tokenwarden_store::StoreError> {
    let mut out: std::collections::VecDeque<tokenwarden_store::Event> = Default::default();
    let mut after = 0;
    loop {
        let batch = s.store.list_events(Some(id), after, 500).await?;
        let n = batch.len();
        if let Some(last) = batch.last() {
            after = last.id;
        }
        for e in batch {
            out.push_back(e);
            if out.len() > keep {
                out.pop_front();
            }
        }
        if n < 500 {
            break;
        }
    }
    Ok(out.into())
}

fn back_to(id: &ConnectionId, notice: &str) -> Response {
    let mut r =
        Redirect::to(&format!("/connections/{}?notice={notice}", id.as_str())).into_response();
    crate::page::secure_headers(r.headers_mut());
    r
}

pub(super) async fn refresh_now(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    tracing::info!(connection = %id, who = %signed.session.who, "dashboard: refresh now");
    match s.tokens.refresh_now(&id).await {
        Ok(issued) => {
            s.wake.notify_one();
            match crate::refreshed::NotRefreshed::of(&s, &id, &issued).await {
                Some(why) => back_to(&id, why.code()),
                None => back_to(&id, "refreshed"),
            }
        }
        Err(e) => {
            tracing::info!(connection = %id, error = %e, "dashboard: refresh now failed");
            back_to(&id, "refresh_failed")
        }
    }
}

pub(super) async fn probe_now(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    let conn = match s.store.get_connection(&id).await {
        Ok(Some(c)) if c.state.can_serve_tokens() => c,
        _ => return back_to(&id, "probe_skipped"),
    };
    tracing::info!(connection = %id, who = %signed.session.who, "dashboard: probe now");
    let by = format!("dashboard:{}", signed.session.who);
    crate::monitor::probe_on_demand(&s, &crate::probe::client(), &conn, &by).await;
    back_to(&id, "probed")
}
