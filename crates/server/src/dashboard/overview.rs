//! `/`: counts by state and provider, refused apps, what needs a person, activity, and the
//! connect form.

use super::*;

/// Open app-level problems (hardening rule 5): (provider, app, problem). An app whose stored
/// client secret does not decrypt is itself such a problem (the list of apps cannot be read past
/// it), rather than a page that fails whole.
async fn app_problems(
    s: &ServerState,
) -> Result<
    Vec<(String, String, tokenwarden_core::connection::Problem)>,
    tokenwarden_store::StoreError,
> {
    let mut out = Vec::new();
    let apps = match s.store.list_apps(None).await {
        Ok(apps) => apps,
        Err(
            ref e @ tokenwarden_store::StoreError::DecryptFailed {
                ref table, ref row, ..
            },
        ) if table == "apps" => {
            tracing::warn!(error = %e, "dashboard: an app's secret cannot be decrypted");
            let (provider, app) = row.split_once('/').unwrap_or((row.as_str(), ""));
            out.push((
                provider.to_string(),
                app.to_string(),
                tokenwarden_core::connection::Problem {
                    code: tokenwarden_core::state::ProblemCode::DecryptFailed,
                    title: "Its stored client secret cannot be decrypted".into(),
                    fix: "Restart tokenwarden with the master key file it was written with; or restart with the app in the configuration, which stores its secret again.".into(),
                    since: s.clock.now(),
                },
            ));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    for app in apps {
        for p in s.store.app_problems(&app.provider, &app.id).await? {
            out.push((app.provider.to_string(), app.id.to_string(), p));
        }
    }
    Ok(out)
}

/// How urgently a connection needs a person: lower is more urgent; `None` when it needs nothing.
fn urgency(c: &Connection) -> Option<u8> {
    match c.state {
        ConnectionState::ReauthRequired => Some(0),
        ConnectionState::Degraded => Some(1),
        _ if !c.problems.is_empty() => Some(2),
        ConnectionState::Pending => Some(3),
        _ => None,
    }
}

pub(super) async fn overview(State(s): State<ServerState>, signed: Signed) -> Response {
    let now = s.clock.now();
    // The overview needs no token set, so it reads connections only (one query).
    let conns = match s.store.list_connections().await {
        Ok(c) => c,
        Err(e) => return store_down(&s, &signed, e),
    };
    let (bars, _) = match s.dashboard.activity.bars(&*s.store, None, now).await {
        Ok(b) => b,
        Err(e) => return store_down(&s, &signed, e),
    };
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for c in &conns {
        *by_state.entry(c.state.as_str()).or_default() += 1;
        let idx = ConnectionState::ALL
            .iter()
            .position(|x| *x == c.state)
            .unwrap_or(0);
        by_provider.entry(c.provider.to_string()).or_default()[idx] += 1;
    }
    let mut body = String::new();
    body.push_str("<section class=\"stats\">");
    let _ = write!(
        body,
        "<a class=\"stat\" href=\"/connections\"><span class=\"n\">{}</span><span>connections</span></a>",
        conns.len()
    );
    for st in [
        ConnectionState::Active,
        ConnectionState::Degraded,
        ConnectionState::ReauthRequired,
        ConnectionState::Pending,
    ] {
        let _ = write!(
            body,
            "<a class=\"stat {k}\" href=\"/connections?state={k}\" data-count=\"{k}\"><span class=\"n\">{}</span><span>{}</span></a>",
            by_state.get(st.as_str()).copied().unwrap_or(0),
            match st {
                ConnectionState::Active => "healthy",
                ConnectionState::Degraded => "degraded",
                ConnectionState::ReauthRequired => "need re-authorization",
                ConnectionState::Pending => "pending",
            },
            k = st.as_str()
        );
    }
    body.push_str("</section>");

    match app_problems(&s).await {
        Ok(list) if !list.is_empty() => {
            body.push_str("<section class=\"card\" id=\"app-problems\"><h2>App problems</h2><p class=\"muted\">The platform refused one of your apps; its connections are kept and will work again once the app is fixed.</p><ul class=\"problems\">");
            for (provider, app, p) in list {
                let _ = write!(
                    body,
                    "<li data-code=\"{}\"><strong>{} · app {}: {}</strong><p class=\"fix\"><b>Fix:</b> {}</p><p class=\"muted\">since {}</p></li>",
                    escape(p.code.as_str()),
                    escape(&provider_name(&s, &provider)),
                    escape(&app),
                    escape(&p.title),
                    escape(&p.fix),
                    when(Some(p.since))
                );
            }
            body.push_str("</ul></section>");
        }
        Ok(_) => {}
        Err(e) => return store_down(&s, &signed, e),
    }

    let mut urgent: Vec<&Connection> = conns.iter().filter(|c| urgency(c).is_some()).collect();
    urgent.sort_by_key(|c| (urgency(c), c.id.to_string()));
    body.push_str("<section class=\"card\" id=\"needs-action\"><h2>Needs action</h2>");
    if urgent.is_empty() {
        body.push_str("<p class=\"ok-note\">Nothing needs you: every connection is healthy.</p>");
    } else {
        body.push_str("<table><thead><tr><th>Connection</th><th>Provider</th><th>State</th><th>What is wrong</th><th>Fix</th><th></th></tr></thead><tbody>");
        for c in urgent {
            let (what, fix) = c.problems.first().map_or_else(
                || match c.state {
                    ConnectionState::Pending => (
                        "Authorization has not completed".to_string(),
                        "Open the connect link and approve.".to_string(),
                    ),
                    _ => (String::new(), String::new()),
                },
                |p| (p.title.clone(), p.fix.clone()),
            );
            let _ = write!(
                body,
                "<tr data-connection=\"{id}\"><td><a href=\"/connections/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"fix\">{}</td>\
<td>{}</td></tr>",
                escape(&provider_name(&s, c.provider.as_str())),
                badge(c.state),
                escape(&what),
                escape(&fix),
                action_button(&s, c),
                id = escape(c.id.as_str()),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");

    body.push_str("<div class=\"grid2\"><section class=\"card\"><h2>By provider</h2><table><thead><tr><th>Provider</th><th>healthy</th><th>degraded</th><th>reauth</th><th>pending</th></tr></thead><tbody>");
    for (p, counts) in &by_provider {
        let _ = write!(
            body,
            "<tr><td><a href=\"/connections?provider={pe}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&provider_name(&s, p)),
            counts[1],
            counts[2],
            counts[3],
            counts[0],
            pe = escape(p)
        );
    }
    if by_provider.is_empty() {
        body.push_str("<tr><td colspan=\"5\" class=\"muted\">No connections yet.</td></tr>");
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&chart_card("Activity, all connections", &bars));
    body.push_str("</div>");
    body.push_str(&connect_form(&s, &signed.session.csrf));
    Page {
        title: "Overview",
        nav: Nav::Overview,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(15),
    }
    .send(StatusCode::OK, &s.providers)
}

/// The one button a row of "Needs action" offers: the connect link where only a person
/// re-authorizing helps, the connection's page otherwise (tokenwarden is already retrying).
fn action_button(s: &ServerState, c: &Connection) -> String {
    let needs_person = matches!(
        c.state,
        ConnectionState::ReauthRequired | ConnectionState::Pending
    ) || c
        .problems
        .iter()
        .any(|p| matches!(p.code.as_str(), "expires_soon" | "missing_scope"));
    if needs_person {
        format!(
            "<a class=\"button small primary\" href=\"{}\">Re-authorize</a>",
            escape(&s.reauthorize_link(c.id.as_str()))
        )
    } else {
        format!(
            "<a class=\"button small\" href=\"/connections/{}\">Details</a>",
            escape(c.id.as_str())
        )
    }
}

fn connect_form(s: &ServerState, csrf: &str) -> String {
    let mut options = String::new();
    let mut ids: Vec<_> = s.providers.iter().collect();
    ids.sort_by(|a, b| a.spec.id.as_str().cmp(b.spec.id.as_str()));
    for p in ids {
        let _ = write!(
            options,
            "<option value=\"{}\">{}</option>",
            escape(p.spec.id.as_str()),
            escape(&p.spec.name)
        );
    }
    format!(
        "<section class=\"card\" id=\"connect\"><h2>Connect an account</h2>\
<form method=\"post\" action=\"/connect-account\" class=\"row\">{csrf}\
<label>Platform <select name=\"provider\" id=\"connect-provider\">{options}</select></label>\
<label>Connection id <input name=\"connection_id\" id=\"connect-id\" required pattern=\"[A-Za-z0-9._-]+\" placeholder=\"e.g. acme-snapchat\"></label>\
<label>For <input name=\"end_user\" id=\"connect-end-user\" maxlength=\"200\" placeholder=\"customer or team (optional)\"></label>\
<button type=\"submit\" class=\"primary\" id=\"connect-go\">Connect</button></form>\
<p class=\"muted\">You are sent to the platform to approve access, then back here.</p></section>",
        csrf = csrf_field(csrf)
    )
}
