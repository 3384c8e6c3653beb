//! The shipped definitions load, and a broken definition is explained key by key.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use tokenwarden_core::classify::{Kind, ResponseView};
use tokenwarden_core::provider::{BUILTIN, Context, RefreshStyle, Registry};

#[test]
fn every_shipped_definition_loads() {
    let reg = Registry::builtin().unwrap_or_else(|e| panic!("{e}"));
    let style = |id: &str| reg.get(id).unwrap().spec.refresh.style;
    let ids: Vec<&str> = reg.iter().map(|p| p.spec.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "amazon-ads",
            "google-ads",
            "linkedin",
            "meta",
            "microsoft-ads",
            "pinterest",
            "reddit",
            "snapchat",
            "threads",
            "tiktok",
            "tiktok-business",
            "x",
            "x-ads"
        ]
    );
    assert_eq!(BUILTIN.len(), 13);
    assert_eq!(style("google-ads"), RefreshStyle::RefreshToken);
    let g = reg.get("google-ads").unwrap();
    assert!(
        !g.spec.refresh.rotates,
        "Google does not rotate refresh tokens"
    );
    assert!(g.spec.authorize.pkce);
    assert_eq!(
        g.spec
            .authorize
            .extra_params
            .get("access_type")
            .map(String::as_str),
        Some("offline")
    );
    assert_eq!(
        g.spec
            .authorize
            .extra_params
            .get("prompt")
            .map(String::as_str),
        Some("consent")
    );
    // The sunset developer token is optional: sent only when the app has one, so a missing one
    // leaves the header out rather than failing.
    assert!(
        g.spec
            .api
            .headers
            .iter()
            .all(|h| h.value == "{developer_token}" && h.name == "developer-token"),
        "the sunset developer token is not required"
    );
    let values = tokenwarden_core::provider::HeaderValues {
        client_id: "c".into(),
        account_id: Some("1234567890".into()),
        developer_token: None,
        user_agent: None,
        identity: None,
    };
    assert!(g.spec.api.extra_headers(&values).is_empty());
    assert_eq!(style("snapchat"), RefreshStyle::RefreshToken);
    assert_eq!(style("tiktok"), RefreshStyle::RefreshToken);
    assert_eq!(style("threads"), RefreshStyle::SelfRefresh);
    assert_eq!(style("meta"), RefreshStyle::Exchange);
    assert_eq!(
        style("tiktok-business"),
        RefreshStyle::RefreshTokenWhenIssued
    );
    let tt = reg.get("tiktok-business").unwrap();
    assert_eq!(tt.spec.api.credential_header, "Access-Token");
    assert_eq!(
        tt.spec
            .token
            .exchange
            .params
            .get("auth_code")
            .map(String::as_str),
        Some("{code}")
    );
}

#[test]
fn problems_name_the_file_and_the_key() {
    let text = BUILTIN
        .iter()
        .find(|(n, _)| *n == "snapchat.toml")
        .unwrap()
        .1;
    let broken = text
        .replace(
            "url = \"https://accounts.snapchat.com/login/oauth2/authorize\"",
            "url = \"ftp://accounts.snapchat.com/x\"",
        )
        .replace(
            "refresh_token = \"{refresh_token}\"",
            "refresh_token = \"{refresh}\"",
        )
        .replace("margin = \"5m\"", "margin = \"2h\"");
    let errors = Registry::check("mine/snapchat.toml", &broken).unwrap_err();
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let joined = all.join("\n");
    assert!(
        joined.contains("mine/snapchat.toml: authorize.url: must be an https URL"),
        "{joined}"
    );
    assert!(
        joined.contains("token.refresh.params.refresh_token: unknown placeholder {refresh}"),
        "{joined}"
    );
    assert!(joined.contains("refresh.margin"), "{joined}");

    let unknown = format!("{text}\nsurprise = 1\n");
    let e = Registry::check("snapchat.toml", &unknown).unwrap_err()[0].to_string();
    assert!(e.contains("surprise"), "{e}");

    let e = Registry::check("other-name.toml", text).unwrap_err()[0].to_string();
    assert!(e.contains("file is named \"other-name\""), "{e}");
}

#[test]
fn a_user_file_adds_a_provider_and_can_override_one() {
    let text = BUILTIN
        .iter()
        .find(|(n, _)| *n == "snapchat.toml")
        .unwrap()
        .1;
    let mine = text
        .replace("id = \"snapchat\"", "id = \"acme\"")
        .replace("Snapchat Marketing API\"", "Acme Ads\"");
    let reg =
        Registry::with_files([("/etc/tokenwarden/providers/acme.toml".to_string(), mine)]).unwrap();
    assert_eq!(reg.get("acme").unwrap().spec.name, "Acme Ads");
    assert!(reg.get("snapchat").is_some());
    let overridden = text.replace("margin = \"5m\"", "margin = \"7m\"");
    let reg = Registry::with_files([("x/snapchat.toml".to_string(), overridden)]).unwrap();
    assert_eq!(reg.get("snapchat").unwrap().source, "x/snapchat.toml");
}

