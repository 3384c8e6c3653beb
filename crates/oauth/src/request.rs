//! Requests built from a provider definition: nothing here knows a platform by name.

use tokenwarden_core::oauth1;
use tokenwarden_core::provider::{ClientAuth, Encoding, Method, ProviderSpec, TokenCall};
use tokenwarden_core::secret::Secret;
use url::Url;

/// The app (OAuth client) a connection belongs to.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    /// Client id (TikTok: app id or client key).
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// The redirect URI registered with the platform.
    pub redirect_uri: String,
    /// The app's configured `User-Agent` for the definition's `{user_agent}` headers; `None`:
    /// [`tokenwarden_core::provider::default_user_agent`] of the client id.
    pub user_agent: Option<String>,
}

/// Values for a token call's templates. A value left `None` expands to nothing, and a parameter
/// that expands to nothing is left out (`code_verifier` without PKCE).
#[derive(Debug, Default)]
pub struct Vars<'a> {
    /// `{code}`.
    pub code: Option<&'a Secret>,
    /// `{code_verifier}`.
    pub code_verifier: Option<&'a Secret>,
    /// `{refresh_token}`.
    pub refresh_token: Option<&'a Secret>,
    /// `{access_token}`.
    pub access_token: Option<&'a Secret>,
    /// `{token}`: the token a revocation or introspection call is about.
    pub token: Option<&'a Secret>,
    /// `{token_type_hint}`: which kind `token` is (RFC 7009 §2.1, RFC 7662 §2.1).
    pub token_type_hint: Option<&'static str>,
}

