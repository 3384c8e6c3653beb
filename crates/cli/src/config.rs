//! The configuration file: optional; `TOKENWARDEN_*` environment variables and flags override it.
//! Unknown keys are refused with their name, and secrets can come from files.

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokenwarden_core::connection::Environment;
use tokenwarden_core::provider::Registry;
use tokenwarden_core::secret::Secret;

/// The commented example `tokenwarden config example` prints.
pub const EXAMPLE: &str = r#"# tokenwarden configuration. Every key is optional; TOKENWARDEN_* environment variables and
# command-line flags override what is here.

# Where the daemon listens, and the URL people use to reach it (callback and re-authorization
# links are built from it).
listen = "127.0.0.1:8080"
public_url = "https://tokens.example.com"

# The embedded database, the master key file and the admin key file live here.
data_dir = "tokenwarden-data"

# SQLite in data_dir by default. For several replicas, share one PostgreSQL:
# database = "postgres://tokenwarden@db.internal/tokenwarden"

# Your own provider definitions (*.toml); a file with a shipped id replaces it.
# providers_dir = "/etc/tokenwarden/providers"

# Webhook endpoints are added with `POST /v1/webhooks`. They must be https URLs on public
# addresses; allow http and private addresses (a receiver on this host or your network) with:
# [webhooks]
# allow_private = true

# One [[apps]] per OAuth app (client) registered with a platform. Several per platform are fine;
# /connect/{provider}?app=ID picks one (the first is the default).
[[apps]]
provider = "snapchat"
id = "main"
client_id = "your-snapchat-client-id"
# The secret inline, or (better) from a file only the daemon can read:
client_secret_file = "/run/secrets/snapchat-client-secret"
# Default: {public_url}/callback/{provider}. It must equal the one registered with the platform.
# redirect_uri = "https://tokens.example.com/callback/snapchat"

[[apps]]
provider = "tiktok-business"
id = "main"
client_id = "your-tiktok-app-id"
client_secret = "your-tiktok-app-secret"

# A developer app whose advertisers live in TikTok's sandbox: its tokens only work on the sandbox
# host (sandbox-ads.tiktok.com), which tokenwarden then calls for them. Default: "production".
[[apps]]
provider = "tiktok-business"
id = "sandbox"
client_id = "your-tiktok-sandbox-app-id"
client_secret_file = "/run/secrets/tiktok-sandbox-secret"
environment = "sandbox"
"#;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Public URL.
    pub public_url: Option<url::Url>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Database URL.
    pub database: Option<String>,
    /// User provider definitions.
    pub providers_dir: Option<PathBuf>,
    /// OAuth apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Webhook delivery.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
}

/// `[webhooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow `http` URLs and private, loopback and link-local addresses (default: only with
    /// `--sandbox`).
    pub allow_private: Option<bool>,
}

/// One app.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Provider id.
    pub provider: String,
    /// Our id for the app.
    #[serde(default = "default_app_id")]
    pub id: String,
    /// The platform's client id.
    pub client_id: String,
    /// The secret, inline.
    pub client_secret: Option<Secret>,
    /// Or a file holding it.
    pub client_secret_file: Option<PathBuf>,
    /// The redirect URI registered with the platform.
    pub redirect_uri: Option<String>,
    /// `production` (default) or `sandbox`: which of the platform's environments the app's
    /// tokens belong to.
    pub environment: Option<String>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn default_app_id() -> String {
    "main".into()
}

/// A validated app, ready to register.
#[derive(Debug)]
pub struct ResolvedApp {
    /// Provider id.
    pub provider: String,
    /// App id.
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Redirect URI.
    pub redirect_uri: String,
    /// Environment.
    pub environment: Environment,
}

