//! Reddit Ads and X API v2 at their real paths (platforms-ads.md Part B §3, §4): consent, the
//! token endpoints with HTTP Basic, Reddit's User-Agent check on every call, its dead-grant
//! answers in HTTP 200 and as a bare `{"error": 400}`, the echoed permanent refresh token and
//! revoke_token; X's required PKCE, refresh tokens only with offline.access and spent on use,
//! and the faults in each platform's own signals; the live answers classified by the shipped
//! definitions.

mod harness;

use harness::{Harness, REDIRECT, call};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokenwarden_core::classify::{Action, Blame, Kind, ResponseView};
use tokenwarden_core::provider::{Context, Registry};

const UA: &str = "web:com.example.ads:v1.0 (by /u/tokenwarden-test)";
const R_CLIENT: &str = "demo-reddit";
const R_SECRET: &str = "demo-reddit-secret";
const X_CLIENT: &str = "demo-x";
const X_SECRET: &str = "demo-x-secret";

fn verdict(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    context: Context,
) -> (Kind, Action, Blame) {
    let reg = Registry::builtin().unwrap();
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let c = reg.get(provider).unwrap().classifier().classify(
        &ResponseView {
            status: status.as_u16(),
            headers: &h,
            body: body.as_bytes(),
        },
        context,
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    );
    (c.kind, c.action, c.blame)
}

async fn reddit_token(
    h: &Harness,
    ua: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value, String) {
    let mut req = h
        .http
        .post(h.url("/reddit/api/v1/access_token"))
        .basic_auth(R_CLIENT, Some(R_SECRET))
        .form(form);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    call(req).await
}

async fn reddit_get(
    h: &Harness,
    path: &str,
    token: &str,
    ua: Option<&str>,
) -> (StatusCode, HeaderMap, Value, String) {
    let mut req = h
        .http
        .get(h.url(&format!("/reddit{path}")))
        .bearer_auth(token);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    call(req).await
}

async fn reddit_code(h: &Harness, scope: &str) -> String {
    let q = h
        .authorize(
            "/reddit/api/v1/authorize",
            &[
                ("client_id", R_CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", scope),
                ("state", "s1"),
                ("duration", "permanent"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["state"], "s1");
    q["code"].clone()
}

#[tokio::test]
async fn reddit_connects_refreshes_and_revokes_with_its_quirks() {
    let h = Harness::start().await;
    // Without duration Reddit refuses the request.
    let q = h
        .authorize(
            "/reddit/api/v1/authorize",
            &[
                ("client_id", R_CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "adsread"),
                ("state", "s0"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["error"], "invalid_request");

    let code = reddit_code(&h, "adsread history").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    // No User-Agent, or a library's default: the bot page, before anything else is looked at.
    for ua in [
        None,
        Some("python-requests/2.31"),
        Some("tokenwarden/0.1.0"),
    ] {
        let (st, headers, _, body) = reddit_token(&h, ua, &exchange).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{ua:?}");
        assert_eq!(headers["retry-after"], "4");
        assert!(body.contains("whoa there, pardner!"));
        assert_eq!(
            verdict("reddit", st, &headers, &body, Context::TokenEndpoint).0,
            Kind::RateLimited
        );
    }
    // A wrong secret: 401 with Reddit's body, the app's problem.
    let (st, headers, v, body) = call(
        h.http
            .post(h.url("/reddit/api/v1/access_token"))
            .basic_auth(R_CLIENT, Some("wrong"))
            .header("user-agent", UA)
            .form(&exchange),
    )
    .await;
    assert_eq!(
        (st, &v),
        (
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Unauthorized", "error": 401})
        )
    );
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::TokenEndpoint).2,
        Blame::App
    );

    let (st, _, tok, _) = reddit_token(&h, Some(UA), &exchange).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["scope"], "adsread history");
    let access = tok["access_token"].as_str().unwrap().to_string();
    let rt = tok["refresh_token"].as_str().unwrap().to_string();
    // The code was spent: refused in HTTP 200.
    let (st, headers, v, body) = reddit_token(&h, Some(UA), &exchange).await;
    assert_eq!(
        (st, &v),
        (StatusCode::OK, &json!({"error": "invalid_grant"}))
    );
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::TokenEndpoint).1,
        Action::Reauthorize
    );

    // The probe, with the rate headers; without a User-Agent the bot page.
    let (st, headers, me, _) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert!(me["data"]["id"].as_str().unwrap().starts_with("t2_"));
    assert!(
        headers.contains_key("x-ratelimit-remaining") && headers.contains_key("x-ratelimit-reset")
    );
    assert_eq!(
        reddit_get(&h, "/api/v3/me", &access, None).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Ad accounts and campaigns; an unknown account is BAD_REQUEST "Unknown Ad Account".
    let (_, _, accounts, _) = reddit_get(&h, "/api/v3/me/ad_accounts", &access, Some(UA)).await;
    let account = accounts["data"][0]["id"].as_str().unwrap().to_string();
    assert!(account.starts_with("a2_"));
    let (st, _, camps, _) = reddit_get(
        &h,
        &format!("/api/v3/ad_accounts/{account}/campaigns?page.size=10"),
        &access,
        Some(UA),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(camps["data"].as_array().unwrap().len(), 10);
    let (st, headers, v, body) = reddit_get(
        &h,
        "/api/v3/ad_accounts/a2_nope/campaigns",
        &access,
        Some(UA),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["reason"], "BAD_REQUEST");
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).0,
        Kind::InvalidRequest
    );
    // v2 is gone.
    let (st, headers, _, body) = reddit_get(&h, "/api/v2.0/accounts", &access, Some(UA)).await;
    assert_eq!(st, StatusCode::GONE);
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).1,
        Action::FixRequest
    );

    // Expiry after an hour: 401, the reason only in WWW-Authenticate.
    h.advance(3601);
    let (st, headers, v, body) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert_eq!((st, &v), (StatusCode::UNAUTHORIZED, &json!({"error": 401})));
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).1,
        Action::RefreshAndRetry
    );
    // The refresh echoes the same permanent refresh token (and needs the User-Agent too).
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    assert_eq!(
        reddit_token(&h, None, &refresh).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (st, _, tok, _) = reddit_token(&h, Some(UA), &refresh).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["refresh_token"], rt.as_str());
    let access = tok["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        reddit_get(&h, "/api/v3/me", &access, Some(UA)).await.0,
        StatusCode::OK
    );

    // Revocation of the refresh token takes its access tokens with it; a later refresh is the
    // bare {"error": 400}, a refusal of the connection.
    let (st, _, _, _) = call(
        h.http
            .post(h.url("/reddit/api/v1/revoke_token"))
            .basic_auth(R_CLIENT, Some(R_SECRET))
            .header("user-agent", UA)
            .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")]),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        reddit_get(&h, "/api/v3/me", &access, Some(UA)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, headers, v, body) = reddit_token(&h, Some(UA), &refresh).await;
    assert_eq!((st, &v), (StatusCode::BAD_REQUEST, &json!({"error": 400})));
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::TokenEndpoint),
        (Kind::TokenRevoked, Action::Reauthorize, Blame::Connection)
    );
    h.stop().await;
}