/// A request ready to send. Its `Debug` never shows parameter values: they hold secrets.
pub struct Prepared {
    /// Method.
    pub method: Method,
    /// Full URL (for `query` encoding, parameters included: never log it).
    pub url: Url,
    /// Body parameters for `form` encoding.
    pub form: Vec<(String, String)>,
    /// Body for `json` encoding.
    pub json: Option<serde_json::Value>,
    /// HTTP Basic credentials (`client_secret_basic`).
    pub basic: Option<(String, Secret)>,
    /// The call's own headers (`headers` in its definition), filled: never a secret.
    pub headers: Vec<(String, String)>,
    /// A ready `Authorization` value (an OAuth 1.0a signature): sent as is, marked sensitive.
    pub authorization: Option<Secret>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .field(
                "endpoint",
                &format_args!(
                    "{}{}",
                    self.url.origin().ascii_serialization(),
                    self.url.path()
                ),
            )
            .field(
                "params",
                &self
                    .form
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn expand(template: &str, app: &AppCredentials, vars: &Vars<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let value: Option<&str> = match &after[..end] {
            "client_id" => Some(&app.client_id),
            "client_secret" => Some(app.client_secret.expose()),
            "redirect_uri" => Some(&app.redirect_uri),
            "code" => vars.code.map(Secret::expose),
            "code_verifier" => vars.code_verifier.map(Secret::expose),
            "refresh_token" => vars.refresh_token.map(Secret::expose),
            "access_token" => vars.access_token.map(Secret::expose),
            "token" => vars.token.map(Secret::expose),
            "token_type_hint" => vars.token_type_hint,
            // Validation refuses unknown placeholders; keep the text if one slips through.
            _ => None,
        };
        out.push_str(value.unwrap_or(""));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// OAuth 1.0a: the request-token call (RFC 5849 §2.1), signed with the consumer secret alone:
/// `oauth_callback` in the header, the definition's fixed `request_token_params` in the body.
/// `nonce` and `timestamp` are the caller's.
pub fn prepare_request_token(
    spec: &tokenwarden_core::provider::ProviderSpec,
    app: &AppCredentials,
    nonce: &str,
    timestamp: i64,
) -> Option<Prepared> {
    let o = spec.oauth1.as_ref()?;
    let form: Vec<(String, String)> = o
        .request_token_params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let url = o.request_token_url.clone();
    let header = oauth1::authorization(
        &oauth1::Request {
            method: "POST",
            url: &url,
            form_body: (!form.is_empty()).then_some(body.as_bytes()),
        },
        &oauth1::Credentials {
            consumer_key: &app.client_id,
            consumer_secret: app.client_secret.expose(),
            token: None,
            token_secret: "",
        },
        &oauth1::Stamp {
            nonce,
            timestamp,
            extra: &[("oauth_callback", &app.redirect_uri)],
        },
    );
    Some(Prepared {
        method: Method::POST,
        url,
        form,
        json: None,
        basic: None,
        headers: Vec::new(),
        authorization: Some(Secret::new(header)),
    })
}

/// OAuth 1.0a: the access-token call (RFC 5849 §2.3) from `[token.exchange]`, signed with the
/// request token and its secret; the call's `oauth_*` parameters (`oauth_verifier`) travel in
/// the signed header, any others in the body.
pub fn prepare_access_token(
    call: &TokenCall,
    app: &AppCredentials,
    vars: &Vars<'_>,
    request_token: &str,
    request_secret: &Secret,
    nonce: &str,
    timestamp: i64,
) -> Prepared {
    let params: Vec<(String, String)> = call
        .params
        .iter()
        .map(|(k, t)| (k.clone(), expand(t, app, vars)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let (oauth, form): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(k, _)| k.starts_with("oauth_"));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let extra: Vec<(&str, &str)> = oauth
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let url = call.url.clone();
    let header = oauth1::authorization(
        &oauth1::Request {
            method: "POST",
            url: &url,
            form_body: (!form.is_empty()).then_some(body.as_bytes()),
        },
        &oauth1::Credentials {
            consumer_key: &app.client_id,
            consumer_secret: app.client_secret.expose(),
            token: Some(request_token),
            token_secret: request_secret.expose(),
        },
        &oauth1::Stamp {
            nonce,
            timestamp,
            extra: &extra,
        },
    );
    Prepared {
        method: Method::POST,
        url,
        form,
        json: None,
        basic: None,
        headers: call_headers(call, app),
        authorization: Some(Secret::new(header)),
    }
}

/// A token call's own headers (`headers` in its definition), filled from the app: never a secret.
fn call_headers(call: &TokenCall, app: &AppCredentials) -> Vec<(String, String)> {
    let values = tokenwarden_core::provider::HeaderValues {
        client_id: app.client_id.clone(),
        user_agent: app.user_agent.clone(),
        ..Default::default()
    };
    tokenwarden_core::provider::ApiSpec::fill_headers(&call.headers, &values, None)
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect()
}

/// Builds one token call.
pub fn prepare(call: &TokenCall, app: &AppCredentials, vars: &Vars<'_>) -> Prepared {
    let mut params: Vec<(String, String)> = call
        .params
        .iter()
        .map(|(k, t)| (k.clone(), expand(t, app, vars)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if call.client_auth == ClientAuth::Post {
        params.push(("client_id".into(), app.client_id.clone()));
        params.push((
            "client_secret".into(),
            app.client_secret.expose().to_string(),
        ));
    }
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for Basic, so a
    // secret with `:`, `+`, `%` or a space survives a strict server's decoding.
    let basic = (call.client_auth == ClientAuth::Basic).then(|| {
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        (
            enc(&app.client_id),
            Secret::new(enc(app.client_secret.expose())),
        )
    });
    let headers = call_headers(call, app);
    let mut url = call.url.clone();
    match call.encoding {
        Encoding::Query => {
            url.query_pairs_mut().extend_pairs(params.iter());
            Prepared {
                method: call.method,
                url,
                form: Vec::new(),
                json: None,
                basic,
                headers,
                authorization: None,
            }
        }
        Encoding::Form => Prepared {
            method: call.method,
            url,
            form: params,
            json: None,
            basic,
            headers,
            authorization: None,
        },
        Encoding::Json => {
            let obj: serde_json::Map<String, serde_json::Value> = params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Prepared {
                method: call.method,
                url,
                form: Vec::new(),
                json: Some(serde_json::Value::Object(obj)),
                basic,
                headers,
                authorization: None,
            }
        }
    }
}

/// The platform's authorize page for this app, state and scopes (and PKCE challenge).
pub fn authorize_url(
    spec: &ProviderSpec,
    app: &AppCredentials,
    state: &str,
    scopes: &[String],
    challenge: Option<&str>,
) -> Url {
    let a = &spec.authorize;
    let mut url = a.url.clone();
    // OAuth 1.0a (RFC 5849 §2.2): the request token is all the page takes (it names the app and
    // the callback); `state` is that token.
    if spec.oauth1.is_some() {
        let mut q = url.query_pairs_mut();
        q.append_pair("oauth_token", state);
        for (k, v) in &a.extra_params {
            q.append_pair(k, v);
        }
        drop(q);
        return url;
    }
    {
        let mut q = url.query_pairs_mut();
        q.append_pair(&a.client_id_param, &app.client_id);
        q.append_pair("redirect_uri", &app.redirect_uri);
        q.append_pair("state", state);
        if !a.scope_param.is_empty() {
            let chosen = if scopes.is_empty() {
                &a.default_scopes
            } else {
                scopes
            };
            if !chosen.is_empty() {
                q.append_pair(&a.scope_param, &chosen.join(&a.scope_separator));
            }
        }
        for (k, v) in &a.extra_params {
            q.append_pair(k, v);
        }
        if let Some(c) = challenge.filter(|_| a.pkce) {
            q.append_pair("code_challenge", c);
            q.append_pair("code_challenge_method", "S256");
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwarden_core::provider::Registry;

    fn app() -> AppCredentials {
        AppCredentials {
            client_id: "cid".into(),
            client_secret: Secret::new("shh-secret"),
            redirect_uri: "http://127.0.0.1:1/callback/x".into(),
            user_agent: None,
        }
    }

    /// OAuth 1.0a (X Ads): the request-token call carries oauth_callback in its signed header and
    /// the fixed parameters in the body; the access-token call carries the verifier in the
    /// header, and neither puts a secret anywhere but the signature.
    #[test]
    fn oauth1_calls_sign_their_parameters_into_the_header() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("x-ads").unwrap().spec;
        let a = app();
        let p = prepare_request_token(spec, &a, "nonce1", 1_800_000_000).unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://api.twitter.com/oauth/request_token"
        );
        assert_eq!(
            p.form,
            vec![("x_auth_access_type".to_string(), "write".to_string())]
        );
        let h = p.authorization.as_ref().unwrap().expose().to_string();
        let oauth = oauth1::parse_authorization(&h).unwrap();
        let get = |o: &[(String, String)], k: &str| {
            o.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&oauth, "oauth_callback"), Some(a.redirect_uri.clone()));
        assert_eq!(get(&oauth, "oauth_token"), None);
        assert!(!h.contains(a.client_secret.expose()));
        // The server side agrees: the body is part of the signature.
        let body = b"x_auth_access_type=write";
        let req = oauth1::Request {
            method: "POST",
            url: &p.url,
            form_body: Some(body),
        };
        assert_eq!(
            oauth1::verify(&req, &oauth, a.client_secret.expose(), ""),
            Ok(())
        );
        let tampered = oauth1::Request {
            form_body: Some(b"x_auth_access_type=read"),
            ..req
        };
        assert!(oauth1::verify(&tampered, &oauth, a.client_secret.expose(), "").is_err());

        let verifier = Secret::new("v3r1f13r");
        let vars = Vars {
            code: Some(&verifier),
            ..Default::default()
        };
        let rs = Secret::new("request-secret");
        let p = prepare_access_token(
            &spec.token.exchange,
            &a,
            &vars,
            "request-token",
            &rs,
            "nonce2",
            1_800_000_000,
        );
        assert!(
            p.form.is_empty(),
            "oauth_verifier travels in the header: {:?}",
            p.form
        );
        let h = p.authorization.as_ref().unwrap().expose().to_string();
        let oauth = oauth1::parse_authorization(&h).unwrap();
        assert_eq!(get(&oauth, "oauth_verifier").as_deref(), Some("v3r1f13r"));
        assert_eq!(get(&oauth, "oauth_token").as_deref(), Some("request-token"));
        assert!(!h.contains("request-secret"));
        let req = oauth1::Request {
            method: "POST",
            url: &p.url,
            form_body: None,
        };
        assert_eq!(
            oauth1::verify(&req, &oauth, a.client_secret.expose(), "request-secret"),
            Ok(())
        );
        // The authorize page takes the request token and nothing of the app.
        let url = authorize_url(spec, &a, "request-token", &[], None);
        assert_eq!(
            url.as_str(),
            "https://api.twitter.com/oauth/authorize?oauth_token=request-token"
        );
    }

    #[test]
    fn tiktok_business_exchange_is_json_with_its_own_names() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("tiktok-business").unwrap().spec;
        let code = Secret::new("the-code");
        let p = prepare(
            &spec.token.exchange,
            &app(),
            &Vars {
                code: Some(&code),
                ..Default::default()
            },
        );
        assert_eq!(
            p.json.unwrap(),
            serde_json::json!({"app_id": "cid", "secret": "shh-secret", "auth_code": "the-code"})
        );
        assert!(p.form.is_empty());
        let shown = format!(
            "{p:?}",
            p = prepare(&spec.token.exchange, &app(), &Vars::default())
        );
        assert!(!shown.contains("shh-secret"), "{shown}");
    }

    #[test]
    fn threads_refresh_is_a_get_with_the_token_in_the_query() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("threads").unwrap().spec;
        let at = Secret::new("long-lived");
        let p = prepare(
            spec.token.refresh.as_ref().unwrap(),
            &app(),
            &Vars {
                access_token: Some(&at),
                ..Default::default()
            },
        );
        assert_eq!(p.method, Method::GET);
        let q: Vec<(String, String)> = p.url.query_pairs().into_owned().collect();
        assert!(q.contains(&("grant_type".into(), "th_refresh_token".into())));
        assert!(q.contains(&("access_token".into(), "long-lived".into())));
    }

    #[test]
    fn missing_values_leave_parameters_out() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("tiktok").unwrap().spec;
        let code = Secret::new("c");
        let p = prepare(
            &spec.token.exchange,
            &app(),
            &Vars {
                code: Some(&code),
                ..Default::default()
            },
        );
        let names: Vec<&str> = p.form.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.contains(&"client_key") && !names.contains(&"code_verifier"),
            "{names:?}"
        );
    }

    #[test]
    fn authorize_urls_follow_the_definition() {
        let reg = Registry::builtin().unwrap();
        let tt = authorize_url(
            &reg.get("tiktok").unwrap().spec,
            &app(),
            "st",
            &["user.info.basic".into(), "video.list".into()],
            Some("ch"),
        );
        let q: std::collections::HashMap<String, String> = tt.query_pairs().into_owned().collect();
        assert_eq!(q["client_key"], "cid");
        assert_eq!(q["scope"], "user.info.basic,video.list");
        assert!(
            !q.contains_key("code_challenge"),
            "tiktok web flow has pkce off"
        );
        let tb = authorize_url(
            &reg.get("tiktok-business").unwrap().spec,
            &app(),
            "st",
            &[],
            None,
        );
        let q: std::collections::HashMap<String, String> = tb.query_pairs().into_owned().collect();
        assert_eq!(q["app_id"], "cid");
        assert!(!q.contains_key("scope"));
        let snap = authorize_url(&reg.get("snapchat").unwrap().spec, &app(), "st", &[], None);
        assert!(snap.as_str().contains("scope=snapchat-marketing-api"));
        assert!(!snap.as_str().contains("shh-secret"));
    }

    fn call(auth: &str, params: serde_json::Value) -> TokenCall {
        serde_json::from_value(serde_json::json!({
            "method": "POST",
            "url": "https://as.example/token",
            "encoding": "form",
            "client_auth": auth,
            "params": params,
        }))
        .unwrap()
    }

    /// A definition's token-call headers are filled from the app: its configured User-Agent, or
    /// the default naming tokenwarden and the client id; the Debug of the request shows neither
    /// values nor secrets.
    #[test]
    fn token_call_headers_carry_the_apps_user_agent() {
        let reg = tokenwarden_core::provider::Registry::builtin().unwrap();
        let reddit = &reg.get("reddit").unwrap().spec;
        let refresh = reddit.token.refresh.as_ref().unwrap();
        let rt = Secret::new("rt-secret-value");
        let vars = Vars {
            refresh_token: Some(&rt),
            ..Default::default()
        };
        let p = prepare(refresh, &app(), &vars);
        assert_eq!(p.headers.len(), 1);
        assert_eq!(p.headers[0].0, "User-Agent");
        assert!(
            p.headers[0].1.contains("tokenwarden") && p.headers[0].1.contains("cid"),
            "{}",
            p.headers[0].1
        );
        let own = AppCredentials {
            user_agent: Some("web:com.example:v1 (by /u/me)".into()),
            ..app()
        };
        let p = prepare(refresh, &own, &vars);
        assert_eq!(p.headers[0].1, "web:com.example:v1 (by /u/me)");
        let debug = format!("{p:?}");
        assert!(!debug.contains("rt-secret-value") && !debug.contains("shh-secret"));
        // A platform without token-call headers sends none.
        let snap = &reg.get("snapchat").unwrap().spec;
        assert!(
            prepare(snap.token.refresh.as_ref().unwrap(), &app(), &vars)
                .headers
                .is_empty()
        );
    }

    #[test]
    fn client_secret_basic_form_urlencodes_id_and_secret_first() {
        let app = AppCredentials {
            client_id: "app:1".into(),
            client_secret: Secret::new("s+e/c=r:e%t x"),
            redirect_uri: "http://127.0.0.1:1/cb".into(),
            user_agent: None,
        };
        let p = prepare(
            &call(
                "client_secret_basic",
                serde_json::json!({"grant_type": "refresh_token"}),
            ),
            &app,
            &Vars::default(),
        );
        let (user, secret) = p.basic.unwrap();
        assert_eq!(user, "app%3A1");
        assert_eq!(secret.expose(), "s%2Be%2Fc%3Dr%3Ae%25t+x");
        assert!(p.form.iter().all(|(k, _)| k != "client_secret"));
    }

    #[test]
    fn client_secret_post_puts_the_credentials_in_the_body() {
        let p = prepare(
            &call(
                "client_secret_post",
                serde_json::json!({"grant_type": "refresh_token", "refresh_token": "{refresh_token}"}),
            ),
            &app(),
            &Vars::default(),
        );
        assert!(p.basic.is_none());
        assert!(p.form.contains(&("client_id".into(), "cid".into())));
        assert!(
            p.form
                .contains(&("client_secret".into(), "shh-secret".into()))
        );
        assert!(
            p.form.iter().all(|(k, _)| k != "refresh_token"),
            "an empty template is left out"
        );
        assert!(!format!("{p:?}").contains("shh-secret"));
    }

    #[test]
    fn revocation_templates_name_the_token_and_its_hint() {
        let rt = Secret::new("the-refresh-token");
        let p = prepare(
            &call(
                "basic",
                serde_json::json!({"token": "{token}", "token_type_hint": "{token_type_hint}"}),
            ),
            &app(),
            &Vars {
                token: Some(&rt),
                token_type_hint: Some("refresh_token"),
                ..Default::default()
            },
        );
        assert_eq!(
            p.form,
            [
                ("token".to_string(), "the-refresh-token".to_string()),
                ("token_type_hint".to_string(), "refresh_token".to_string())
            ]
        );
    }
}
