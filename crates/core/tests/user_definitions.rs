//! A user's own platform definition: the complete example in docs/adding-a-platform.md loads
//! (so the page never rots), RFC 6749 §5.2 and RFC 6750 §3.1 answers classify correctly for it
//! with no rules of its own, common rate-limit headers give waits, and every mistake in the newer
//! keys (client_secret_post, RFC 7009 token lists, RFC 7662 introspection) is explained.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::provider::{
    ClientAuth, Context, Endpoints, ProbeVia, Provider, Registry, TokenKind,
};

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/adding-a-platform.md"
    ))
    .unwrap()
}

/// The first ```toml block that is a whole definition (starts with a comment, then `id =`).
fn example() -> String {
    let text = doc();
    text.split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.lines().any(|l| l.starts_with("id = ")))
        .expect("the page has a complete example")
        .to_string()
}

fn acme() -> Provider {
    Registry::check("acme-ads.toml", &example()).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn classify(
    p: &Provider,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
    ctx: Context,
) -> Classification {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    p.classifier().classify(
        &ResponseView {
            status,
            headers: &headers,
            body: body.as_bytes(),
        },
        ctx,
        now(),
    )
}

#[test]
fn the_documented_example_loads_with_every_variation() {
    let p = acme();
    let s = &p.spec;
    assert_eq!(s.id.as_str(), "acme-ads");
    assert!(s.authorize.pkce);
    assert_eq!(s.authorize.scope_separator, ",");
    assert_eq!(s.token.exchange.client_auth, ClientAuth::Basic);
    assert_eq!(
        s.token.exchange.params.get("audience").map(String::as_str),
        Some("ads-api")
    );
    let revoke = s.token.revoke.as_ref().unwrap();
    assert_eq!(
        revoke.tokens,
        [TokenKind::RefreshToken, TokenKind::AccessToken]
    );
    assert!(s.token.introspect.is_some());
    assert_eq!(s.api.probe.via, ProbeVia::Introspection);
    assert!(s.refresh.rotates);
    assert_eq!(s.refresh.reuse_grace, Some(Duration::from_secs(30)));
    // It is also a valid file to drop into --providers-dir next to the shipped ones.
    let reg = Registry::with_files([("mine/acme-ads.toml".to_string(), example())]).unwrap();
    assert!(reg.get("acme-ads").is_some() && reg.get("snapchat").is_some());
}

#[test]
fn the_problems_the_page_shows_are_the_ones_validate_prints() {
    let text = example();
    let broken = text
        .replace("tokens = [\"refresh_token\", \"access_token\"]\n", "")
        .replace("margin = \"5m\"", "margin = \"1h\"");
    let problems: Vec<String> = Registry::check("acme-ads.toml", &broken)
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    let page = doc();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    for p in &problems {
        assert!(page.contains(p.as_str()), "the page shows {p:?}");
    }
}

#[test]
fn rfc_6749_token_endpoint_errors_classify_for_any_provider() {
    let p = acme();
    let t = Context::TokenEndpoint;
    let cases: &[(u16, &str, Kind, Action, Blame)] = &[
        (
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
            Kind::TokenRevoked,
            Action::Reauthorize,
            Blame::Connection,
        ),
        (
            400,
            r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
            // Issue 18 family 4: invalid_grant is a refusal whatever its text says.
            Kind::TokenRevoked,
            Action::Reauthorize,
            Blame::Connection,
        ),
        (
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            Kind::InvalidRequest,
            Action::FixRequest,
            Blame::App,
        ),
        (
            400,
            r#"{"error":"unauthorized_client"}"#,
            Kind::InvalidRequest,
            Action::FixRequest,
            Blame::App,
        ),
        (
            400,
            r#"{"error":"unsupported_grant_type"}"#,
            Kind::InvalidRequest,
            Action::FixRequest,
            Blame::App,
        ),
        (
            400,
            r#"{"error":"invalid_request","error_description":"missing code_verifier"}"#,
            Kind::InvalidRequest,
            Action::FixRequest,
            Blame::App,
        ),
        (
            400,
            r#"{"error":"invalid_scope"}"#,
            Kind::InsufficientScope,
            Action::RequestScopes,
            Blame::Connection,
        ),
        (
            503,
            r#"{"error":"temporarily_unavailable"}"#,
            Kind::ServiceUnavailable,
            Action::BackoffAndRetry,
            Blame::Platform,
        ),
        (
            500,
            r#"{"error":"server_error"}"#,
            Kind::ServiceUnavailable,
            Action::BackoffAndRetry,
            Blame::Platform,
        ),
        (
            401,
            "",
            Kind::InvalidRequest,
            Action::FixRequest,
            Blame::App,
        ),
    ];
    for (status, body, kind, action, blame) in cases {
        let c = classify(&p, *status, &[], body, t);
        assert_eq!(
            (c.kind, c.action, c.blame),
            (*kind, *action, *blame),
            "{status} {body}: {c:#?}"
        );
        assert!(
            c.title.len() > 5 && c.fix.len() > 5,
            "{body}: a title and a fix"
        );
    }
}

#[test]
fn rfc_6750_challenges_classify_for_any_provider() {
    let p = acme();
    let a = Context::Api;
    let cases: &[(u16, &str, Kind, Action)] = &[
        (
            401,
            r#"Bearer realm="acme", error="invalid_token", error_description="The access token expired""#,
            Kind::TokenExpired,
            Action::RefreshAndRetry,
        ),
        (
            401,
            r#"Bearer realm="acme", error="invalid_token", error_description="invalid token provided""#,
            Kind::TokenInvalid,
            Action::RefreshAndRetry,
        ),
        (
            403,
            r#"Bearer error="insufficient_scope", scope="ads.write""#,
            Kind::InsufficientScope,
            Action::RequestScopes,
        ),
        (
            400,
            r#"Bearer error="invalid_request""#,
            Kind::InvalidRequest,
            Action::FixRequest,
        ),
        (
            401,
            r#"Bearer realm="acme""#,
            Kind::TokenInvalid,
            Action::RefreshAndRetry,
        ),
    ];
    for (status, challenge, kind, action) in cases {
        let c = classify(&p, *status, &[("WWW-Authenticate", challenge)], "", a);
        assert_eq!((c.kind, c.action), (*kind, *action), "{challenge}: {c:#?}");
    }
}

#[test]
fn retry_after_and_common_rate_limit_headers_give_the_wait() {
    let p = acme();
    let a = Context::Api;
    let epoch = (now().timestamp() + 90).to_string();
    let cases: &[(&[(&str, &str)], u64)] = &[
        (&[("Retry-After", "7")], 7),
        (&[("Retry-After", "Fri, 15 Jan 2027 08:01:00 GMT")], 60),
        (&[("RateLimit-Reset", "20")], 20),
        (&[("RateLimit", "limit=10, remaining=0, reset=25")], 25),
        (&[("RateLimit", "\"default\";r=0;t=33")], 33),
        (&[("X-RateLimit-Reset", epoch.as_str())], 90),
        (&[("x-rate-limit-reset", "45")], 45),
        // Several: the longest wins; the provider's own header counts too.
        (&[("Retry-After", "5"), ("x-acme-retry-in", "9")], 9),
    ];
    // 2027-01-15T08:00:00Z is 1_800_000_000.
    assert_eq!(now().to_rfc3339(), "2027-01-15T08:00:00+00:00");
    for (headers, secs) in cases {
        let c = classify(&p, 429, headers, "", a);
        assert_eq!(c.kind, Kind::RateLimited, "{headers:?}");
        assert_eq!(
            c.retry_after,
            Some(Duration::from_secs(*secs)),
            "{headers:?}"
        );
    }
    // A wait header on a refresh-and-retry answer does not delay the refresh.
    let c = classify(
        &p,
        401,
        &[
            ("WWW-Authenticate", "Bearer error=\"invalid_token\""),
            ("Retry-After", "30"),
        ],
        "",
        a,
    );
    assert_eq!(c.retry_after, None);
    // The example's own rules: a daily quota waits for midnight UTC, a suspension is not retried.
    let c = classify(
        &p,
        429,
        &[],
        r#"{"error":{"code":"QUOTA_EXCEEDED","message":"daily"}}"#,
        a,
    );
    assert_eq!(c.kind, Kind::RateLimited);
    assert_eq!(c.retry_after, Some(Duration::from_secs(16 * 3600)));
    let c = classify(
        &p,
        403,
        &[],
        r#"{"error":{"code":"ACCOUNT_SUSPENDED","message":"x","request_id":"r1"}}"#,
        a,
    );
    assert_eq!(
        (c.kind, c.action),
        (Kind::AppNotAuthorized, Action::FixRequest)
    );
    assert_eq!(c.trace_id.as_deref(), Some("r1"));
}

#[test]
fn mistakes_in_auth_revocation_and_introspection_keys_are_explained() {
    let text = example();
    let cases: &[(&str, &str, &str)] = &[
        (
            "params = { token = \"{token}\", token_type_hint = \"{token_type_hint}\" }\ntokens = [\"refresh_token\", \"access_token\"]",
            "params = { token = \"{access_token}\" }\ntokens = [\"refresh_token\", \"access_token\"]",
            "token.revoke.params: tokens is set but no parameter carries {token}",
        ),
        (
            "params = { grant_type = \"refresh_token\", refresh_token = \"{refresh_token}\" }",
            "params = { grant_type = \"refresh_token\", refresh_token = \"{refresh_token}\", hint = \"{token_type_hint}\" }",
            "token.refresh.params: {token} and {token_type_hint} exist only in [token.revoke] and [token.introspect]",
        ),
        (
            "client_auth = \"client_secret_basic\"\nparams = { grant_type = \"refresh_token\", refresh_token = \"{refresh_token}\" }",
            "client_auth = \"client_secret_post\"\nparams = { grant_type = \"refresh_token\", refresh_token = \"{refresh_token}\", client_secret = \"{client_secret}\" }",
            "token.refresh.client_auth: with client_auth = \"post\" tokenwarden adds client_id and client_secret to the body itself",
        ),
        (
            "probe = { via = \"introspection\", every = \"15m\" }",
            "probe = { via = \"api\", every = \"15m\" }",
            "api.probe.path: must start with a single /",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(text.contains(from), "the example holds {from:?}");
        let broken = text.replacen(from, to, 1);
        let problems = Registry::check("acme-ads.toml", &broken)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(problems.contains(expect), "{to:?} gives:\n{problems}");
    }
    // An introspection probe without an introspection endpoint.
    let start = text.find("[token.introspect]").unwrap();
    let end = start + text[start..].find("[token.response]").unwrap();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let problems = Registry::check("acme-ads.toml", &without).unwrap_err();
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains("api.probe.via: probing by introspection needs a [token.introspect] call")),
        "{problems:?}"
    );
    // A GET introspection would put the token in the URL.
    let get = text.replacen(
        "[token.introspect]\nmethod = \"POST\"\nurl = \"https://login.acme-ads.example/oauth2/introspect\"\nencoding = \"form\"",
        "[token.introspect]\nmethod = \"GET\"\nurl = \"https://login.acme-ads.example/oauth2/introspect\"\nencoding = \"query\"",
        1,
    );
    assert_ne!(get, text);
    let problems = Registry::check("acme-ads.toml", &get).unwrap_err();
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains("token.introspect.method: RFC 7662 introspection is a POST")),
        "{problems:?}"
    );
}

