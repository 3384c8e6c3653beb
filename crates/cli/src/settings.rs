//! The daemon's settings, assembled in one place: the configuration file first, then the
//! `TOKENWARDEN_*` environment variables, then the flags. A variable overrides the file, and a
//! flag overrides both (clap reads a flag's own variable, which `serve --help` shows beside it);
//! every value is checked here, and a bad one is named by its key, variable or flag.
//!
//! This is also the one place that reads a `TOKENWARDEN_*` variable that is not a flag's
//! ([`env`]), the master key's among them ([`master_key`]).

use crate::cmd::serve::{Args, LogFormat};
use crate::config::{FileConfig, ResolvedApp};
use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokenwarden_core::provider::{Endpoints, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_server::alerts;
use tokenwarden_server::daemon::{BodyLimits, CacheConfig};
use tokenwarden_server::limits::TrustedProxies;
use tokenwarden_server::retention::Retention;
use tokenwarden_server::webhooks::WebhookPolicy;

/// The variable that holds the master key (the key file's text) instead of `master.key`.
pub const MASTER_KEY_ENV: &str = "TOKENWARDEN_MASTER_KEY";

/// A `TOKENWARDEN_*` (or other) variable's value; unset, empty and blank are all "not given".
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The master key from [`MASTER_KEY_ENV`], when it is set.
pub fn master_key() -> Option<Secret> {
    env(MASTER_KEY_ENV).map(Secret::new)
}

/// Everything `serve` runs with, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The user's provider definitions.
    pub providers_dir: Option<PathBuf>,
    /// Whether definitions may use plain-http endpoints (`--sandbox` points them at its own).
    pub endpoints: Endpoints,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where the daemon listens.
    pub listen: SocketAddr,
    /// The URL people use to reach it, when given.
    pub public_url: Option<url::Url>,
    /// The database URL, when given (otherwise SQLite in the data directory).
    pub database: Option<String>,
    /// The master key from the environment, when given (otherwise the key file).
    pub master_key: Option<Secret>,
    /// Start with a master key file that group or others can read.
    pub allow_insecure_key_file: bool,
    /// The token and API-key caches.
    pub cache: CacheConfig,
    /// Where finished connect flows may send the browser, beside the public URL.
    pub return_to: Vec<url::Url>,
    /// The forwarding proxy's body limits.
    pub proxy_limits: BodyLimits,
    /// The dashboard's password, when set.
    pub dashboard_password: Option<Secret>,
    /// How long an unused dashboard session lasts.
    pub idle_timeout: Duration,
    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// The Slack-compatible notifier and when it alerts, when configured.
    pub alerts: Option<(alerts::SlackWebhook, alerts::AlertSettings)>,
    /// How long history is kept.
    pub retention: Retention,
    /// Where webhooks may be delivered.
    pub webhooks: WebhookPolicy,
    /// The in-process sandbox, with `--sandbox`.
    pub sandbox: Option<SandboxSettings>,
    /// How log lines are written, and the level filter (`TOKENWARDEN_LOG`, else `RUST_LOG`).
    pub log: (LogFormat, Option<String>),
    /// How long a stop waits for work in flight.
    pub drain_timeout: Duration,
    /// Threads serving HTTP requests (0: the shared worker threads).
    pub http_threads: usize,
    /// The file's apps, checked against the providers once they are loaded
    /// ([`Settings::apps`]).
    file: FileConfig,
}

/// `--sandbox`, `--sandbox-listen`, `--time-scale`.
#[derive(Debug, Clone, Copy)]
pub struct SandboxSettings {
    /// Where the emulator listens.
    pub listen: SocketAddr,
    /// How much faster than real time the clock runs.
    pub time_scale: f64,
}

