//! `/diagnose`: the classifier on a pasted response.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct DiagnoseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    response: String,
    #[serde(default)]
    token_endpoint: Option<String>,
}

fn diagnose_page(
    s: &ServerState,
    signed: &Signed,
    form: Option<&DiagnoseForm>,
    result: String,
) -> Response {
    let mut options = String::new();
    for p in s.providers.iter() {
        let id = p.spec.id.as_str();
        let _ = write!(
            options,
            "<option value=\"{}\"{}>{}</option>",
            escape(id),
            if form.is_some_and(|f| f.provider == id) {
                " selected"
            } else {
                ""
            },
            escape(&p.spec.name)
        );
    }
    let body = format!(
        "<section class=\"card\"><form method=\"post\" action=\"/diagnose\" class=\"stack\">{}\
<label>Platform <select name=\"provider\" id=\"diagnose-provider\">{options}</select></label>\
<label for=\"response\"><span>The response, as <code>curl -i</code> prints it (status line, headers, blank line, body)</span></label>\
<textarea id=\"response\" name=\"response\" rows=\"10\" spellcheck=\"false\" required>{}</textarea>\
<label class=\"check\"><input type=\"checkbox\" name=\"token_endpoint\" value=\"1\"{}> from a token endpoint (code exchange or refresh)</label>\
<button type=\"submit\" class=\"primary\" id=\"diagnose-go\">Diagnose</button></form></section>{result}",
        csrf_field(&signed.session.csrf),
        escape(form.map_or("", |f| f.response.as_str())),
        if form.is_some_and(|f| f.token_endpoint.is_some()) {
            " checked"
        } else {
            ""
        },
    );
    Page {
        title: "Diagnose a response",
        nav: Nav::Diagnose,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: None,
    }
    .send(StatusCode::OK, &s.providers)
}

pub(super) async fn diagnose_form(State(s): State<ServerState>, signed: Signed) -> Response {
    diagnose_page(&s, &signed, None, String::new())
}

pub(super) async fn diagnose(
    State(s): State<ServerState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(f): axum::Form<DiagnoseForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let result = match (
        s.providers.get(&f.provider),
        tokenwarden_core::raw_http::parse(f.response.as_bytes()),
    ) {
        (None, _) => format!(
            "<section class=\"card\"><p class=\"error\">Unknown platform {}.</p></section>",
            escape(&f.provider)
        ),
        (_, Err(e)) => format!(
            "<section class=\"card\"><p class=\"error\">{}</p></section>",
            escape(&e.to_string())
        ),
        (Some(p), Ok(raw)) => {
            let c = p.classifier().classify(
                &ResponseView {
                    status: raw.status,
                    headers: &raw.headers,
                    body: &raw.body,
                },
                if f.token_endpoint.is_some() {
                    Context::TokenEndpoint
                } else {
                    Context::Api
                },
                s.clock.now(),
            );
            let mut facts: Vec<(String, String)> = vec![
                ("kind".into(), c.kind.as_str().into()),
                ("action".into(), c.action.as_str().into()),
                (
                    "retryable".into(),
                    if c.retryable { "yes" } else { "no" }.into(),
                ),
                ("HTTP status".into(), c.status.to_string()),
            ];
            if let Some(w) = c.retry_after {
                facts.push(("wait".into(), format!("{}s", w.as_secs())));
            }
            if let Some(code) = &c.platform_code {
                facts.push(("platform code".into(), code.clone()));
            }
            if let Some(sub) = &c.platform_subcode {
                facts.push(("subcode".into(), sub.clone()));
            }
            let mut dl = String::new();
            for (k, v) in facts {
                let _ = write!(dl, "<dt>{}</dt><dd>{}</dd>", escape(&k), escape(&v));
            }
            let docs = c
                .docs_url
                .as_deref()
                .filter(|u| u.starts_with("https://"))
                .map(|u| {
                    format!(
                        "<p><a href=\"{}\" rel=\"noreferrer\">Platform documentation</a></p>",
                        escape(u)
                    )
                })
                .unwrap_or_default();
            format!(
                "<section class=\"card verdict {}\" id=\"verdict\"><h2>{}</h2><dl class=\"facts\">{dl}</dl>\
<h3>What happened</h3><p>{}</p><h3>Fix</h3><p class=\"fix\">{}</p>{docs}</section>",
                escape(c.kind.as_str()),
                escape(&c.title),
                escape(&c.explanation),
                escape(&c.fix),
            )
        }
    };
    diagnose_page(&s, &signed, Some(&f), result)
}