#[test]
fn the_oidc_peer_definitions_are_valid_user_files() {
    for id in ["oidc-basic", "oidc-post"] {
        let path = format!(
            "{}/../../tests/peers/oidc-provider/{id}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        // The peer listens on loopback over plain http: allowed explicitly, as a test setup must.
        let p = Registry::check_allowing(&path, &text, Endpoints::AllowHttp)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.spec.api.probe.via, ProbeVia::Introspection);
    }
}

#[test]
fn api_headers_take_only_app_and_connection_values_and_never_our_own_headers() {
    let base = example();
    let good = format!(
        "{base}\n[[api.headers]]\nname = \"X-Acme-Client\"\nvalue = \"{{client_id}}\"\nreplaces = true\n\n[[api.headers]]\nname = \"X-Acme-Account\"\nvalue = \"acct-{{account_id}}\"\n"
    );
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.api.headers.len(), 2);
    let cases: &[(&str, &str, &str)] = &[
        (
            "Authorization",
            "{client_id}",
            "api.headers[0].name: \"Authorization\" is set by tokenwarden",
        ),
        (
            "X-Acme",
            "{access_token}",
            "api.headers[0].value: unknown placeholder {access_token}",
        ),
        (
            "X-Acme",
            "{client_secret}",
            "api.headers[0].value: unknown placeholder {client_secret}",
        ),
        (
            "X-Acme",
            "fixed",
            "api.headers[0].value: a fixed value belongs in the caller's request",
        ),
        (
            "X Acme",
            "{client_id}",
            "api.headers[0].name: \"X Acme\" is not a header name",
        ),
        (
            "Cookie",
            "{account_id}",
            "is set by tokenwarden or the HTTP client",
        ),
    ];
    for (name, value, expect) in cases {
        let text = format!("{base}\n[[api.headers]]\nname = \"{name}\"\nvalue = \"{value}\"\n");
        let problems = Registry::check("acme-ads.toml", &text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            problems.contains(expect),
            "{name}={value} gives:\n{problems}"
        );
    }
    let twice = format!(
        "{base}\n[[api.headers]]\nname = \"X-A\"\nvalue = \"{{client_id}}\"\n[[api.headers]]\nname = \"x-a\"\nvalue = \"{{account_id}}\"\n"
    );
    let problems = Registry::check("acme-ads.toml", &twice).unwrap_err();
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains("api.headers[1].name: \"x-a\" is listed twice")),
        "{problems:?}"
    );
    // A keyed envelope takes its sub-code from the key; a wait field needs a path.
    let keyed = base.replacen(
        "[[errors.envelopes]]\ncode = \"error.code\"",
        "[[errors.envelopes]]\nkeyed = true\nsubcode = \"error.sub\"\ncode = \"error.code\"",
        1,
    );
    assert_ne!(keyed, base);
    let keyed =
        format!("{keyed}\n[[errors.wait_fields]]\npath = \"a..b\"\nformat = \"duration\"\n");
    let problems = Registry::check("acme-ads.toml", &keyed)
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        problems.contains("errors.envelopes[0].subcode: a keyed envelope"),
        "{problems}"
    );
    assert!(
        problems.contains("errors.wait_fields[0].path: \"a..b\" is not a dotted path"),
        "{problems}"
    );
}

