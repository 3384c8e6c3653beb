//! The provider client against the sandbox over loopback, for every platform: the definitions,
//! the client and the emulator must agree on paths, parameter names, encodings and envelopes.

use chrono::{DateTime, TimeDelta};
use std::sync::Arc;
use tokenwarden_core::clock::FakeClock;
use tokenwarden_core::provider::{Provider, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_oauth::{AppCredentials, OAuthClient, TokenError};
use tokenwarden_sandbox::{Sandbox, SandboxConfig};
use tokenwarden_testkit::consent::{self, Decision};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct World {
    base: String,
    clock: FakeClock,
    client: OAuthClient,
    http: reqwest::Client,
    registry: Registry,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world() -> World {
    let clock = FakeClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let config = SandboxConfig {
        demo_redirect_uris: vec![REDIRECT.into()],
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config, Arc::new(clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sandbox.serve(listener, async {
        let _ = stopped.await;
    }));
    let registry = Registry::builtin().unwrap();
    World {
        base,
        client: OAuthClient::new(Arc::new(clock.clone())).unwrap(),
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        registry,
        _stop: stop,
    }
}

impl World {
    fn provider(&self, id: &str) -> Provider {
        let base = url::Url::parse(&format!("{}/{id}", self.base)).unwrap();
        self.registry.get(id).unwrap().with_origin(&base)
    }

    fn app(&self, id: &str) -> AppCredentials {
        AppCredentials {
            client_id: format!("demo-{id}"),
            client_secret: Secret::new(format!("demo-{id}-secret")),
            redirect_uri: REDIRECT.into(),
            user_agent: None,
        }
    }

    /// Approves the authorize URL the way a script does (the page's form POST) and returns the code.
    async fn approve(&self, p: &Provider) -> Secret {
        self.approve_with(p, None).await
    }

    /// [`World::approve`] with a PKCE challenge.
    async fn approve_with(&self, p: &Provider, challenge: Option<&str>) -> Secret {
        let url = self.client.authorize_url(
            p,
            &self.app(p.spec.id.as_str()),
            "state-123",
            &[],
            challenge,
        );
        let back = consent::answer(&self.http, &url, Decision::Approve).await;
        assert_eq!(
            back.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .as_deref(),
            Some("state-123"),
            "{}: state passes through",
            p.spec.id
        );
        let code = consent::code_in(&back, &p.spec.authorize.callback_code_params).expect("a code");
        Secret::new(code)
    }
}

#[tokio::test]
async fn every_platform_connects_and_renews_as_its_definition_says() {
    let w = world().await;
    for id in [
        "snapchat",
        "tiktok",
        "tiktok-business",
        "threads",
        "meta",
        "google-ads",
        "microsoft-ads",
        "amazon-ads",
        "linkedin",
        "pinterest",
        "reddit",
    ] {
        let p = w.provider(id);
        let app = w.app(id);
        let code = w.approve(&p).await;
        let grant = w
            .client
            .exchange_code(&p, &app, &code, None)
            .await
            .unwrap_or_else(|e| panic!("{id}: exchange: {e}"));
        let t = &grant.tokens;
        assert!(!t.access_token.is_empty(), "{id}");
        match id {
            "tiktok-business" => {
                assert_eq!(t.expires_at, None, "advertiser tokens do not expire");
                assert!(!grant.account_ids.is_empty(), "advertiser_ids recorded");
            }
            "threads" | "meta" => {
                let life = t.expires_at.unwrap() - w.clock.now_utc();
                assert!(
                    life > TimeDelta::days(50),
                    "{id}: upgraded to a long-lived token, got {life}"
                );
            }
            _ => assert!(t.refresh_token.is_some(), "{id}: a refresh token"),
        }
        // A code works once.
        let again = w
            .client
            .exchange_code(&p, &app, &code, None)
            .await
            .unwrap_err();
        assert!(
            matches!(again, TokenError::Refused { .. }),
            "{id}: replayed code: {again:?}"
        );

        if p.spec.refresh.renews(t) {
            if id == "threads" {
                w.clock.advance(TimeDelta::hours(25));
            }
            let renewed = w
                .client
                .refresh(&p, &app, t)
                .await
                .unwrap_or_else(|e| panic!("{id}: refresh: {e}"));
            assert_ne!(
                renewed.tokens.access_token, t.access_token,
                "{id}: a new access token"
            );
            assert!(
                renewed.tokens.refresh_token.is_some() || id == "threads",
                "{id}"
            );
        }
        if p.spec.token.revoke.is_some() {
            assert!(
                w.client
                    .revoke(&p, &app, t)
                    .await
                    .unwrap_or_else(|e| panic!("{id}: revoke: {e}"))
            );
            // Revoking ends the grant: its refresh token is refused from then on.
            if p.spec.refresh.renews(t) {
                let refused = w.client.refresh(&p, &app, t).await.unwrap_err();
                assert!(
                    matches!(refused, TokenError::Refused { .. }),
                    "{id}: refresh after revoke: {refused:?}"
                );
            }
        }
    }
}

/// Microsoft rotates on every refresh but does not retire the old refresh token: both work until
/// each ends, 90 days after it was issued, with invalid_grant AADSTS700082 (a re-authorization).
#[tokio::test]
async fn microsoft_rotates_on_every_refresh_and_ends_a_refresh_token_after_ninety_days() {
    let w = world().await;
    let p = w.provider("microsoft-ads");
    let app = w.app("microsoft-ads");
    let code = w.approve(&p).await;
    let first = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    assert!(
        first
            .tokens
            .scopes
            .iter()
            .any(|s| s.ends_with("msads.manage"))
    );
    let second = w.client.refresh(&p, &app, &first.tokens).await.unwrap();
    assert_ne!(
        second.tokens.refresh_token, first.tokens.refresh_token,
        "Microsoft rotates refresh tokens"
    );
    assert!(second.tokens.refresh_expires_at.is_some());
    // The old one still works (Microsoft does not revoke it server-side).
    w.client
        .refresh(&p, &app, &first.tokens)
        .await
        .expect("the old refresh token works until it ends");
    w.clock.advance(TimeDelta::days(91));
    let ended = w
        .client
        .refresh(&p, &app, &second.tokens)
        .await
        .unwrap_err();
    let c = ended.classification().expect("classified").clone();
    assert!(matches!(ended, TokenError::Refused { .. }), "{ended:?}");
    assert_eq!(c.kind.as_str(), "token_revoked");
    assert_eq!(c.platform_subcode.as_deref(), Some("700082"));
}

/// LinkedIn: the client credentials in the body; the refresh token's end stays 365 days after the
/// consent however often it is refreshed (the definition's refresh_token_extends = false and
/// LinkedIn's own count agree); introspection says active, then inactive once the access token is
/// past its 60 days; after the year the refresh is refused with LinkedIn's invalid_request, read
/// as a revoked grant (a re-authorization).
#[tokio::test]
async fn linkedin_refresh_tokens_end_a_year_after_the_consent() {
    let w = world().await;
    let p = w.provider("linkedin");
    let app = w.app("linkedin");
    let code = w.approve(&p).await;
    let first = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    let end = w.clock.now_utc() + TimeDelta::days(365);
    assert_eq!(first.tokens.refresh_expires_at, Some(end));
    let c = w.client.introspect(&p, &app, &first.tokens).await.unwrap();
    assert_eq!(c.kind.as_str(), "ok", "{c:?}");
    let mut tokens = first.tokens.clone();
    for _ in 0..5 {
        w.clock.advance(TimeDelta::days(59));
        let g = w.client.refresh(&p, &app, &tokens).await.unwrap();
        assert_eq!(g.tokens.refresh_expires_at, Some(end), "never extended");
        tokens = g.tokens;
    }
    // 295 days in: the first access token is long expired.
    let c = w.client.introspect(&p, &app, &first.tokens).await.unwrap();
    assert_eq!(c.kind.as_str(), "token_invalid", "{c:?}");
    w.clock.advance(TimeDelta::days(71));
    let e = w.client.refresh(&p, &app, &tokens).await.unwrap_err();
    assert!(matches!(e, TokenError::Refused { .. }), "{e:?}");
    let c = e.classification().unwrap();
    assert_eq!(
        (c.kind.as_str(), c.action.as_str()),
        ("token_revoked", "reauthorize")
    );
}

/// Pinterest: HTTP Basic at the token endpoint; every refresh rotates (a new refresh token with a
/// new 60 days), and the spent one is refused with 401 code 283, a revoked grant.
#[tokio::test]
async fn pinterest_rotates_and_refuses_a_spent_refresh_token_with_283() {
    let w = world().await;
    let p = w.provider("pinterest");
    let app = w.app("pinterest");
    let code = w.approve(&p).await;
    let first = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    w.clock.advance(TimeDelta::days(29));
    let second = w.client.refresh(&p, &app, &first.tokens).await.unwrap();
    assert_ne!(second.tokens.refresh_token, first.tokens.refresh_token);
    assert_eq!(
        second.tokens.refresh_expires_at,
        Some(w.clock.now_utc() + TimeDelta::days(60))
    );
    let e = w.client.refresh(&p, &app, &first.tokens).await.unwrap_err();
    let c = e.classification().unwrap();
    assert_eq!(c.kind.as_str(), "token_revoked", "{c:?}");
    assert_eq!(c.platform_code.as_deref(), Some("283"));
    w.client.refresh(&p, &app, &second.tokens).await.unwrap();
}

/// Amazon Ads in each of its regions: consent on that region's page, the code redeemed and the
/// token refreshed at that region's token host, the stored refresh token kept (Amazon echoes it,
/// never rotates), and Amazon's invalid_grant once the user removed the app.
#[tokio::test]
async fn amazon_ads_connects_and_refreshes_in_every_region() {
    let w = world().await;
    let moved = w.provider("amazon-ads");
    for region in ["na", "eu", "fe"] {
        let p = moved.in_region(Some(region)).into_owned();
        if region != "na" {
            assert!(
                p.spec
                    .token
                    .exchange
                    .url
                    .path()
                    .starts_with(&format!("/amazon-ads/region/{region}/")),
                "{region}: {}",
                p.spec.token.exchange.url
            );
            assert!(
                p.spec
                    .authorize
                    .url
                    .path()
                    .ends_with(&format!("/region/{region}/ap/oa"))
            );
        }
        let app = w.app("amazon-ads");
        let code = w.approve(&p).await;
        let grant = w
            .client
            .exchange_code(&p, &app, &code, None)
            .await
            .unwrap_or_else(|e| panic!("{region}: exchange: {e}"));
        let first = grant.tokens;
        let renewed = w
            .client
            .refresh(&p, &app, &first)
            .await
            .unwrap_or_else(|e| panic!("{region}: refresh: {e}"));
        assert_ne!(renewed.tokens.access_token, first.access_token);
        assert_eq!(
            renewed
                .tokens
                .refresh_token
                .as_ref()
                .map(|s| s.expose().to_string()),
            first.refresh_token.as_ref().map(|s| s.expose().to_string()),
            "{region}: not rotated"
        );
        // The user removes the app at Amazon: the refresh is refused as a revoked grant.
        let grants: serde_json::Value = w
            .http
            .get(format!("{}/_sandbox/grants?provider=amazon-ads", w.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Each region's grant is this loop's newest; revoke every one still standing.
        for g in grants["grants"].as_array().unwrap() {
            let id = g["id"].as_str().unwrap();
            let _ = w
                .http
                .post(format!("{}/_sandbox/grants/{id}/revoke", w.base))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
        }
        let refused = w.client.refresh(&p, &app, &first).await.unwrap_err();
        match &refused {
            TokenError::Refused { classification, .. } => {
                assert_eq!(classification.kind.as_str(), "token_revoked", "{region}");
                assert!(
                    classification.explanation.contains("removed the app"),
                    "{}",
                    classification.explanation
                );
            }
            other => panic!("{region}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_refused_and_a_wrong_secret_blames_the_app() {
    let w = world().await;
    let p = w.provider("tiktok");
    let app = w.app("tiktok");
    let code = w.approve(&p).await;
    let first = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    let second = w.client.refresh(&p, &app, &first.tokens).await.unwrap();
    assert_ne!(
        second.tokens.refresh_token, first.tokens.refresh_token,
        "TikTok rotates refresh tokens"
    );
    let reuse = w.client.refresh(&p, &app, &first.tokens).await.unwrap_err();
    assert!(matches!(reuse, TokenError::Refused { .. }), "{reuse:?}");

    let snap = w.provider("snapchat");
    let code = w.approve(&snap).await;
    let mut wrong = w.app("snapchat");
    wrong.client_secret = Secret::new("not-the-secret");
    let e = w
        .client
        .exchange_code(&snap, &wrong, &code, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TokenError::Misconfigured { .. }), "{e:?}");
    assert!(!e.to_string().contains("not-the-secret"));
}

#[tokio::test]
async fn threads_refuses_a_refresh_before_24_hours() {
    let w = world().await;
    let p = w.provider("threads");
    let app = w.app("threads");
    let code = w.approve(&p).await;
    let grant = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    let early = w.client.refresh(&p, &app, &grant.tokens).await.unwrap_err();
    assert!(
        !matches!(early, TokenError::Refused { .. }),
        "too early is not a revoked grant: {early:?}"
    );
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_transient_and_names_no_secret() {
    let w = world().await;
    let base = url::Url::parse("http://127.0.0.1:1/meta").unwrap();
    let p = w.registry.get("meta").unwrap().with_origin(&base);
    let e = w
        .client
        .exchange_code(&p, &w.app("meta"), &Secret::new("c"), None)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("demo-meta-secret"), "{shown}");
}

trait NowUtc {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowUtc for FakeClock {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        use tokenwarden_core::clock::Clock;
        self.now()
    }
}

/// Reddit: the User-Agent goes on every token call (the sandbox answers a missing or library
/// default one with its bot page), the app's own when configured; a refresh echoes the permanent
/// refresh token, which is kept; the spent code's HTTP 200 `invalid_grant` is a refusal; after
/// revoke_token the refresh's bare `{"error": 400}` is a refusal of the connection, never a
/// transient.
#[tokio::test]
async fn reddit_sends_its_user_agent_on_every_token_call_and_keeps_the_permanent_refresh_token() {
    let w = world().await;
    let p = w.provider("reddit");
    let mut app = w.app("reddit");
    app.user_agent = Some("web:com.example.ads:v2.1 (by /u/someone)".into());
    let code = w.approve(&p).await;
    let grant = w.client.exchange_code(&p, &app, &code, None).await.unwrap();
    let first = grant.tokens.refresh_token.clone().unwrap();
    assert_eq!(grant.tokens.scopes, ["adsread"]);
    assert_eq!(
        (grant.tokens.expires_at.unwrap() - w.clock.now_utc()).num_seconds(),
        3600
    );
    let again = w
        .client
        .exchange_code(&p, &app, &code, None)
        .await
        .unwrap_err();
    match &again {
        TokenError::Refused { classification, .. } => {
            assert_eq!(
                classification.status, 200,
                "the spent code is refused in HTTP 200"
            );
            assert_eq!(
                classification.action,
                tokenwarden_core::classify::Action::Reauthorize
            );
        }
        other => panic!("spent code: {other:?}"),
    }
    // The default User-Agent (no user_agent configured) names tokenwarden and passes too.
    let default_app = w.app("reddit");
    let renewed = w
        .client
        .refresh(&p, &default_app, &grant.tokens)
        .await
        .unwrap();
    assert_eq!(renewed.tokens.refresh_token.as_ref(), Some(&first));
    let renewed = w.client.refresh(&p, &app, &renewed.tokens).await.unwrap();
    assert_eq!(renewed.tokens.refresh_token.as_ref(), Some(&first));
    // A definition without the header: the client's own default User-Agent is a bot to Reddit.
    let mut bare = p.clone();
    if let Some(r) = bare.spec.token.refresh.as_mut() {
        r.headers.clear();
    }
    let throttled = w
        .client
        .refresh(&bare, &app, &renewed.tokens)
        .await
        .unwrap_err();
    assert!(throttled.is_transient(), "{throttled:?}");
    assert!(w.client.revoke(&p, &app, &renewed.tokens).await.unwrap());
    let refused = w
        .client
        .refresh(&p, &app, &renewed.tokens)
        .await
        .unwrap_err();
    match &refused {
        TokenError::Refused { classification, .. } => {
            assert_eq!(classification.status, 400);
            assert_eq!(
                classification.kind,
                tokenwarden_core::classify::Kind::TokenRevoked
            );
        }
        other => panic!("refresh after revoke: {other:?}"),
    }
    let text = format!("{refused} {refused:?}");
    assert!(
        !text.contains(first.expose()),
        "no refresh token in the error"
    );
}

/// X API v2: PKCE on the consent and the exchange, a new refresh token on every refresh, the
/// spent one refused as invalid_request "Value passed for the token was invalid." — a refusal
/// that asks for re-authorization, not a request to fix and not a transient.
#[tokio::test]
async fn x_uses_pkce_and_rotates_single_use_refresh_tokens() {
    let w = world().await;
    let p = w.provider("x");
    let app = w.app("x");
    let pkce = tokenwarden_oauth::pkce::Pkce::generate();
    let code = w.approve_with(&p, Some(&pkce.challenge)).await;
    let grant = w
        .client
        .exchange_code(&p, &app, &code, Some(&pkce.verifier))
        .await
        .unwrap();
    assert_eq!(
        (grant.tokens.expires_at.unwrap() - w.clock.now_utc()).num_seconds(),
        7200
    );
    assert!(grant.tokens.scopes.iter().any(|s| s == "offline.access"));
    let r1 = w.client.refresh(&p, &app, &grant.tokens).await.unwrap();
    assert_ne!(
        r1.tokens.refresh_token, grant.tokens.refresh_token,
        "rotated"
    );
    let r2 = w.client.refresh(&p, &app, &r1.tokens).await.unwrap();
    assert_ne!(r2.tokens.refresh_token, r1.tokens.refresh_token);
    let spent = w.client.refresh(&p, &app, &grant.tokens).await.unwrap_err();
    match &spent {
        TokenError::Refused { classification, .. } => {
            assert_eq!(
                classification.kind,
                tokenwarden_core::classify::Kind::TokenRevoked
            );
            assert_eq!(
                classification.action,
                tokenwarden_core::classify::Action::Reauthorize
            );
            assert!(!classification.retryable);
        }
        other => panic!("spent refresh token: {other:?}"),
    }
    assert!(w.client.revoke(&p, &app, &r2.tokens).await.unwrap());
    assert!(matches!(
        w.client.refresh(&p, &app, &r2.tokens).await.unwrap_err(),
        TokenError::Refused { .. }
    ));
}