#[test]
fn sandbox_origin_override_moves_every_url() {
    let reg = Registry::builtin().unwrap();
    let base = url::Url::parse("http://127.0.0.1:8181/tiktok-business").unwrap();
    let p = reg.get("tiktok-business").unwrap().with_origin(&base);
    assert_eq!(
        p.spec.token.exchange.url.as_str(),
        "http://127.0.0.1:8181/tiktok-business/open_api/v1.3/oauth2/access_token/"
    );
    assert_eq!(
        p.spec.api.base_url.as_str(),
        "http://127.0.0.1:8181/tiktok-business/open_api/v1.3"
    );
    assert_eq!(
        p.spec.authorize.url.as_str(),
        "http://127.0.0.1:8181/tiktok-business/portal/auth"
    );
    // The platform's sandbox host keeps its own place, so the emulator can tell the hosts apart.
    assert_eq!(
        p.spec.api.sandbox_base_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:8181/tiktok-business/sandbox/open_api/v1.3"
    );
    // The classifier is unchanged by the move.
    let headers = vec![];
    let resp = ResponseView {
        status: 200,
        headers: &headers,
        body: br#"{"code":40100,"message":"x"}"#,
    };
    assert_eq!(
        p.classifier()
            .classify(&resp, Context::Api, chrono::Utc::now())
            .kind,
        Kind::RateLimited
    );
}

/// Threads: the documented credential is the `access_token` query parameter, and the current
/// hosts are `threads.com` / `graph.threads.com` (platforms.md "Corrections (2026-12)" 4).
#[test]
fn threads_sends_the_token_as_the_access_token_query_parameter_on_the_current_hosts() {
    use tokenwarden_core::provider::CredentialPlacement;
    let reg = Registry::builtin().unwrap();
    let th = &reg.get("threads").unwrap().spec;
    assert_eq!(th.api.credential_in, CredentialPlacement::Query);
    assert_eq!(th.api.credential_param.as_deref(), Some("access_token"));
    assert_eq!(
        th.api.credential_header_value("tok"),
        None,
        "no Bearer header"
    );
    let mut url = url::Url::parse(
        "https://graph.threads.com/v1.0/me?fields=id&access_token=callers&access_token=again",
    )
    .unwrap();
    th.api.place_query_credential(&mut url, "ours");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("fields".to_string(), "id".to_string()),
            ("access_token".to_string(), "ours".to_string())
        ],
        "ours replaces every caller's access_token"
    );
    assert_eq!(th.authorize.url.host_str(), Some("threads.com"));
    for u in [
        Some(&th.api.base_url),
        Some(&th.token.exchange.url),
        th.token.upgrade.as_ref().map(|c| &c.url),
        th.token.refresh.as_ref().map(|c| &c.url),
    ] {
        assert_eq!(u.unwrap().host_str(), Some("graph.threads.com"), "{u:?}");
    }
    // The others keep their headers.
    let tb = &reg.get("tiktok-business").unwrap().spec;
    assert_eq!(
        tb.api.credential_header_value("tok"),
        Some(("Access-Token", "tok".to_string()))
    );
    let mut u = url::Url::parse("https://business-api.tiktok.com/x/?a=1").unwrap();
    tb.api.place_query_credential(&mut u, "tok");
    assert_eq!(u.query(), Some("a=1"));
}

#[test]
fn a_query_credential_needs_a_parameter_name() {
    let text = BUILTIN
        .iter()
        .find(|(n, _)| *n == "threads.toml")
        .unwrap()
        .1;
    let broken = text.replace("credential_param = \"access_token\"\n", "");
    assert_ne!(broken, text);
    let errors = Registry::check("threads.toml", &broken).unwrap_err();
    let joined: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        joined.join("\n").contains("api.credential_param"),
        "{joined:?}"
    );
}

#[test]
fn the_platforms_that_call_back_on_removal_say_how_in_data() {
    use tokenwarden_core::platform_callback::CallbackKind;
    let reg = Registry::builtin().unwrap_or_else(|e| panic!("{e}"));
    let kind = |id: &str| {
        reg.get(id)
            .unwrap()
            .spec
            .callbacks
            .deauthorize
            .as_ref()
            .map(|d| (d.kind, d.user_id.clone()))
    };
    assert_eq!(
        kind("meta"),
        Some((CallbackKind::MetaSignedRequest, "/user_id".into()))
    );
    assert_eq!(
        kind("threads"),
        Some((CallbackKind::MetaSignedRequest, "/user_id".into()))
    );
    assert_eq!(
        kind("tiktok"),
        Some((CallbackKind::TiktokSignature, "/user_openid".into()))
    );
    // No documented callback: the monitor's probe interval is the bound there.
    assert_eq!(kind("snapchat"), None);
    assert_eq!(kind("tiktok-business"), None);

    // A broken table is explained key by key, like every other part of a definition.
    let text = BUILTIN.iter().find(|(n, _)| *n == "meta.toml").unwrap().1;
    let broken = text.replace("issued_at = \"/issued_at\"\n", "");
    let errors = Registry::check("meta.toml", &broken).unwrap_err();
    let joined: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        joined
            .iter()
            .any(|e| e
                .contains("callbacks.deauthorize.issued_at: meta_signed_request needs issued_at")),
        "{joined:?}"
    );
    let unknown = text.replace(
        "kind = \"meta_signed_request\"",
        "kind = \"meta_signed_request\"\nsecret = \"x\"",
    );
    let e = Registry::check("meta.toml", &unknown).unwrap_err()[0].to_string();
    assert!(e.contains("secret"), "{e}");
}
