//! `/connections`: the table, filtered, searched and paged.

use super::*;

/// A connection with its token set (never shown beyond its hint), or why that cannot be read.
pub(super) struct Row {
    conn: Connection,
    tokens: Option<StoredTokens>,
    /// The token set does not decrypt (tampered, or under a key that is gone): the row is shown
    /// with a badge saying so, and the rest of the table as usual.
    broken: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    page: usize,
}

/// Rows per page of the connections table (token sets are read for the shown page only).
const PAGE: usize = 100;

pub(super) async fn connections(
    State(s): State<ServerState>,
    signed: Signed,
    Query(f): Query<ListQuery>,
) -> Response {
    let now = s.clock.now();
    let conns = match s.store.list_connections().await {
        Ok(c) => c,
        Err(e) => return store_down(&s, &signed, e),
    };
    let last = match s.dashboard.activity.last_refreshes(&*s.store, now).await {
        Ok(l) => l,
        Err(e) => return store_down(&s, &signed, e),
    };
    let needle = f.q.trim().to_lowercase();
    let matching: Vec<&Connection> = conns
        .iter()
        .filter(|c| f.state.is_empty() || c.state.as_str() == f.state)
        .filter(|c| f.provider.is_empty() || c.provider.as_str() == f.provider)
        .filter(|c| needle.is_empty() || search_text(c).contains(&needle))
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page = f.page.min(pages - 1);
    let mut shown = Vec::new();
    for c in matching.iter().skip(page * PAGE).take(PAGE) {
        match s.store.get_tokens(&c.id).await {
            Ok(tokens) => shown.push(Row {
                conn: (*c).clone(),
                tokens,
                broken: None,
            }),
            Err(e @ tokenwarden_store::StoreError::DecryptFailed { .. }) => {
                tracing::warn!(connection = %c.id, error = %e, "dashboard: a token set cannot be decrypted");
                shown.push(Row {
                    conn: (*c).clone(),
                    tokens: None,
                    broken: Some(e.to_string()),
                });
            }
            Err(e) => return store_down(&s, &signed, e),
        }
    }
    let mut body = String::new();
    let opt = |v: &str, text: &str, cur: &str| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            escape(v),
            if v == cur { " selected" } else { "" },
            escape(text)
        )
    };
    let mut states = opt("", "any state", &f.state);
    for st in ConnectionState::ALL {
        states.push_str(&opt(st.as_str(), st.as_str(), &f.state));
    }
    let mut providers = opt("", "any provider", &f.provider);
    for p in s.providers.iter() {
        providers.push_str(&opt(p.spec.id.as_str(), &p.spec.name, &f.provider));
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/connections\" class=\"row filters\">\
<input type=\"search\" name=\"q\" id=\"filter\" value=\"{}\" placeholder=\"Search id, provider, account…\" data-filter=\"#connections tbody tr\">\
<select name=\"state\">{states}</select><select name=\"provider\">{providers}</select>\
<button type=\"submit\">Filter</button></form>",
        escape(&f.q)
    );
    body.push_str("<section class=\"card\"><table id=\"connections\"><thead><tr><th>Connection</th><th>Provider</th><th>Account</th><th>State</th><th>Token expires</th><th>Refresh token</th><th>Last refresh</th><th>Problems</th></tr></thead><tbody>");
    for r in &shown {
        let c = &r.conn;
        let problems = match c.problems.as_slice() {
            [] => "<span class=\"muted\">none</span>".to_string(),
            [one] => escape(&one.title),
            [first, rest @ ..] => format!(
                "{} <span class=\"muted\">+{}</span>",
                escape(&first.title),
                rest.len()
            ),
        };
        let _ = write!(
            body,
            "<tr data-search=\"{}\" data-connection=\"{id}\"><td><a href=\"/connections/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{problems}</td></tr>",
            escape(&search_text(c)),
            escape(&provider_name(&s, c.provider.as_str())),
            escape(&c.account_ids.join(", ")),
            badge(c.state),
            match (&r.broken, &r.tokens) {
                (Some(why), _) => format!(
                    "<span class=\"badge broken\" data-broken=\"decrypt_failed\" title=\"{}\">cannot be decrypted</span>",
                    escape(why)
                ),
                (None, Some(t)) => countdown(t.set.expires_at, now),
                (None, None) => "<span class=\"muted\">—</span>".into(),
            },
            r.tokens.as_ref().map_or_else(
                || "<span class=\"muted\">—</span>".into(),
                |t| countdown(t.set.refresh_expires_at, now)
            ),
            when(last.get(c.id.as_str()).copied()),
            id = escape(c.id.as_str()),
        );
    }
    if shown.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"muted\">No connection matches.</td></tr>");
    }
    let pager = |to: usize, text: &str| {
        format!(
            "<a class=\"button small\" href=\"/connections?q={}&amp;state={}&amp;provider={}&amp;page={to}\">{text}</a>",
            escape(&query_escape(&f.q)),
            escape(&query_escape(&f.state)),
            escape(&query_escape(&f.provider)),
        )
    };
    let _ = write!(
        body,
        "</tbody></table><p class=\"muted pager\">{} of {} connections match{}. {}{}</p></section>",
        matching.len(),
        conns.len(),
        if pages > 1 {
            format!(
                "; rows {}–{} (page {} of {pages})",
                page * PAGE + 1,
                page * PAGE + shown.len(),
                page + 1
            )
        } else {
            String::new()
        },
        if page > 0 {
            pager(page - 1, "Previous")
        } else {
            String::new()
        },
        if page + 1 < pages {
            pager(page + 1, "Next")
        } else {
            String::new()
        },
    );
    Page {
        title: "Connections",
        nav: Nav::Connections,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(30),
    }
    .send(StatusCode::OK, &s.providers)
}

/// Percent-encodes a query value (the filter links carry what the person typed).
fn query_escape(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn search_text(c: &Connection) -> String {
    format!(
        "{} {} {} {}",
        c.id,
        c.provider,
        c.account_ids.join(" "),
        c.state
    )
    .to_lowercase()
}
