//! The daemon on loopback with the sandbox in-process on a scaled clock (the sandbox enforces its
//! rate limits on sliding windows of that clock, so time must move), connections made through the
//! real connect flow, and the sandbox's admin API.
#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
#![allow(dead_code)]

use chrono::Utc;
use serde_json::Value;
use std::sync::Arc;
use tokenwarden_core::clock::ScaledClock;
use tokenwarden_server::daemon::Running;

pub struct World {
    pub d: Running,
    pub http: reqwest::Client,
    pub key: String,
    /// An admin key (mints connect sessions).
    pub admin: String,
    pub sandbox: String,
    _dir: tempfile::TempDir,
}

/// A daemon whose platforms' clock runs `scale` times faster than real time.
pub async fn world(scale: f64) -> World {
    let clock = ScaledClock::new(Utc::now(), scale);
    let started = tokenwarden_testkit::daemon::start(tokenwarden_testkit::daemon::Setup::new(
        Arc::new(clock),
        scale,
    ))
    .await;
    let sandbox = started.d.sandbox_base.clone().unwrap();
    World {
        d: started.d,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        key: started.reader,
        admin: started.admin,
        sandbox,
        _dir: started.dir,
    }
}

impl World {
    /// Runs the connect flow for `connection` on `provider` (approving at the sandbox) and returns
    /// the sandbox's grant id.
    pub async fn connect(&self, provider: &str, connection: &str) -> String {
        self.connect_app(provider, connection, None).await
    }

    /// [`World::connect`] through the app `app` (the provider's first app when `None`).
    pub async fn connect_app(&self, provider: &str, connection: &str, app: Option<&str>) -> String {
        let mut session = serde_json::json!({"provider": provider, "connection_id": connection});
        if let Some(app) = app {
            session["app"] = app.into();
        }
        let minted: Value = self
            .http
            .post(format!("{}v1/connect-sessions", self.d.base))
            .bearer_auth(&self.admin)
            .json(&session)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let landing = tokenwarden_testkit::consent::approve(
            &self.http,
            minted["url"].as_str().expect("a connect session"),
        )
        .await;
        let status = landing.response.status();
        assert!(status.is_success() || status == 303, "{status}");
        let grants = self
            .admin_get(&format!("/grants?provider={provider}"))
            .await;
        grants["grants"]
            .as_array()
            .and_then(|g| g.last())
            .and_then(|g| g["id"].as_str())
            .expect("the sandbox holds the grant")
            .to_string()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/_sandbox{path}", self.sandbox))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/_sandbox{path}", self.sandbox))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// The sandbox's counters for one provider.
    pub async fn counters(&self, provider: &str) -> Value {
        self.admin_get("/counters").await["providers"][provider].clone()
    }

    /// Refresh-token grants the sandbox served for one grant.
    pub async fn refreshes(&self, grant: &str) -> u64 {
        let c = self.admin_get("/counters").await;
        let by_type = &c["grants"][grant]["token_calls_by_grant_type"];
        by_type
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.contains("refresh"))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn proxy_url(&self, connection: &str, path: &str) -> String {
        format!("{}proxy/{connection}{path}", self.d.base)
    }

    pub fn get(&self, connection: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.proxy_url(connection, path))
            .bearer_auth(&self.key)
    }

    pub fn daemon_addr(&self) -> String {
        self.d
            .base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }
}

/// A proxied response, read whole (the test bodies are small).
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub kind: String,
    pub action: String,
    pub attempts: u32,
    pub waited_ms: u64,
    pub refreshed: bool,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn seen(r: reqwest::RequestBuilder) -> Seen {
    let r = r.send().await.unwrap();
    let h = r.headers().clone();
    let text = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Seen {
        status: r.status().as_u16(),
        kind: text("tokenwarden-kind"),
        action: text("tokenwarden-action"),
        attempts: text("tokenwarden-attempts").parse().unwrap_or(0),
        waited_ms: text("tokenwarden-waited-ms").parse().unwrap_or(0),
        refreshed: text("tokenwarden-refreshed") == "true",
        headers: h.clone(),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// Sends raw bytes as one HTTP/1.1 request (no client normalises the path on the way) and
/// returns the status code.
pub async fn raw_status(addr: &str, request_line_path: &str, key: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {request_line_path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
