//! `tokenwarden connections …` and `tokenwarden token ID`: the daemon's API from the shell.

use crate::term::{self, Style};
use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Where the shell commands look for the daemon unless told (`--url`, `TOKENWARDEN_URL`): the
/// address `serve` listens on by default.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How to reach a running daemon.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The daemon's URL.
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_URL,
        env = "TOKENWARDEN_URL"
    )]
    url: url::Url,
    /// An API key; by default the admin key file in the data directory.
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// The data directory holding admin.key (used when no --api-key is given).
    #[arg(
        long,
        global = true,
        default_value = "tokenwarden-data",
        env = "TOKENWARDEN_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// List, show, refresh or delete connections of a running daemon.
#[derive(Debug, clap::Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    command: Option<ConnectionsSub>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum ConnectionsSub {
    /// Every connection with its state and token expiry (the default).
    List,
    /// One connection: state, problems with their fixes, scopes, accounts.
    Show {
        /// The connection id.
        id: String,
    },
    /// Refresh the token now.
    Refresh {
        /// The connection id.
        id: String,
    },
    /// Delete the connection, revoking its tokens at the platform where it can.
    Delete {
        /// The connection id.
        id: String,
        /// Delete even if the platform cannot be reached to revoke.
        #[arg(long)]
        force: bool,
    },
}

/// Print a fresh access token of a connection (for scripts: `$(tokenwarden token ID)`).
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The connection id.
    id: String,
    #[command(flatten)]
    target: Target,
}

impl Target {
    pub(crate) fn key(&self) -> Result<String> {
        if let Some(k) = self.api_key.as_ref().filter(|k| !k.trim().is_empty()) {
            return Ok(k.trim().to_string());
        }
        let path = self.data_dir.join("admin.key");
        let k = std::fs::read_to_string(&path).with_context(|| {
            format!("no API key: pass --api-key or TOKENWARDEN_API_KEY, or run where {} exists (created by `tokenwarden serve`)", path.display())
        })?;
        Ok(k.trim().to_string())
    }

    pub(crate) fn call(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        self.send(method, path, None)
    }

    pub(crate) fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = self
            .url
            .join(path)
            .with_context(|| format!("bad --url {}", self.url))?;
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        let mut req = client.request(method, url).bearer_auth(self.key()?);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().map_err(|e| {
            anyhow!(
                "cannot reach tokenwarden at {}: {}",
                self.url,
                e.without_url()
            )
        })?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let e = &body["error"];
            let message = e["message"].as_str().unwrap_or("no message");
            let mut text = format!(
                "{} ({status}): {message}",
                e["code"].as_str().unwrap_or("error")
            );
            if let Some(fix) = e["fix"].as_str() {
                text.push_str(&format!("\nFix: {fix}"));
            }
            if let Some(link) = e["reauthorize_url"].as_str() {
                text.push_str(&format!("\nRe-authorize: {link}"));
            }
            bail!(text);
        }
        Ok(body)
    }
}

fn state_style(state: &str) -> Style {
    match state {
        "active" => Style::Good,
        "degraded" | "pending" => Style::Warn,
        _ => Style::Bad,
    }
}