#[test]
fn the_developer_token_is_the_only_secret_a_header_may_carry() {
    let base = example();
    let good = format!(
        "{base}\n[[api.headers]]\nname = \"DeveloperToken\"\nvalue = \"{{developer_token}}\"\nreplaces = true\n"
    );
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.api.headers[0].value, "{developer_token}");
    for value in [
        "{refresh_token}",
        "{access_token}",
        "{client_secret}",
        "{code}",
        "{code_verifier}",
        "{token}",
        "{developer_token}{client_secret}",
    ] {
        let text = format!("{base}\n[[api.headers]]\nname = \"X-Acme\"\nvalue = \"{value}\"\n");
        let problems = Registry::check("acme-ads.toml", &text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            problems.contains("api.headers[0].value: unknown placeholder"),
            "{value} gives:\n{problems}"
        );
    }
}

#[test]
fn a_probe_body_is_json_sent_with_post() {
    let base = example();
    let probe = "probe = { via = \"introspection\", every = \"15m\" }";
    assert!(base.contains(probe));
    let with = |p: &str| base.replacen(probe, p, 1);
    let good = with(
        "probe = { method = \"POST\", path = \"/CustomerManagement/v13/User/Query\", body = '{\"UserId\": null}' }",
    );
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.api.probe.body.as_deref(), Some("{\"UserId\": null}"));
    for (probe, expect) in [
        (
            "probe = { method = \"POST\", path = \"/q\", body = '{\"UserId\": nul' }",
            "api.probe.body: \"{\\\"UserId\\\": nul\" is not JSON",
        ),
        (
            "probe = { method = \"GET\", path = \"/q\", body = '{}' }",
            "api.probe.body: a body is sent with method = \"POST\" only",
        ),
        (
            "probe = { via = \"introspection\", body = '{}' }",
            "api.probe.body: only an API probe sends a body",
        ),
    ] {
        let problems = Registry::check("acme-ads.toml", &with(probe))
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(problems.contains(expect), "{probe} gives:\n{problems}");
    }
}