impl FileConfig {
    /// Reads and parses `path`; errors name the file and the offending key.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        FileConfig::parse(&text)
            .with_context(|| format!("in the configuration file {}", path.display()))
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))
    }

    /// Checks every app against the loaded providers and reads secrets from files.
    pub fn resolve_apps(
        &self,
        providers: &Registry,
        public_url: &url::Url,
    ) -> Result<Vec<ResolvedApp>> {
        let mut out: Vec<ResolvedApp> = Vec::new();
        for (i, a) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}] ({} {})", a.provider, a.id);
            if providers.get(&a.provider).is_none() {
                bail!(
                    "{at}: unknown provider {:?}; known: {}",
                    a.provider,
                    providers.ids()
                );
            }
            if a.client_id.trim().is_empty() {
                bail!("{at}: client_id is empty");
            }
            let secret = match (&a.client_secret, &a.client_secret_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(f).with_context(|| {
                        format!("{at}: cannot read client_secret_file {}", f.display())
                    })?;
                    Secret::new(text.trim().to_string())
                }
                (Some(_), Some(_)) => {
                    bail!("{at}: give client_secret or client_secret_file, not both")
                }
                (None, None) => bail!("{at}: client_secret or client_secret_file is required"),
            };
            if secret.is_empty() {
                bail!("{at}: the client secret is empty");
            }
            if out.iter().any(|o| o.provider == a.provider && o.id == a.id) {
                bail!("{at}: a second app with the same provider and id");
            }
            let environment = match a.environment.as_deref() {
                None | Some("production") => Environment::Production,
                Some("sandbox") => Environment::Sandbox,
                Some(other) => {
                    bail!("{at}: environment must be \"production\" or \"sandbox\", not {other:?}")
                }
            };
            if environment == Environment::Sandbox
                && providers
                    .get(&a.provider)
                    .is_some_and(|p| p.spec.api.sandbox_base_url.is_none())
            {
                bail!(
                    "{at}: {} has no sandbox host in its definition (api.sandbox_base_url); use environment = \"production\"",
                    a.provider
                );
            }
            let base = public_url.as_str().trim_end_matches('/');
            out.push(ResolvedApp {
                provider: a.provider.clone(),
                id: a.id.clone(),
                client_id: a.client_id.trim().to_string(),
                client_secret: secret,
                redirect_uri: a
                    .redirect_uri
                    .clone()
                    .unwrap_or_else(|| format!("{base}/callback/{}", a.provider)),
                environment,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let c = FileConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.apps.len(), 3);
        assert_eq!(c.listen.unwrap().port(), 8080);
    }

    #[test]
    fn an_app_names_its_environment() {
        let providers = Registry::builtin().unwrap();
        let public = url::Url::parse("https://tw.example").unwrap();
        let app = |provider: &str, env: &str| {
            FileConfig::parse(&format!(
                "[[apps]]\nprovider = {provider:?}\nclient_id = \"x\"\nclient_secret = \"y\"\nenvironment = {env:?}\n"
            ))
            .unwrap()
            .resolve_apps(&providers, &public)
        };
        assert_eq!(
            app("tiktok-business", "sandbox").unwrap()[0].environment,
            Environment::Sandbox
        );
        let e = app("snapchat", "sandbox").unwrap_err().to_string();
        assert!(e.contains("no sandbox host"), "{e}");
        let e = app("tiktok-business", "staging").unwrap_err().to_string();
        assert!(e.contains("\"staging\""), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = FileConfig::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = FileConfig::parse(
            "[[apps]]\nprovider = \"snapchat\"\nclient_id = \"x\"\nsecret = \"y\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn apps_resolve_with_secrets_from_files_and_clear_errors() {
        let reg = Registry::builtin().unwrap();
        let public = url::Url::parse("https://t.example.com/").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = format!(
            "[[apps]]\nprovider = \"snapchat\"\nclient_id = \"c\"\nclient_secret_file = {:?}\n",
            f.display().to_string()
        );
        let apps = FileConfig::parse(&text)
            .unwrap()
            .resolve_apps(&reg, &public)
            .unwrap();
        assert_eq!(apps[0].client_secret.expose(), "from-file");
        assert_eq!(
            apps[0].redirect_uri,
            "https://t.example.com/callback/snapchat"
        );
        assert!(!format!("{:?}", FileConfig::parse(&text).unwrap()).contains("from-file"));

        let bad = FileConfig::parse(
            "[[apps]]\nprovider = \"myspace\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        assert!(
            bad.resolve_apps(&reg, &public)
                .unwrap_err()
                .to_string()
                .contains("unknown provider")
        );
        let none = FileConfig::parse("[[apps]]\nprovider = \"meta\"\nclient_id = \"c\"\n").unwrap();
        assert!(
            none.resolve_apps(&reg, &public)
                .unwrap_err()
                .to_string()
                .contains("required")
        );
        let inline = FileConfig::parse(
            "[[apps]]\nprovider = \"meta\"\nclient_id = \"c\"\nclient_secret = \"shh-inline\"\n",
        )
        .unwrap();
        assert!(
            !format!("{inline:?}").contains("shh-inline"),
            "Debug never shows a secret"
        );
    }
}
