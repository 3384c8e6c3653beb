//! The daemon on loopback with the sandbox in-process and a fake clock, and a browser's trip
//! through a connect flow; shared by the server's integration tests.
#![allow(dead_code)]

use chrono::DateTime;
use std::sync::Arc;
use tokenwarden_core::clock::FakeClock;
use tokenwarden_core::provider::Registry;
use tokenwarden_server::daemon::Running;
use tokenwarden_store::Keyring;

pub struct World {
    pub d: Running,
    /// Where the daemon listens (differs from `d.base` when a public URL is set).
    pub addr: std::net::SocketAddr,
    pub clock: FakeClock,
    pub http: reqwest::Client,
    pub admin: String,
    pub reader: String,
    /// The database and its keys, for a second handle on it (another replica's view).
    pub db_url: String,
    pub keys: Keyring,
    /// The daemon's own store (its pool), to make the database misbehave.
    pub raw: Arc<tokenwarden_store::sql::SqlStore>,
    _dir: tempfile::TempDir,
}

pub async fn world() -> World {
    world_at(None).await
}

/// A world whose public URL (links, cookies) is `public_url` rather than the listener's address.
pub async fn world_at(public_url: Option<url::Url>) -> World {
    world_with(public_url, Registry::builtin().unwrap(), 3600).await
}

/// A world with these provider definitions, whose health monitor looks for due probes every
/// `probe_poll_ms` of real time.
pub async fn world_with(
    public_url: Option<url::Url>,
    providers: Registry,
    probe_poll_ms: u64,
) -> World {
    let clock = FakeClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let started = tokenwarden_testkit::daemon::start(tokenwarden_testkit::daemon::Setup {
        providers,
        public_url,
        probe_poll: std::time::Duration::from_millis(probe_poll_ms),
        allow_private_webhooks: true,
        ..tokenwarden_testkit::daemon::Setup::new(Arc::new(clock.clone()), 1.0)
    })
    .await;
    World {
        d: started.d,
        addr: started.addr,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        admin: started.admin,
        reader: started.reader,
        db_url: started.db_url,
        keys: started.keys,
        raw: started.raw,
        _dir: started.dir,
    }
}

/// One browser's trip through a connect flow, up to the callback URL (not yet visited).
pub struct Flow {
    pub cookie: String,
    pub callback: String,
}