#[test]
fn regions_are_data_the_first_is_the_default_and_mistakes_are_explained() {
    let base = example();
    let region = |name: &str, auth: &str, token: &str, api: &str| {
        format!(
            "\n[[regions]]\nname = \"{name}\"\nauthorize_url = \"{auth}\"\ntoken_url = \"{token}\"\napi_base_url = \"{api}\"\n"
        )
    };
    let us = region(
        "us",
        "https://login.acme-ads.example/oauth2/authorize",
        "https://login.acme-ads.example/oauth2/token",
        "https://api.acme-ads.example/v3",
    );
    let eu = region(
        "eu",
        "https://login.eu.acme-ads.example/oauth2/authorize",
        "https://login.eu.acme-ads.example/oauth2/token",
        "https://api.eu.acme-ads.example/v3",
    );
    let good = format!("{base}{us}{eu}");
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.region_names(), ["us", "eu"]);
    // The default region changes nothing; another moves consent, every token call at the
    // exchange URL (refresh too) and the API base, and leaves endpoints elsewhere alone.
    assert_eq!(p.spec.in_region(None).authorize.url, p.spec.authorize.url);
    assert_eq!(
        p.spec.in_region(Some("us")).api.base_url,
        p.spec.api.base_url
    );
    let e = p.spec.in_region(Some("eu"));
    assert_eq!(
        e.authorize.url.as_str(),
        "https://login.eu.acme-ads.example/oauth2/authorize"
    );
    assert_eq!(
        e.token.exchange.url.as_str(),
        "https://login.eu.acme-ads.example/oauth2/token"
    );
    assert_eq!(
        e.token.refresh.as_ref().unwrap().url.as_str(),
        "https://login.eu.acme-ads.example/oauth2/token"
    );
    assert_eq!(
        e.token.revoke.as_ref().unwrap().url,
        p.spec.token.revoke.as_ref().unwrap().url
    );
    assert_eq!(
        e.api.base_url.as_str(),
        "https://api.eu.acme-ads.example/v3"
    );
    // An app's region is checked against the definition, naming the allowed ones.
    assert!(p.spec.check_region(Some("eu")).is_ok());
    assert!(p.spec.check_region(None).is_ok());
    let wrong = p.spec.check_region(Some("fe")).unwrap_err().to_string();
    assert_eq!(
        wrong,
        "acme-ads has no region \"fe\"; its regions are us, eu"
    );
    let none = acme()
        .spec
        .check_region(Some("eu"))
        .unwrap_err()
        .to_string();
    assert!(none.contains("acme-ads has no regions"), "{none}");
    // Moved to a local origin, the regions stay apart: the default with the top-level URLs,
    // the others under /region/<name>.
    let moved = p.with_origin(&url::Url::parse("http://127.0.0.1:9/acme-ads").unwrap());
    assert_eq!(
        moved.spec.regions[0].token_url,
        moved.spec.token.exchange.url
    );
    assert_eq!(
        moved.spec.regions[1].token_url.as_str(),
        "http://127.0.0.1:9/acme-ads/region/eu/oauth2/token"
    );
    assert_eq!(
        moved.spec.in_region(Some("eu")).api.base_url.as_str(),
        "http://127.0.0.1:9/acme-ads/region/eu/v3"
    );

    let cases: &[(String, &str)] = &[
        (
            format!("{base}{eu}{us}"),
            "regions[0].authorize_url: the first region is the default and must repeat authorize.url",
        ),
        (
            format!(
                "{base}{us}{}",
                region(
                    "EU!",
                    "https://a.example/x",
                    "https://a.example/t",
                    "https://b.example"
                )
            ),
            "regions[1].name: \"EU!\" is not a region name",
        ),
        (
            format!("{base}{us}{eu}{eu}"),
            "regions[2].name: region \"eu\" is listed twice",
        ),
        (
            format!(
                "{base}{us}{}",
                region(
                    "eu",
                    "http://login.eu.example/a",
                    "https://a.example/t",
                    "https://b.example"
                )
            ),
            "regions[1].authorize_url: is a plain http:// URL",
        ),
        (
            format!(
                "{base}{us}{}",
                region(
                    "eu",
                    "https://a.example/a",
                    "https://a.example/t",
                    "https://api.acme-ads.example/v3"
                )
            ),
            "regions[1].api_base_url: is another region's API base too",
        ),
    ];
    for (text, expect) in cases {
        let problems = Registry::check("acme-ads.toml", text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            problems.contains(expect),
            "expected {expect:?}, got:\n{problems}"
        );
    }
}