/// Runs `connections`.
pub fn connections(args: ConnectionsArgs) -> Result<ExitCode> {
    let t = &args.target;
    let colour = term::stdout_colour();
    match args.command.unwrap_or(ConnectionsSub::List) {
        ConnectionsSub::List => {
            let v = t.call(reqwest::Method::GET, "v1/connections")?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["connections"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!(
                    "No connections yet. Make a connect link with `tokenwarden connect PROVIDER` (or the dashboard at {}), and open it in a browser.",
                    t.url
                );
            }
            for c in list {
                let state = c["state"].as_str().unwrap_or("?");
                println!(
                    "{:<32} {:<16} {:<24} expires {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["provider"].as_str().unwrap_or("?"),
                    term::paint(state_style(state), state, colour),
                    c["token"]["expires_at"].as_str().unwrap_or("never")
                );
                for p in c["problems"].as_array().into_iter().flatten() {
                    println!(
                        "    ! {} — {}",
                        p["title"].as_str().unwrap_or(""),
                        p["fix"].as_str().unwrap_or("")
                    );
                }
            }
        }
        ConnectionsSub::Show { id } => {
            let c = t.call(reqwest::Method::GET, &format!("v1/connections/{id}"))?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
                return Ok(ExitCode::SUCCESS);
            }
            let state = c["state"].as_str().unwrap_or("?");
            println!(
                "{} ({})  {}",
                c["id"].as_str().unwrap_or("?"),
                c["provider"].as_str().unwrap_or("?"),
                term::paint(state_style(state), state, colour)
            );
            println!(
                "  token:     {} expires {}",
                c["token"]["hint"].as_str().unwrap_or("-"),
                c["token"]["expires_at"].as_str().unwrap_or("never")
            );
            println!(
                "  scopes:    {}",
                c["scopes"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            println!(
                "  accounts:  {}",
                c["account_ids"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            for p in c["problems"].as_array().into_iter().flatten() {
                println!(
                    "  problem:   {}\n  fix:       {}",
                    p["title"].as_str().unwrap_or(""),
                    p["fix"].as_str().unwrap_or("")
                );
            }
            if state == "reauth_required" {
                println!(
                    "  re-authorize: {}",
                    c["reauthorize_url"].as_str().unwrap_or("")
                );
            }
        }
        ConnectionsSub::Refresh { id } => {
            let v = t.call(
                reqwest::Method::POST,
                &format!("v1/connections/{id}/refresh"),
            )?;
            if t.json {
                let mut safe = serde_json::json!({"connection": v["connection"], "expires_at": v["expires_at"], "version": v["version"], "refreshed": v["refreshed"]});
                if !v["not_refreshed"].is_null() {
                    safe["not_refreshed"] = v["not_refreshed"].clone();
                }
                println!("{}", serde_json::to_string_pretty(&safe)?);
            } else if v["refreshed"] == Value::Bool(false) {
                println!(
                    "{id}: {} The token expires {}.",
                    v["not_refreshed"]["message"]
                        .as_str()
                        .unwrap_or("Not refreshed: the token handed back is the one stored."),
                    v["expires_at"].as_str().unwrap_or("never")
                );
            } else {
                println!(
                    "Refreshed {id}: the token now expires {}",
                    v["expires_at"].as_str().unwrap_or("never")
                );
            }
        }
        ConnectionsSub::Delete { id, force } => {
            let path = if force {
                format!("v1/connections/{id}?force=true")
            } else {
                format!("v1/connections/{id}")
            };
            let v = t.call(reqwest::Method::DELETE, &path)?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let revoked = if v["revoked_at_platform"] == Value::Bool(true) {
                    " (tokens revoked at the platform)"
                } else {
                    ""
                };
                println!("Deleted {id}{revoked}.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `token`: the token alone on stdout (or JSON with --json), nothing else.
pub fn token(args: TokenArgs) -> Result<ExitCode> {
    let v = args.target.call(
        reqwest::Method::GET,
        &format!("v1/connections/{}/token", args.id),
    )?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}",
            v["access_token"]
                .as_str()
                .ok_or_else(|| anyhow!("the daemon's answer had no token"))?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Print the link that connects (or re-authorizes) an account of a platform.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The platform: an id `tokenwarden providers` lists (snapchat, meta, google-ads,
    /// microsoft-ads, amazon-ads, …) or one of your own.
    provider: String,
    /// The connection to create or re-authorize (default: a generated id).
    #[arg(long)]
    connection_id: Option<String>,
    /// Which of the platform's apps to use (default: the connection's, or the first configured).
    #[arg(long)]
    app: Option<String>,
    /// Scopes to request, comma-separated (default: the definition's).
    #[arg(long)]
    scopes: Option<String>,
    /// Who the connection is for (a free-form label kept on the connection).
    #[arg(long)]
    end_user: Option<String>,
    /// Where to send the browser when the flow ends (this daemon's origin or one allowed under
    /// [connect] return_to).
    #[arg(long)]
    return_to: Option<String>,
    /// How long the link stays usable, in seconds (60 to 604800; default 1800).
    #[arg(long)]
    expires_in: Option<i64>,
    /// Let a re-authorization land another platform account than the connection's (its old
    /// grant is then revoked).
    #[arg(long)]
    allow_account_change: bool,
    /// Open the link in the desktop's browser too.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    target: Target,
}

/// Runs `connect`: asks the daemon for a connect session (an admin API key is needed) and
/// prints its single-use link.
pub fn connect(
    args: ConnectArgs,
    registry: &tokenwarden_core::provider::Registry,
) -> Result<ExitCode> {
    if registry.get(&args.provider).is_none() {
        bail!(
            "unknown provider {:?}; known: {}",
            args.provider,
            registry.ids()
        );
    }
    let mut body = serde_json::json!({
        "provider": args.provider,
        "allow_account_change": args.allow_account_change,
    });
    for (k, v) in [
        ("connection_id", args.connection_id.clone()),
        ("app", args.app.clone()),
        ("end_user", args.end_user.clone()),
        ("return_to", args.return_to.clone()),
    ] {
        if let Some(v) = v {
            body[k] = Value::String(v);
        }
    }
    if let Some(s) = &args.scopes {
        body["scopes"] = s
            .split(',')
            .map(|x| Value::String(x.trim().to_string()))
            .collect();
    }
    if let Some(e) = args.expires_in {
        body["expires_in"] = e.into();
    }
    let v = args
        .target
        .send(reqwest::Method::POST, "v1/connect-sessions", Some(&body))?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let link = v["url"].as_str().unwrap_or_default().to_string();
    println!("{link}");
    eprintln!(
        "Connection {} ({}); the link works once, until {}.",
        v["connection_id"].as_str().unwrap_or("?"),
        v["provider"].as_str().unwrap_or("?"),
        v["expires_at"].as_str().unwrap_or("?")
    );
    if args.open {
        let opened = Command::new("xdg-open")
            .arg(&link)
            .status()
            .or_else(|_| Command::new("open").arg(&link).status());
        if !opened.is_ok_and(|s| s.success()) {
            eprintln!("Could not open a browser here; open the link above yourself.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An id as one path segment of an API URL: ids are made of letters, digits, `_`, `-` and `.`,
/// so anything else is refused here rather than sent to a different route.
pub(crate) fn path_segment<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        bail!("{id:?} is not {what} id (letters, digits, _, - and . only)");
    }
    Ok(id)
}

/// Text from the daemon as it may be shown on a terminal: control characters (escape sequences
/// included) are written out, not obeyed.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
