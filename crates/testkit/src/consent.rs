//! The consent step of the connect flow, as a person's browser does it against the sandbox:
//! `POST` the connect link (the daemon answers 303 to the platform's authorize page and sets the
//! flow's cookie), approve on the sandbox's consent page (a form post of the authorize query plus
//! `decision`), and follow the platform's redirect back to the daemon's callback with the cookie.
//!
//! The HTTP clients given must not follow redirects (`redirect::Policy::none()`): each step reads
//! the `Location` it is sent to.

use url::Url;

/// What the consent page is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The person approves the app.
    Approve,
    /// The person refuses.
    Deny,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

/// Where the flow came back: the callback URL the platform redirected to (with its `code` and
/// `state`, which the caller may check are not logged) and the daemon's answer to it.
#[derive(Debug)]
pub struct Landing<R> {
    /// The platform's authorize page the connect link sent the browser to.
    pub authorize: String,
    /// The daemon's callback URL, as the platform sent the browser to it.
    pub callback: String,
    /// The daemon's answer at the callback (303 to the done page when the connection was stored).
    pub response: R,
}

fn location(status: u16, headers: &reqwest::header::HeaderMap, step: &str) -> String {
    let Some(l) = headers.get("location").and_then(|v| v.to_str().ok()) else {
        panic!("{step} answered {status} without a Location");
    };
    l.to_string()
}

fn cookie(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("the connect link sets the flow's cookie")
        .to_string()
}

/// The consent page's address and form for an authorize URL.
fn consent_form(authorize: &str, decision: Decision) -> (String, Vec<(String, String)>) {
    let u = Url::parse(authorize).expect("the authorize Location is a URL");
    let mut form: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    form.push(("decision".into(), decision.as_str().into()));
    (
        format!("{}{}", u.origin().ascii_serialization(), u.path()),
        form,
    )
}

/// Opens `link` (a connect link), approves, and comes back to the callback.
pub async fn approve(http: &reqwest::Client, link: &str) -> Landing<reqwest::Response> {
    decide(http, link, Decision::Approve).await
}

/// Opens `link` (a connect link), answers the consent page with `decision`, and comes back to
/// the callback.
pub async fn decide(
    http: &reqwest::Client,
    link: &str,
    decision: Decision,
) -> Landing<reqwest::Response> {
    let r = http
        .post(link)
        .send()
        .await
        .expect("the connect link answers");
    assert_eq!(r.status(), 303, "the connect link starts a flow: {link}");
    let cookie = cookie(r.headers());
    let authorize = location(303, r.headers(), "the connect link");
    let (page, form) = consent_form(&authorize, decision);
    let r = http
        .post(page)
        .form(&form)
        .send()
        .await
        .expect("the consent page answers");
    let callback = location(r.status().as_u16(), r.headers(), "the consent page");
    let response = http
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("the callback answers");
    Landing {
        authorize,
        callback,
        response,
    }
}

/// [`approve`] with a blocking client.
pub fn approve_blocking(
    http: &reqwest::blocking::Client,
    link: &str,
) -> Landing<reqwest::blocking::Response> {
    let r = http.post(link).send().expect("the connect link answers");
    assert_eq!(r.status(), 303, "the connect link starts a flow: {link}");
    let cookie = cookie(r.headers());
    let authorize = location(303, r.headers(), "the connect link");
    let (page, form) = consent_form(&authorize, Decision::Approve);
    let r = http
        .post(page)
        .form(&form)
        .send()
        .expect("the consent page answers");
    let callback = location(r.status().as_u16(), r.headers(), "the consent page");
    let response = http
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .expect("the callback answers");
    Landing {
        authorize,
        callback,
        response,
    }
}

/// The platform half alone, with no daemon: answers the consent page of `authorize` (an
/// authorize URL on the sandbox, as `OAuthClient::authorize_url` builds it) with `decision`, and
/// returns where the platform sends the browser back (the redirect URI with `code` and `state`,
/// or the refusal). Panics unless the page redirects.
pub async fn answer(http: &reqwest::Client, authorize: &Url, decision: Decision) -> Url {
    answer_as(http, authorize, decision, &[]).await
}

/// [`answer`] with more of the page's fields filled in (`account`: whose account the sandbox's
/// grant is for).
pub async fn answer_as(
    http: &reqwest::Client,
    authorize: &Url,
    decision: Decision,
    fields: &[(&str, &str)],
) -> Url {
    let (page, mut form) = consent_form(authorize.as_str(), decision);
    form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let r = http
        .post(page)
        .form(&form)
        .send()
        .await
        .expect("the consent page answers");
    let back = location(r.status().as_u16(), r.headers(), "the consent page");
    Url::parse(&back).expect("the consent page redirects to a URL")
}

/// The first of `params` (the definition's `callback_code_params`, in order) that the redirect
/// back from [`answer`] carries: the authorization code.
pub fn code_in(back: &Url, params: &[String]) -> Option<String> {
    params.iter().find_map(|k| {
        back.query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    })
}