/// Issue 17's model features: `{api_version}` needs `api.version`, a header limited to `paths`
/// may be fixed (and its paths are prefixes under the API base), and an end counted from the
/// consent (`refresh_token_extends = false`) needs its length.
#[test]
fn api_versions_path_limited_headers_and_refresh_tokens_counted_from_consent_are_checked() {
    let base = example();
    let problems_of = |text: &str| -> String {
        Registry::check("acme-ads.toml", text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let versioned = base.replace(
        "base_url = \"https://api.acme-ads.example/v3\"",
        "base_url = \"https://api.acme-ads.example/v3\"\nversion = \"202601\"",
    );
    assert_ne!(versioned, base);
    let header = "\n[[api.headers]]\nname = \"Acme-Version\"\nvalue = \"{api_version}\"\npaths = [\"/rest/\"]\n\n[[api.headers]]\nname = \"X-Protocol\"\nvalue = \"2.0.0\"\npaths = [\"/rest/\", \"/v3/\"]\n";
    let good = format!("{versioned}{header}");
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.api.version.as_deref(), Some("202601"));
    let sent = p
        .spec
        .api
        .extra_headers(&tokenwarden_core::provider::HeaderValues::default());
    assert_eq!(sent[0].value, "202601");
    assert!(sent[0].applies_to("/rest/x") && !sent[0].applies_to("/v2/x"));

    let missing = problems_of(&format!("{base}{header}"));
    assert!(
        missing.contains("api.headers[0].value: uses {api_version}: set api.version"),
        "{missing}"
    );
    let bad_path = problems_of(&format!(
        "{versioned}\n[[api.headers]]\nname = \"X-P\"\nvalue = \"1\"\npaths = [\"rest\"]\n"
    ));
    assert!(
        bad_path.contains("api.headers[0].paths[0]: \"rest\" is not a path prefix"),
        "{bad_path}"
    );
    let bad_version = problems_of(&versioned.replace("\"202601\"", "\"2026 01\""));
    assert!(
        bad_version.contains("api.version: \"2026 01\" is not a version"),
        "{bad_version}"
    );

    let fixed_end = base.replace(
        "warn_before = \"14d\"",
        "warn_before = \"14d\"\nrefresh_token_extends = false",
    );
    assert_ne!(fixed_end, base);
    let p = Registry::check("acme-ads.toml", &fixed_end).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!p.spec.refresh.refresh_token_extends);
    let no_length = problems_of(
        &fixed_end
            .replace("refresh_token_lifetime = \"90d\"\n", "")
            .replace("refresh_expires_in = \"refresh_token_expires_in\"\n", ""),
    );
    assert!(
        no_length.contains(
            "refresh.refresh_token_extends: an end counted from the consent needs its length"
        ),
        "{no_length}"
    );
}