impl World {
    /// A connect session's link, minted with the admin key (`extra` adds request fields).
    /// Makes the daemon's SQLite refuse (or take again) every write, as a read-only database
    /// does (`PRAGMA query_only` on each pooled connection; the pool holds at most 4).
    pub async fn refuse_writes(&self, on: bool) {
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut c = self.raw.pool().acquire().await.unwrap();
            sqlx::query(&format!(
                "PRAGMA query_only = {}",
                if on { "ON" } else { "OFF" }
            ))
            .execute(&mut *c)
            .await
            .unwrap();
            held.push(c);
        }
    }

    pub async fn mint(&self, provider: &str, connection: &str, extra: serde_json::Value) -> String {
        let mut body = serde_json::json!({"provider": provider, "connection_id": connection});
        if let serde_json::Value::Object(m) = extra {
            body.as_object_mut().unwrap().extend(m);
        }
        let (status, v) = self.post(&self.admin, "v1/connect-sessions", body).await;
        assert_eq!(status, 201, "{v}");
        v["url"].as_str().unwrap().to_string()
    }

    /// Mints a session for `connection` (written `id&app=APP` to name the app) and approves it.
    pub async fn start_and_approve(&self, provider: &str, connection: &str) -> Flow {
        let (connection, extra) = match connection.split_once("&app=") {
            Some((c, app)) => (c, serde_json::json!({ "app": app })),
            None => (connection, serde_json::json!({})),
        };
        let link = self.mint(provider, connection, extra).await;
        self.approve_link(provider, &link, "test-user").await
    }

    /// Opens a connect link and approves at the sandbox's consent page as `account`.
    pub async fn approve_link(&self, provider: &str, link: &str, account: &str) -> Flow {
        // Opening the link shows what it will do and spends nothing; its button POSTs.
        let page = self.http.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200, "the link shows its page");
        assert!(page.text().await.unwrap().contains("id=\"continue\""));
        let r = self.http.post(link).send().await.unwrap();
        assert_eq!(r.status(), 303, "connect redirects to the platform");
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("HttpOnly")
        );
        let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            authorize
                .as_str()
                .starts_with(self.d.sandbox_base.as_deref().unwrap()),
            "{authorize}"
        );
        // The authorize page a person sees, then its Approve button (a form POST).
        let page = self.http.get(authorize.clone()).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let callback = tokenwarden_testkit::consent::answer_as(
            &self.http,
            &authorize,
            tokenwarden_testkit::consent::Decision::Approve,
            &[("account", account)],
        )
        .await
        .to_string();
        assert!(
            callback.starts_with(&format!("{}callback/{provider}", self.d.base)),
            "{callback}"
        );
        Flow { cookie, callback }
    }

    pub async fn finish(&self, flow: &Flow) -> (u16, String) {
        let r = self
            .http
            .get(&flow.callback)
            .header("cookie", &flow.cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 303 {
            let next = r.headers()["location"].to_str().unwrap().to_string();
            assert!(
                !next.contains("code=") && !next.contains("state="),
                "no code or state after the callback"
            );
            let page = self
                .http
                .get(format!("{}{}", self.d.base, next.trim_start_matches('/')))
                .send()
                .await
                .unwrap();
            return (303, page.text().await.unwrap());
        }
        (status, r.text().await.unwrap())
    }

    pub async fn api(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.d.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.d.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn delete(&self, key: &str, path: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.d.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Registers a TikTok Business app `id` with the sandbox's demo credentials `credentials`
    /// (`demo-tiktok-business`, or `demo-tiktok-business-sandbox` whose tokens belong to the
    /// sandbox host), configured for `environment` (`production` or `sandbox`).
    pub async fn tiktok_app(&self, id: &str, credentials: &str, environment: &str) {
        self.app_as("tiktok-business", id, credentials, environment)
            .await;
    }

    /// Registers an app `id` of `provider`, a copy of its demo app (developer token and all) with
    /// the sandbox's demo credentials `credentials` (`demo-<provider>` or
    /// `demo-<provider>-sandbox`), configured for `environment` (`production` or `sandbox`).
    pub async fn app_as(&self, provider: &str, id: &str, credentials: &str, environment: &str) {
        use tokenwarden_core::id::{AppId, ProviderId};
        let mut app = self
            .d
            .state
            .store
            .get_app(
                &ProviderId::parse(provider).unwrap(),
                &AppId::parse("demo").unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        app.id = AppId::parse(id).unwrap();
        app.client_id = credentials.to_string();
        app.client_secret = tokenwarden_core::secret::Secret::new(format!("{credentials}-secret"));
        app.environment = environment.parse().unwrap();
        self.d.state.store.put_app(&app).await.unwrap();
    }

    /// The sandbox's counters (`/_sandbox/counters`): what the platforms were sent.
    pub async fn sandbox_counters(&self) -> serde_json::Value {
        let sb = self.d.sandbox_base.clone().unwrap();
        let r = self
            .http
            .get(format!("{sb}/_sandbox/counters"))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// Revokes the newest grant of `provider` at the sandbox, as a person would at the platform.
    pub async fn revoke_latest_grant(&self, provider: &str) {
        let sb = self.d.sandbox_base.clone().unwrap();
        let grants: serde_json::Value = self
            .http
            .get(format!("{sb}/_sandbox/grants?provider={provider}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let grant = grants["grants"].as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = self
            .http
            .post(format!("{sb}/_sandbox/grants/{grant}/revoke"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Calls the provider's health probe at the sandbox with a token, as the platform expects it.
    pub async fn probe(&self, provider: &str, token: &str) -> u16 {
        let p = self.d.state.providers.get(provider).unwrap();
        let api = &p.spec.api;
        // Introspection as the probe (LinkedIn): 200 when the platform says the token is active,
        // 401 otherwise.
        if api.probe.via == tokenwarden_core::provider::ProbeVia::Introspection {
            let call = p.spec.token.introspect.as_ref().unwrap();
            let form = [
                ("client_id", format!("demo-{provider}")),
                ("client_secret", format!("demo-{provider}-secret")),
                ("token", token.to_string()),
            ];
            let r = self
                .http
                .post(call.url.clone())
                .form(&form)
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            return if v["active"] == true { 200 } else { 401 };
        }
        let mut url = url::Url::parse(&format!(
            "{}{}",
            api.base_url.as_str().trim_end_matches('/'),
            api.probe.path
        ))
        .unwrap();
        api.place_query_credential(&mut url, token);
        let method = reqwest::Method::from_bytes(api.probe.method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some((name, value)) = api.credential_header_value(token) {
            req = req.header(name, value);
        }
        // The definition's extra headers, from the demo app (Microsoft's developer token).
        let app = self
            .d
            .state
            .store
            .get_app(&provider.parse().unwrap(), &"demo".parse().unwrap())
            .await
            .unwrap();
        let values = tokenwarden_core::provider::HeaderValues {
            client_id: app
                .as_ref()
                .map(|a| a.client_id.clone())
                .unwrap_or_default(),
            account_id: None,
            user_agent: app.as_ref().and_then(|a| a.user_agent.clone()),
            identity: app.as_ref().and_then(|a| a.identity.clone()),
            developer_token: app.and_then(|a| a.developer_token),
        };
        for h in api.extra_headers(&values) {
            req = req.header(h.name, h.value);
        }
        if let Some(body) = &api.probe.body {
            req = req
                .header("content-type", "application/json")
                .body(body.clone());
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Registers an app `id` of `provider` with the sandbox's demo credentials, configured for
    /// the definition's region `region`.
    pub async fn regional_app(&self, provider: &str, id: &str, region: &str) {
        use tokenwarden_core::id::{AppId, ProviderId};
        let mut app = self
            .d
            .state
            .store
            .get_app(
                &ProviderId::parse(provider).unwrap(),
                &AppId::parse("demo").unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        app.id = AppId::parse(id).unwrap();
        app.region = Some(region.to_string());
        self.d.state.store.put_app(&app).await.unwrap();
    }
}
