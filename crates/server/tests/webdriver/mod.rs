//! A small W3C WebDriver client over reqwest, driving headless Chromium through chromedriver on
//! loopback. Waiting is WebDriver's own: page loads block navigation calls, and an implicit wait
//! lets element look-ups wait for the element to appear.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver, stopped when dropped (also when starting the session fails).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where chromedriver and Chromium live (Debian's `chromium` and `chromium-driver`).
pub fn available() -> Result<(PathBuf, PathBuf), String> {
    let driver = PathBuf::from(
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    );
    let chrome =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if driver.exists() && chrome.exists() {
        Ok((driver, chrome))
    } else {
        Err(format!(
            "the browser tests need {} and {} (apt-get install -y chromium chromium-driver; .ci/run installs them). \
Set TOKENWARDEN_SKIP_BROWSER_TESTS=1 to skip them knowingly.",
            driver.display(),
            chrome.display()
        ))
    }
}

pub struct Element<'a> {
    b: &'a Browser,
    id: String,
}

impl Browser {
    pub async fn start() -> Browser {
        let (driver_path, chrome) = available().unwrap();
        let mut driver = Driver(
            Command::new(driver_path)
                .arg("--port=0")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let stdout = driver.0.stdout.take().unwrap();
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let port = loop {
                let line = lines
                    .next()
                    .expect("chromedriver reports its port")
                    .unwrap();
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    break rest.trim_end_matches('.').trim().parse::<u16>().unwrap();
                }
            };
            // Keep draining so chromedriver never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            port
        })
        .await
        .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage", "--window-size=1360,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        let b = Browser {
            http,
            base,
            session,
            driver,
            _profile: profile,
        };
        b.cmd(
            "POST",
            "timeouts",
            json!({"implicit": 15000, "pageLoad": 30000}),
        )
        .await;
        b
    }

    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// Clicks something that leads to another page, and returns once that page has loaded (a
    /// form post's navigation can start after the click returns, and the old page's elements
    /// would still match).
    pub async fn click_through(&self, el: Element<'_>) {
        self.execute("window.__twOld = true;").await;
        el.click().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let probe = self
                .try_cmd(
                    "POST",
                    "execute/sync",
                    json!({"script": "return window.__twOld !== true && document.readyState === 'complete';", "args": []}),
                )
                .await;
            if probe == Ok(Value::Bool(true)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new page after the click: {probe:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "source", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn title(&self) -> String {
        self.cmd("GET", "title", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (implicitly) for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let v = self
            .cmd(
                "POST",
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        Element {
            b: self,
            id: v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_string(),
        }
    }

    /// Resizes the window (screenshots show the viewport).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Saves a PNG screenshot and returns where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self.cmd("GET", "screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .unwrap();
    }
}

impl Element<'_> {
    pub async fn click(&self) {
        self.b
            .cmd("POST", &format!("element/{}/click", self.id), json!({}))
            .await;
    }

    pub async fn type_text(&self, text: &str) {
        self.b
            .cmd(
                "POST",
                &format!("element/{}/value", self.id),
                json!({ "text": text }),
            )
            .await;
    }

    pub async fn text(&self) -> String {
        self.b
            .cmd("GET", &format!("element/{}/text", self.id), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn attr(&self, name: &str) -> Option<String> {
        self.b
            .cmd(
                "GET",
                &format!("element/{}/attribute/{name}", self.id),
                Value::Null,
            )
            .await
            .as_str()
            .map(str::to_string)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed assertion: end the session so chromedriver closes Chromium, from a plain
        // thread (a blocking client must not run on the runtime's threads).
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            if let Ok(c) = reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
            {
                let _ = c.delete(url).send();
            }
        })
        .join();
        // `driver` is dropped next, which stops chromedriver.
    }
}