/// Headers on token calls (Reddit's User-Agent): `{client_id}` and `{user_agent}` only, never a
/// token, a code or the client secret, never a header tokenwarden or the HTTP client sets, and
/// `replaces` means nothing there.
#[test]
fn token_call_headers_take_only_the_apps_values() {
    let base = example();
    let refresh_params =
        "params = { grant_type = \"refresh_token\", refresh_token = \"{refresh_token}\" }\n";
    assert!(base.contains(refresh_params), "the example's refresh call");
    let with = |header: &str| {
        base.replacen(
            refresh_params,
            &format!("{refresh_params}headers = [{header}]\n"),
            1,
        )
    };
    let good = with(
        "{ name = \"User-Agent\", value = \"{user_agent}\" }, { name = \"X-Client\", value = \"app {client_id}\" }",
    );
    let p = Registry::check("acme-ads.toml", &good).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.spec.token.refresh.as_ref().unwrap().headers.len(), 2);
    let cases: &[(&str, &str)] = &[
        (
            "{ name = \"User-Agent\", value = \"{refresh_token}\" }",
            "token.refresh.headers[0].value: unknown placeholder {refresh_token}",
        ),
        (
            "{ name = \"X-Secret\", value = \"{client_secret}\" }",
            "token.refresh.headers[0].value: unknown placeholder {client_secret}",
        ),
        (
            "{ name = \"X-Code\", value = \"{code}\" }",
            "unknown placeholder {code}",
        ),
        (
            "{ name = \"X-Dev\", value = \"{developer_token}\" }",
            "unknown placeholder {developer_token}",
        ),
        (
            "{ name = \"X-Account\", value = \"{account_id}\" }",
            "unknown placeholder {account_id}",
        ),
        (
            "{ name = \"Authorization\", value = \"{client_id}\" }",
            "token.refresh.headers[0].name: \"Authorization\" is set by tokenwarden",
        ),
        (
            "{ name = \"Content-Type\", value = \"{client_id}\" }",
            "is set by tokenwarden or the HTTP client",
        ),
        (
            "{ name = \"User-Agent\", value = \"tokenwarden\" }",
            "token.refresh.headers[0].value: a fixed value",
        ),
        (
            "{ name = \"User-Agent\", value = \"{user_agent}\", replaces = true }",
            "replaces means nothing on a token call",
        ),
        (
            "{ name = \"User-Agent\", value = \"{user_agent}\" }, { name = \"user-agent\", value = \"{client_id}\" }",
            "listed twice",
        ),
    ];
    for (header, expect) in cases {
        let problems = Registry::check("acme-ads.toml", &with(header))
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(problems.contains(expect), "{header} gives:\n{problems}");
    }
}

