//! The oidc-provider peer (tests/peers/oidc-provider) as a child process, a browser's trip
//! through its authorize pages, and a daemon whose providers are the peer's definition files.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::{Endpoints, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_server::daemon::{Daemon, Running};
use tokenwarden_store::{ApiKeyRole, App, Keyring};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The two definitions under test: the same server, each client authentication method.
pub const PROVIDERS: [&str; 2] = ["oidc-basic", "oidc-post"];

/// A client registered at the peer.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    /// `client_secret_basic` or `client_secret_post`.
    pub method: &'static str,
}

/// Holds characters RFC 6749 §2.3.1 encoding must carry through Basic (`+`, `/`, `=`, `:`, `%`,
/// space): a client that skips the encoding is refused by the peer.
pub const BASIC: Client = Client {
    id: "tw-basic",
    secret: "b+s/e=c:r%t x",
    method: "client_secret_basic",
};
pub const POST: Client = Client {
    id: "tw-post",
    secret: "post secret+%&=",
    method: "client_secret_post",
};

pub fn client_of(provider: &str) -> Client {
    match provider {
        "oidc-basic" => BASIC,
        _ => POST,
    }
}

pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/oidc-provider")
}

/// The running peer; stopped when dropped (its stdin closes and the process is killed).
pub struct Peer {
    pub issuer: String,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
    _child: tokio::process::Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A failing test shows what the peer said.
        if std::thread::panicking() {
            eprintln!(
                "oidc-provider peer stderr:\n{}",
                self.stderr.lock().unwrap()
            );
        }
    }
}