impl Settings {
    /// Reads the configuration file `args` names (if any), then the environment, then `args`
    /// itself; `providers_dir` is the global `--providers-dir` (or `TOKENWARDEN_PROVIDERS_DIR`).
    pub fn load(args: &Args, providers_dir: Option<&Path>) -> Result<Settings> {
        if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
            anyhow::bail!("--time-scale must be 1 or more");
        }
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let providers_dir = providers_dir
            .map(Path::to_path_buf)
            .or(file.providers_dir.clone());
        // With --sandbox every endpoint is replaced by the in-process emulator's.
        let endpoints = if args.sandbox {
            Endpoints::AllowHttp
        } else {
            crate::definitions::endpoints(file.allow_insecure_endpoints)?
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("tokenwarden-data"));
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_url = args.public_url.clone().or(file.public_url.clone());
        let database = args.database.clone().or(file.database.clone());
        let cache = file.cache.resolve()?;
        let return_to: Vec<url::Url> = match env("TOKENWARDEN_CONNECT_RETURN_TO") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| {
                    url::Url::parse(u).with_context(|| {
                        format!("TOKENWARDEN_CONNECT_RETURN_TO: {u:?} is not a URL")
                    })
                })
                .collect::<Result<_>>()?,
            None => file.connect.return_to.clone(),
        };
        let proxy_limits = file.proxy.resolve(
            env("TOKENWARDEN_PROXY_MAX_REQUEST_BYTES").as_deref(),
            env("TOKENWARDEN_PROXY_MAX_RESPONSE_BYTES").as_deref(),
        )?;
        let dashboard_password = match env("TOKENWARDEN_DASHBOARD_PASSWORD") {
            Some(p) => Some(Secret::new(p)),
            None => file.dashboard.password()?,
        };
        let idle_timeout = file
            .dashboard
            .idle_timeout(env(crate::config::IDLE_TIMEOUT_ENV).as_deref())?;
        let trusted_proxies =
            file.trusted_proxies(env(crate::config::TRUSTED_PROXIES_ENV).as_deref())?;
        let alerts = match (env("TOKENWARDEN_SLACK_WEBHOOK_URL"), file.alerts.as_ref()) {
            (Some(url), cfg) => Some((Secret::new(url), cfg)),
            (None, Some(cfg)) => Some((cfg.webhook_url()?, Some(cfg))),
            (None, None) => None,
        }
        .map(|(url, cfg)| -> Result<_> {
            let notifier = alerts::SlackWebhook::new(&url).map_err(|e| anyhow::anyhow!(e))?;
            let defaults = alerts::AlertSettings::default();
            let settings = alerts::AlertSettings {
                degraded_after: cfg.map_or(defaults.degraded_after, |c| {
                    chrono::TimeDelta::minutes(i64::from(c.degraded_after_minutes))
                }),
                poll: cfg.map_or(defaults.poll, |c| {
                    Duration::from_secs(u64::from(c.poll_seconds.max(1)))
                }),
            };
            Ok((notifier, settings))
        })
        .transpose()?;
        let retention = file.retention.resolve(
            env("TOKENWARDEN_RETENTION_EVENTS").as_deref(),
            env("TOKENWARDEN_RETENTION_DELIVERIES").as_deref(),
        )?;
        Ok(Settings {
            providers_dir,
            endpoints,
            data_dir,
            listen,
            public_url,
            database,
            master_key: master_key(),
            allow_insecure_key_file: args.allow_insecure_key_file
                || file.allow_insecure_key_file.unwrap_or(false),
            cache,
            return_to,
            proxy_limits,
            dashboard_password,
            idle_timeout,
            trusted_proxies,
            alerts,
            retention,
            webhooks: WebhookPolicy {
                allow_private: file.webhooks.allow_private.unwrap_or(args.sandbox),
            },
            sandbox: args.sandbox.then_some(SandboxSettings {
                listen: args.sandbox_listen,
                time_scale: args.time_scale,
            }),
            log: (
                args.log_format,
                ["TOKENWARDEN_LOG", "RUST_LOG"].into_iter().find_map(env),
            ),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            http_threads: args.http_threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                usize::from,
            ),
            file,
        })
    }

    /// The configured apps, checked against `providers`, with their secrets read; redirect URIs
    /// default to `public_url`'s callback.
    pub fn apps(&self, providers: &Registry, public_url: &url::Url) -> Result<Vec<ResolvedApp>> {
        self.file.resolve_apps(providers, public_url)
    }

    /// How much faster than real time the clock runs (1 without the sandbox).
    pub fn time_scale(&self) -> f64 {
        self.sandbox.map_or(1.0, |s| s.time_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: Args,
    }

    fn load(file: &str, flags: &[&str]) -> Result<Settings> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tokenwarden.toml");
        std::fs::write(&path, file)?;
        let mut argv = vec!["serve", "--config", path.to_str().unwrap_or_default()];
        argv.extend_from_slice(flags);
        Settings::load(&Serve::try_parse_from(argv)?.args, None)
    }

    #[test]
    fn a_flag_overrides_the_file_and_the_file_fills_what_no_flag_gives() {
        let s = load(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"from-the-file\"\n",
            &["--listen", "127.0.0.1:9001"],
        )
        .unwrap();
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(s.data_dir, PathBuf::from("from-the-file"));
        assert!(s.sandbox.is_none());
        assert_eq!(s.time_scale(), 1.0);
        assert!(!s.webhooks.allow_private);
    }

    #[test]
    fn http_threads_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(load("", &[]).unwrap().http_threads, cores);
        assert_eq!(load("", &["--http-threads", "0"]).unwrap().http_threads, 0);
        assert_eq!(load("", &["--http-threads", "3"]).unwrap().http_threads, 3);
        for bad in ["257", "1.5", "many"] {
            let e = load("", &["--http-threads", bad]).unwrap_err();
            assert!(format!("{e:#}").contains("--http-threads"), "{bad}: {e:#}");
        }
    }

    #[test]
    fn the_sandbox_allows_private_webhooks_unless_the_file_says_otherwise() {
        let s = load("", &["--sandbox", "--time-scale", "60"]).unwrap();
        assert!(s.webhooks.allow_private);
        assert_eq!(s.time_scale(), 60.0);
        let s = load("[webhooks]\nallow_private = false\n", &["--sandbox"]).unwrap();
        assert!(!s.webhooks.allow_private);
    }

    #[test]
    fn a_bad_value_is_named_by_its_key_and_the_file_by_its_path() {
        let e = load("[cache]\ntoken_ttl_seconds = -1\n", &[]).unwrap_err();
        assert!(
            format!("{e:#}").contains("[cache] token_ttl_seconds"),
            "{e:#}"
        );
        let e = load("listen = 5\n", &[]).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("tokenwarden.toml"), "{text}");
        assert!(text.contains("line 1"), "{text}");
        let e = load("", &["--sandbox", "--time-scale", "0.5"]).unwrap_err();
        assert!(e.to_string().contains("--time-scale"), "{e}");
    }
}