#[tokio::test]
async fn reddit_faults_answer_with_reddits_own_signals() {
    let h = Harness::start().await;
    let code = reddit_code(&h, "adsread").await;
    let (_, _, tok, _) = reddit_token(
        &h,
        Some(UA),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    // The window spent: JSON 429 with X-Ratelimit-Reset in seconds.
    h.admin("/faults/reddit/throttle", json!({"next": 1})).await;
    let (st, headers, v, body) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["error"], 429);
    assert_eq!(headers["x-ratelimit-reset"], "60");
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).0,
        Kind::RateLimited
    );
    // The bot throttle on the app's User-Agent: the HTML page.
    h.admin(
        "/faults/reddit/throttle",
        json!({"next": 1, "limit": "app"}),
    )
    .await;
    let (st, headers, _, body) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("whoa there"));
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).1,
        Action::BackoffAndRetry
    );
    // Outage: an empty 5xx.
    h.admin("/faults/reddit/outage", json!({"for": 60})).await;
    let (st, headers, _, body) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert!(st.is_server_error());
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).0,
        Kind::ServiceUnavailable
    );
    h.advance(61);
    // The scope removed: the v3 envelope's UNAUTHORIZED, a scope problem.
    let g = h.grant_id("reddit").await;
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": "adsread"}),
    )
    .await;
    let (st, headers, v, body) = reddit_get(&h, "/api/v3/me", &access, Some(UA)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["reason"], "UNAUTHORIZED");
    assert_eq!(
        verdict("reddit", st, &headers, &body, Context::Api).0,
        Kind::InsufficientScope
    );
    h.stop().await;
}

fn challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