/// `[environments.sandbox]` mistakes are named: no sandbox host, a rename of a scope the
/// definition never asks for (a typo that would leave sandbox apps asking for production's), a
/// rename to itself, a "scope" with a separator in it, an environment other than sandbox.
#[test]
fn environment_scope_renames_are_checked() {
    let good = example();
    let scope = acme()
        .spec
        .authorize
        .default_scopes
        .first()
        .cloned()
        .expect("the example asks for a scope");
    let has_sandbox = acme().spec.api.sandbox_base_url.is_some();
    let cases: Vec<(String, &str)> = vec![
        (
            "\n[environments.sandbox]\nscopes = { \"not-asked-for\" = \"sbx\" }\n".to_string(),
            "never asks for",
        ),
        (
            format!("\n[environments.sandbox]\nscopes = {{ \"{scope}\" = \"{scope}\" }}\n"),
            "to itself",
        ),
        (
            format!("\n[environments.sandbox]\nscopes = {{ \"{scope}\" = \"a b\" }}\n"),
            "one scope on each side",
        ),
        (
            "\n[environments.staging]\nscopes = {}\n".to_string(),
            "unknown field",
        ),
    ];
    for (extra, want) in cases {
        let text = format!("{good}{extra}");
        let problems = Registry::check("acme-ads.toml", &text)
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{extra}: {problems:?}"
        );
    }
    let renamed =
        format!("{good}\n[environments.sandbox]\nscopes = {{ \"{scope}\" = \"sbx.{scope}\" }}\n");
    let result = Registry::check("acme-ads.toml", &renamed);
    if has_sandbox {
        let p = result.unwrap_or_else(|e| panic!("{e:?}"));
        let s = p
            .spec
            .in_environment(tokenwarden_core::connection::Environment::Sandbox);
        assert_eq!(s.authorize.default_scopes[0], format!("sbx.{scope}"));
    } else {
        let problems: Vec<String> = result.unwrap_err().iter().map(|p| p.to_string()).collect();
        assert!(
            problems.iter().any(|p| p.contains("api.sandbox_base_url")),
            "{problems:?}"
        );
    }
}