impl Peer {
    /// Starts `node server.js` with these clients and access-token lifetime. Fails (never skips)
    /// when Node.js or the peer's modules are missing, saying what to do.
    pub async fn start(clients: Value, at_ttl_secs: u32) -> Peer {
        let dir = peer_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "the oidc-provider test peer is not installed in {}: run `npm ci` there (bash \
             scripts/test does it). It needs Node.js 20 or later.",
            dir.display()
        );
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
        let mut child = tokio::process::Command::new(&node)
            .arg("server.js")
            .current_dir(&dir)
            .env("PEER_CLIENTS", clients.to_string())
            .env("PEER_AT_TTL", at_ttl_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{node}` for the oidc-provider test peer ({e}). Install Node.js \
                     20 or later (or set NODE to its path), then run `npm ci` in {}.",
                    dir.display()
                )
            });
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        // A bound on start-up so a broken peer fails the test instead of hanging it.
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await;
        // Keep reading, so the peer never writes into a closed pipe.
        tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest).await;
        });
        let hello: Option<Value> = match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        };
        let Some(issuer) = hello.and_then(|h| h["issuer"].as_str().map(str::to_string)) else {
            panic!(
                "the oidc-provider peer did not start (stdout: {line:?}); its stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        Peer {
            issuer,
            http: no_redirects(),
            stderr,
            _child: child,
        }
    }

    /// The peer's counters (`GET /_peer/stats`).
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_peer/stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Token-endpoint successes for a grant type.
    pub async fn token_ok(&self, grant: &str) -> u64 {
        self.stats().await["token"][grant]["ok"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Token-endpoint refusals for a grant type, by error code.
    pub async fn token_errors(&self, grant: &str) -> BTreeMap<String, u64> {
        let s = self.stats().await;
        s["token"][grant]["errors"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Follows the peer's authorize pages (login and consent are approved at once) with a fresh
    /// cookie jar, up to the redirect to `stop_prefix`. `Err` holds the status and body of the
    /// page where the trip ended instead.
    pub async fn approve(
        &self,
        authorize: &str,
        stop_prefix: &str,
    ) -> Result<String, (u16, String)> {
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        let mut url = authorize.to_string();
        for _ in 0..8 {
            let cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut req = self.http.get(&url);
            if !cookie.is_empty() {
                req = req.header("cookie", cookie);
            }
            let r = req.send().await.unwrap();
            for v in r.headers().get_all("set-cookie") {
                let v = v.to_str().unwrap();
                let Some((name, value)) = v.split(';').next().and_then(|kv| kv.split_once('='))
                else {
                    continue;
                };
                let gone =
                    value.is_empty() || v.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
                if gone {
                    jar.remove(name);
                } else {
                    jar.insert(name.to_string(), value.to_string());
                }
            }
            let status = r.status().as_u16();
            let Some(location) = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
            else {
                return Err((status, r.text().await.unwrap_or_default()));
            };
            let next = url::Url::parse(&url)
                .unwrap()
                .join(&location)
                .unwrap()
                .to_string();
            if next.starts_with(stop_prefix) {
                return Ok(next);
            }
            assert!(
                next.starts_with(&self.issuer),
                "the peer redirected away from itself: {next}"
            );
            url = next;
        }
        panic!("too many redirects at the peer");
    }

    /// The peer's userinfo endpoint: the "API" that accepts or refuses an access token.
    pub async fn userinfo(&self, access_token: &str) -> u16 {
        self.http
            .get(format!("{}/me", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn authenticated(
        &self,
        client: Client,
        path: &str,
        mut form: Vec<(&str, &str)>,
    ) -> reqwest::RequestBuilder {
        let req = self.http.post(format!("{}{path}", self.issuer));
        if client.method == "client_secret_basic" {
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            req.basic_auth(enc(client.id), Some(enc(client.secret)))
                .form(&form)
        } else {
            form.push(("client_id", client.id));
            form.push(("client_secret", client.secret));
            req.form(&form)
        }
    }

    /// RFC 7662: whether the server still considers `token` active.
    pub async fn active(&self, client: Client, token: &str) -> bool {
        let r = self
            .authenticated(client, "/token/introspection", vec![("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["active"]
            .as_bool()
            .expect("introspection says active or not")
    }

    /// RFC 7009: revokes `token` at the server, as a person removing the app would.
    pub async fn revoke(&self, client: Client, token: &str, hint: &str) {
        let r = self
            .authenticated(
                client,
                "/token/revocation",
                vec![("token", token), ("token_type_hint", hint)],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The daemon on loopback with the peer's definitions as user files, one app per definition, the
/// real clock (the peer's tokens expire in real time), and the peer.
pub struct Tw {
    pub d: Running,
    pub peer: Peer,
    pub http: reqwest::Client,
    pub admin: String,
    pub reader: String,
    _dir: tempfile::TempDir,
}

/// The peer's definition files, pointed at its real origin.
pub fn definitions(issuer: &str) -> Vec<(String, String)> {
    PROVIDERS
        .iter()
        .map(|id| {
            let path = peer_dir().join(format!("{id}.toml"));
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.display().to_string(),
                text.replace("http://127.0.0.1:4000", issuer),
            )
        })
        .collect()
}

impl Tw {
    pub async fn start(at_ttl_secs: u32) -> Tw {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clients: Vec<Value> = PROVIDERS
            .iter()
            .map(|p| {
                let c = client_of(p);
                json!({
                    "client_id": c.id,
                    "client_secret": c.secret,
                    "redirect_uris": [format!("{base}/callback/{p}")],
                    "token_endpoint_auth_method": c.method,
                })
            })
            .collect();
        let peer = Peer::start(Value::Array(clients), at_ttl_secs).await;
        // The peer is plain http on loopback: allowed explicitly, as a test setup must.
        let providers =
            Registry::with_files_allowing(definitions(&peer.issuer), Endpoints::AllowHttp)
                .unwrap_or_else(|e| panic!("{e}"));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
        let store = tokenwarden_store::open(&url, Keyring::generate("k1").unwrap())
            .await
            .unwrap();
        let (_, admin) = store
            .create_api_key(ApiKeyRole::Admin, "test", clock.now())
            .await
            .unwrap();
        let (_, reader) = store
            .create_api_key(ApiKeyRole::TokenReader, "test", clock.now())
            .await
            .unwrap();
        let now = clock.now();
        let app = |provider: &str, id: &str, redirect: String| {
            let c = client_of(provider);
            App {
                provider: ProviderId::parse(provider).unwrap(),
                id: AppId::parse(id).unwrap(),
                client_id: c.id.into(),
                client_secret: Secret::new(c.secret),
                redirect_uri: redirect,
                developer_token: None,
                user_agent: None,
                refresh_token_ends_after: None,
                identity: None,
                environment: tokenwarden_core::connection::Environment::Production,
                region: None,
                created_at: now,
                updated_at: now,
            }
        };
        let mut apps: Vec<App> = PROVIDERS
            .iter()
            .map(|p| app(p, "main", format!("{base}/callback/{p}")))
            .collect();
        // Registered here, but with a redirect URI the platform never saw.
        apps.push(app(
            "oidc-basic",
            "unregistered",
            format!("{base}/callback/oidc-basic?elsewhere=1"),
        ));
        let d = Daemon {
            listener,
            sandbox_listener: None,
            apps,
            store,
            providers,
            clock,
            time_scale: 1.0,
            public_url: None,
            owner: "oidc-peer-test".into(),
            key_file: None,
            probe_poll: Some(Duration::from_secs(3600)),
            webhooks: tokenwarden_server::webhooks::WebhookPolicy::default(),
            retention: tokenwarden_server::retention::Retention::default(),
            cache: Default::default(),
            proxy_limits: Default::default(),
            http_threads: 0,
        }
        .start()
        .await
        .unwrap();
        Tw {
            d,
            peer,
            http: no_redirects(),
            admin: admin.expose().to_string(),
            reader: reader.expose().to_string(),
            _dir: dir,
        }
    }

    /// `/connect` then the peer's pages, up to the callback (not yet visited): `(flow cookie,
    /// callback URL)`.
    pub async fn authorize(
        &self,
        provider: &str,
        connection: &str,
        app: &str,
    ) -> Result<(String, String), (u16, String)> {
        let minted: serde_json::Value = self
            .http
            .post(format!("{}v1/connect-sessions", self.d.base))
            .bearer_auth(&self.admin)
            .json(
                &serde_json::json!({"provider": provider, "connection_id": connection, "app": app}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = self
            .http
            .post(minted["url"].as_str().expect("a connect session"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "connect redirects to the platform");
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let authorize = r.headers()["location"].to_str().unwrap().to_string();
        assert!(authorize.starts_with(&self.peer.issuer), "{authorize}");
        let callback = self
            .peer
            .approve(&authorize, &format!("{}callback/", self.d.base))
            .await?;
        Ok((cookie, callback))
    }

    /// Visits the callback in the browser that started the flow; `(status, final page)`.
    pub async fn finish(&self, cookie: &str, callback: &str) -> (u16, String) {
        let r = self
            .http
            .get(callback)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status != 303 {
            return (status, r.text().await.unwrap());
        }
        let next = r.headers()["location"].to_str().unwrap().to_string();
        assert!(!next.contains("code=") && !next.contains("state="));
        let page = self
            .http
            .get(format!("{}{}", self.d.base, next.trim_start_matches('/')))
            .send()
            .await
            .unwrap();
        (303, page.text().await.unwrap())
    }

    /// A whole connect flow that must succeed.
    pub async fn connect(&self, provider: &str, connection: &str) {
        let (cookie, callback) = self
            .authorize(provider, connection, "main")
            .await
            .unwrap_or_else(|(s, b)| panic!("{provider}: the peer stopped at HTTP {s}: {b}"));
        let (status, page) = self.finish(&cookie, &callback).await;
        assert_eq!(status, 303, "{provider}: {page}");
        assert!(page.contains("Connected"), "{provider}: {page}");
    }

    pub async fn api(&self, method: reqwest::Method, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.d.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The stored token set (decrypted), as the test's view behind tokenwarden's back.
    pub async fn tokens(&self, connection: &str) -> TokenSet {
        self.d
            .state
            .store
            .get_tokens(&ConnectionId::parse(connection).unwrap())
            .await
            .unwrap()
            .expect("the connection has tokens")
            .set
    }

    pub async fn state_of(&self, connection: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::GET,
                &self.admin,
                &format!("v1/connections/{connection}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["state"]
            .as_str()
            .or(body["connection"]["state"].as_str())
            .unwrap_or_else(|| panic!("no state in {body}"))
            .to_string()
    }
}