async fn x_code(h: &Harness, scope: &str, verifier: &str) -> String {
    let ch = challenge(verifier);
    let q = h
        .authorize(
            "/x/i/oauth2/authorize",
            &[
                ("client_id", X_CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", scope),
                ("state", "s1"),
                ("code_challenge", ch.as_str()),
                ("code_challenge_method", "S256"),
            ],
            "approve",
        )
        .await;
    q["code"].clone()
}

async fn x_token(
    h: &Harness,
    basic: bool,
    form: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value, String) {
    let mut req = h.http.post(h.url("/x/2/oauth2/token")).form(form);
    if basic {
        req = req.basic_auth(X_CLIENT, Some(X_SECRET));
    }
    call(req).await
}

#[tokio::test]
async fn x_requires_pkce_and_basic_and_spends_each_refresh_token_once() {
    let h = Harness::start().await;
    // No PKCE: refused at the consent step.
    let q = h
        .authorize(
            "/x/i/oauth2/authorize",
            &[
                ("client_id", X_CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "users.read tweet.read offline.access"),
                ("state", "s0"),
            ],
            "approve",
        )
        .await;
    assert_eq!(q["error"], "invalid_request");

    let verifier = "v".repeat(50);
    let code = x_code(&h, "tweet.read users.read offline.access", &verifier).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("client_id", X_CLIENT),
    ];
    // Without Basic: unauthorized_client, the app's problem.
    let (st, headers, v, body) = x_token(&h, false, &exchange).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized_client"))
    );
    assert_eq!(
        verdict("x", st, &headers, &body, Context::TokenEndpoint).2,
        Blame::App
    );
    let (st, _, tok, _) = x_token(&h, true, &exchange).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["expires_in"], 7200);
    let access = tok["access_token"].as_str().unwrap().to_string();
    let rt1 = tok["refresh_token"].as_str().unwrap().to_string();
    // The code again: "Value passed for the authorization code was invalid."
    let (st, headers, v, body) = x_token(&h, true, &exchange).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error_description"],
        "Value passed for the authorization code was invalid."
    );
    assert_eq!(
        verdict("x", st, &headers, &body, Context::TokenEndpoint).1,
        Action::Reauthorize
    );

    // The probe.
    let (st, headers, me, _) = call(h.http.get(h.url("/x/2/users/me")).bearer_auth(&access)).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert!(me["data"]["id"].is_string());
    let reset: i64 = headers["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 1_800_000_000, "an epoch second");

    // Refresh: a new refresh token each time; the spent one is invalid_request.
    let (st, _, tok, _) = x_token(
        &h,
        true,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
            ("client_id", X_CLIENT),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let rt2 = tok["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    let (st, headers, v, body) = x_token(
        &h,
        true,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt1.as_str()),
            ("client_id", X_CLIENT),
        ],
    )
    .await;
    assert_eq!(
        (st, &v),
        (
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
        )
    );
    assert_eq!(
        verdict("x", st, &headers, &body, Context::TokenEndpoint),
        (Kind::TokenRevoked, Action::Reauthorize, Blame::Connection)
    );
    // Expiry after 2 hours: the RFC 7807 401, refreshed.
    h.advance(7201);
    let (st, headers, v, body) =
        call(h.http.get(h.url("/x/2/users/me")).bearer_auth(&access)).await;
    assert_eq!(
        (st, v["title"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    assert_eq!(
        verdict("x", st, &headers, &body, Context::Api).1,
        Action::RefreshAndRetry
    );

    // Revoking the refresh token ends the grant.
    let (st, _, v, _) = call(
        h.http
            .post(h.url("/x/2/oauth2/revoke"))
            .basic_auth(X_CLIENT, Some(X_SECRET))
            .form(&[
                ("token", rt2.as_str()),
                ("token_type_hint", "refresh_token"),
            ]),
    )
    .await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({"revoked": true})));
    let (st, _, _, _) = x_token(
        &h,
        true,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt2.as_str()),
            ("client_id", X_CLIENT),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Without offline.access there is no refresh token.
    let code = x_code(&h, "tweet.read users.read", &verifier).await;
    let (_, _, tok, _) = x_token(
        &h,
        true,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ],
    )
    .await;
    assert!(
        tok["access_token"].is_string() && tok.get("refresh_token").is_none(),
        "{tok}"
    );
    h.stop().await;
}

#[tokio::test]
async fn x_throttles_are_the_window_or_the_apps_usage_cap() {
    let h = Harness::start().await;
    let verifier = "w".repeat(50);
    let code = x_code(&h, "tweet.read users.read offline.access", &verifier).await;
    let (_, _, tok, _) = x_token(
        &h,
        true,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ],
    )
    .await;
    let access = tok["access_token"].as_str().unwrap().to_string();
    h.admin("/faults/x/throttle", json!({"next": 1})).await;
    let (st, headers, _, body) =
        call(h.http.get(h.url("/x/2/users/me")).bearer_auth(&access)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers["x-rate-limit-reset"],
        (1_800_000_000 + 60).to_string().as_str()
    );
    assert_eq!(
        verdict("x", st, &headers, &body, Context::Api),
        (Kind::RateLimited, Action::BackoffAndRetry, Blame::Platform)
    );
    h.admin("/faults/x/throttle", json!({"next": 1, "limit": "app"}))
        .await;
    let (st, headers, v, body) =
        call(h.http.get(h.url("/x/2/users/me")).bearer_auth(&access)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(v["type"].as_str().unwrap().ends_with("/usage-capped"));
    assert_eq!(
        verdict("x", st, &headers, &body, Context::Api).2,
        Blame::App
    );
    // The scope removed: 403, not a token problem to refresh.
    let g = h.grant_id("x").await;
    h.admin(
        &format!("/grants/{g}/remove-scope"),
        json!({"scope": "users.read"}),
    )
    .await;
    let (st, headers, _, body) =
        call(h.http.get(h.url("/x/2/users/me")).bearer_auth(&access)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        verdict("x", st, &headers, &body, Context::Api).0,
        Kind::InsufficientScope
    );
    h.stop().await;
}