/// `[[api.services]]` mistakes are named: a path prefix that is not a plain path, none at all, a
/// plain-HTTP host, and a sandbox host on one side only.
#[test]
fn api_service_hosts_are_checked() {
    let good = example();
    let has_sandbox = acme().spec.api.sandbox_base_url.is_some();
    let service = |paths: &str, extra: &str| {
        format!(
            "{good}\n[[api.services]]\npaths = {paths}\nbase_url = \"https://reports.acme.example\"\n{extra}"
        )
    };
    let mut cases = vec![
        (service(r#"["reports/"]"#, ""), "is not a path prefix"),
        (service(r#"["/a/../b"]"#, ""), "is not a path prefix"),
        (service(r#"["//evil/"]"#, ""), "is not a path prefix"),
        (service("[]", ""), "at least one path prefix"),
        (
            format!(
                "{good}\n[[api.services]]\npaths = [\"/r/\"]\nbase_url = \"http://reports.acme.example\"\n"
            ),
            "api.services[0].base_url",
        ),
    ];
    if has_sandbox {
        cases.push((service(r#"["/r/"]"#, ""), "say this service's too"));
    } else {
        cases.push((
            service(
                r#"["/r/"]"#,
                "sandbox_base_url = \"https://sandbox.reports.acme.example\"\n",
            ),
            "needs api.sandbox_base_url",
        ));
    }
    for (text, want) in cases {
        let problems: Vec<String> = Registry::check("acme-ads.toml", &text)
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.iter().map(|p| p.to_string()).collect());
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want}: {problems:?}"
        );
    }
}

/// `[api.soap]` mistakes are named: an element name that is not XML's, a media type that is not
/// one, an entry with a fixed value or an unknown placeholder, one listed twice.
#[test]
fn soap_envelope_entries_are_checked() {
    let good = example();
    let soap = |body: &str| format!("{good}\n[api.soap]\n{body}\n");
    let ok = soap(
        "credential_element = \"AuthenticationToken\"\n[[api.soap.elements]]\nname = \"DeveloperToken\"\nvalue = \"{developer_token}\"\n",
    );
    let p = Registry::check("acme-ads.toml", &ok).unwrap_or_else(|e| panic!("{e:?}"));
    let s = p.spec.api.soap.as_ref().expect("read");
    assert!(s.matches(Some("text/xml; charset=utf-8")));
    assert!(s.matches(Some("Application/SOAP+xml")));
    assert!(!s.matches(Some("application/json")) && !s.matches(None));
    let cases = [
        (
            soap("credential_element = \"<Token>\""),
            "is not an XML element name",
        ),
        (
            soap("credential_element = \"\""),
            "is not an XML element name",
        ),
        (
            soap("credential_element = \"T\"\ncontent_types = [\"xml\"]"),
            "is not a media type",
        ),
        (
            soap("credential_element = \"T\"\ncontent_types = []"),
            "at least one media type",
        ),
        (
            soap(
                "credential_element = \"T\"\n[[api.soap.elements]]\nname = \"A\"\nvalue = \"fixed\"",
            ),
            "a fixed value belongs in the caller's envelope",
        ),
        (
            soap(
                "credential_element = \"T\"\n[[api.soap.elements]]\nname = \"A\"\nvalue = \"{access_token}\"",
            ),
            "api.soap.elements[0].value",
        ),
        (
            soap(
                "credential_element = \"T\"\n[[api.soap.elements]]\nname = \"T\"\nvalue = \"{client_id}\"",
            ),
            "listed twice",
        ),
        (
            soap("credential_element = \"T\"\nelement = \"x\""),
            "unknown field",
        ),
    ];
    for (text, want) in cases {
        let problems: Vec<String> = Registry::check("acme-ads.toml", &text)
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.iter().map(|p| p.to_string()).collect());
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want}: {problems:?}"
        );
    }
}
