//! A sandbox on loopback with a fake clock, and a client that never follows redirects.
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokenwarden_core::clock::FakeClock;
use tokenwarden_sandbox::{Sandbox, SandboxConfig};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub struct Harness {
    pub base: String,
    pub clock: FakeClock,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(SandboxConfig::default()).await
    }

    pub async fn with(mut config: SandboxConfig) -> Harness {
        config.demo_redirect_uris = vec![REDIRECT.to_string()];
        let clock = FakeClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let sandbox = Sandbox::new(config, Arc::new(clock.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sandbox.serve(listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            base,
            clock,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(TimeDelta::seconds(secs));
    }

    /// The scripted approval: POSTs the authorize form and returns the redirect's query.
    pub async fn authorize(
        &self,
        path: &str,
        params: &[(&str, &str)],
        decision: &str,
    ) -> HashMap<String, String> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("decision", decision));
        let resp = self
            .http
            .post(self.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "authorize should redirect"
        );
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with(REDIRECT),
            "redirects to the registered URI: {location}"
        );
        let url = url::Url::parse(&location).unwrap();
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url(&format!("/_sandbox{path}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "admin {path}: {}",
            resp.status()
        );
        resp.json().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(&format!("/_sandbox{path}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The id of the only (or latest) grant of a provider.
    pub async fn grant_id(&self, provider: &str) -> String {
        let v = self
            .admin_get(&format!("/grants?provider={provider}"))
            .await;
        v["grants"].as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn counters(&self) -> Value {
        self.admin_get("/counters").await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Sends a request and returns status, headers and the body as JSON (Null when not JSON).
pub async fn call(
    req: reqwest::RequestBuilder,
) -> (StatusCode, reqwest::header::HeaderMap, Value, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, json, text)
}
