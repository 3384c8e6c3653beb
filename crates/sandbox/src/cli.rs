//! `tokenwarden sandbox`: [`SandboxArgs`] and [`run`].

use crate::Sandbox;
use crate::config::SandboxConfig;
use crate::provider::Provider;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::{Clock as _, ScaledClock};

/// Options of `tokenwarden sandbox`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Demo apps: client id demo-<provider>, secret demo-<provider>-secret; their tokens belong to production.\n\
TikTok API for Business also has its sandbox host (sandbox-ads.tiktok.com) under /tiktok-business/sandbox/. For a token of the\n\
sandbox environment, authorize and exchange with the app demo-tiktok-business-sandbox (secret demo-tiktok-business-sandbox-secret),\n\
or register one with POST /_sandbox/apps {\"provider\":\"tiktok-business\",\"environment\":\"sandbox\",...}. Such a token works\n\
only under /tiktok-business/sandbox/open_api/v1.3/; on the production host it gets 40105 in HTTP 200, like any unknown token\n\
(and the reverse for a production token); GET /_sandbox/counters counts these as wrong_environment_sent."
)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: std::net::SocketAddr,
    /// Run the sandbox clock this many times faster than real time (3600 = an hour per second).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Lifetime of a platform's first access token, e.g. `snapchat=2m` (repeatable).
    #[arg(long = "lifetime", value_name = "PROVIDER=SPAN", value_parser = provider_span)]
    pub lifetimes: Vec<(Provider, Duration)>,
    /// Lifetime of Threads/Meta long-lived tokens, e.g. `meta=1h` (repeatable).
    #[arg(long = "long-lifetime", value_name = "PROVIDER=SPAN", value_parser = provider_span)]
    pub long_lifetimes: Vec<(Provider, Duration)>,
    /// Turn refresh-token rotation off for every platform (TikTok Login Kit rotates by default).
    #[arg(long)]
    pub no_rotation: bool,
    /// Turn refresh-token rotation on for every platform.
    #[arg(long, conflicts_with = "no_rotation")]
    pub rotation: bool,
    /// How long a rotated-out refresh token is still accepted.
    #[arg(long, default_value = "0s", value_parser = span)]
    pub reuse_grace: Duration,
    /// A redirect URI registered on every demo app (repeatable).
    #[arg(
        long = "redirect-uri",
        default_value = "http://127.0.0.1:8080/callback"
    )]
    pub redirect_uris: Vec<String>,
    /// Do not enforce the platforms' rate limits (throttle faults still apply).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// How long asynchronous jobs (reports, publishing) stay pending, in sandbox time.
    #[arg(long, default_value = "30s", value_parser = span)]
    pub async_job: Duration,
}

fn span(s: &str) -> Result<Duration, String> {
    tokenwarden_core::span::parse(s).map_err(|e| e.to_string())
}

fn provider_span(s: &str) -> Result<(Provider, Duration), String> {
    let (p, d) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write PROVIDER=SPAN, e.g. snapchat=2m"))?;
    let p = Provider::parse(p).ok_or_else(|| {
        let ids: Vec<&str> = Provider::ALL.into_iter().map(Provider::id).collect();
        format!("unknown provider {p:?}; one of {}", ids.join(", "))
    })?;
    Ok((p, span(d)?))
}

impl SandboxArgs {
    /// The configuration these options describe.
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            time_scale: self.time_scale,
            access_lifetimes: self.lifetimes.iter().copied().collect(),
            long_lived_lifetimes: self.long_lifetimes.iter().copied().collect(),
            demo_redirect_uris: self.redirect_uris.clone(),
            rotate_refresh_tokens: if self.no_rotation {
                Some(false)
            } else if self.rotation {
                Some(true)
            } else {
                None
            },
            refresh_reuse_grace: self.reuse_grace,
            enforce_rate_limits: !self.no_rate_limits,
            async_job_duration: self.async_job,
            ..SandboxConfig::default()
        }
    }
}

/// Binds, prints how to use the sandbox, and serves until Ctrl-C.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let config = args.config();
    let clock = ScaledClock::new(
        tokenwarden_core::clock::SystemClock.now(),
        config.time_scale,
    );
    let sandbox = Sandbox::new(config.clone(), Arc::new(clock));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    print!("{}", banner(&base, &config));
    sandbox
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the sandbox")
}

/// What `run` prints: base URL, prefixes, demo apps and example commands.
pub fn banner(base: &str, config: &SandboxConfig) -> String {
    let redirect = config
        .demo_redirect_uris
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/callback".into());
    let mut out = format!(
        "tokenwarden sandbox listening on {base} (time scale ×{})\n\nPlatforms (replace https://<host> of every platform URL with the prefix):\n",
        config.time_scale
    );
    for p in Provider::ALL {
        out.push_str(&format!(
            "  {:<16} {base}/{}   authorize: {base}/{}{}\n",
            p.id(),
            p.id(),
            p.id(),
            p.authorize_path()
        ));
        if let Some(host) = p.sandbox_host() {
            out.push_str(&format!(
                "  {:<16} {base}/{}{}   (its sandbox host, https://{host}: only sandbox apps' tokens work there)\n",
                "",
                p.id(),
                tokenwarden_core::provider::SANDBOX_HOST_PREFIX,
            ));
        }
    }
    out.push_str("\nDemo apps (client id / secret), redirect URIs:");
    for uri in &config.demo_redirect_uris {
        out.push_str(&format!(" {uri}"));
    }
    out.push('\n');
    for a in &config.apps {
        out.push_str(&format!(
            "  {:<16} {} / {}  ({}, {} tokens)\n",
            a.provider.id(),
            a.client_id,
            a.client_secret,
            a.name,
            a.environment.as_str()
        ));
        if let Some(token) = a.provider.developer_token() {
            out.push_str(&format!(
                "  {:<16} developer token {token} (every API call needs it)\n",
                ""
            ));
        }
    }
    out.push_str(&format!(
        "\nApprove without a browser (302 to the redirect URI with ?code=…&state=…):\n  \
curl -si -X POST {base}/snapchat/login/oauth2/authorize -d client_id=demo-snapchat \\\n    \
-d redirect_uri={redirect} -d response_type=code -d scope=snapchat-marketing-api \\\n    \
-d state=xyz -d decision=approve -d account=test-user\n\
Exchange the code:\n  \
curl -s {base}/snapchat/login/oauth2/access_token -d grant_type=authorization_code \\\n    \
-d client_id=demo-snapchat -d client_secret=demo-snapchat-secret -d code=CODE -d redirect_uri={redirect}\n\
Break things:\n  \
curl -s {base}/_sandbox/grants                                   # list grants\n  \
curl -s -X POST {base}/_sandbox/grants/GRANT_ID/revoke           # revoke a grant\n  \
curl -s -X POST {base}/_sandbox/grants/GRANT_ID/expire           # expire its tokens now\n  \
curl -s -X POST {base}/_sandbox/faults/snapchat/throttle -H 'content-type: application/json' -d '{{\"next\":5}}'\n  \
curl -s -X POST {base}/_sandbox/faults/meta/outage -H 'content-type: application/json' -d '{{\"for\":\"5m\",\"mode\":\"html\",\"status\":502}}'\n  \
curl -s {base}/_sandbox/counters\n\nCtrl-C to stop.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    #[test]
    fn options_become_the_configuration() {
        let cli = Cli::try_parse_from([
            "sandbox",
            "--time-scale",
            "3600",
            "--lifetime",
            "snapchat=2m",
            "--lifetime",
            "tiktok=90s",
            "--long-lifetime",
            "meta=1h",
            "--no-rotation",
            "--redirect-uri",
            "http://localhost:3000/cb",
        ])
        .unwrap();
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:8181");
        let c = cli.args.config();
        assert_eq!(c.time_scale, 3600.0);
        assert_eq!(
            c.access_lifetimes[&Provider::Snapchat],
            Duration::from_secs(120)
        );
        assert_eq!(
            c.access_lifetimes[&Provider::Tiktok],
            Duration::from_secs(90)
        );
        assert_eq!(
            c.long_lived_lifetimes[&Provider::Meta],
            Duration::from_secs(3600)
        );
        assert_eq!(c.rotate_refresh_tokens, Some(false));
        assert_eq!(
            c.demo_redirect_uris,
            vec!["http://localhost:3000/cb".to_string()]
        );
        // One demo app per platform, and a sandbox-environment one for each with a sandbox host
        // (TikTok Business, Pinterest, X Ads, Microsoft Advertising).
        let hosts = Provider::ALL
            .iter()
            .filter(|p| p.sandbox_host().is_some())
            .count();
        assert_eq!(hosts, 4);
        assert_eq!(c.apps.len(), Provider::ALL.len() + hosts);
        assert!(Cli::try_parse_from(["sandbox", "--lifetime", "myspace=1m"]).is_err());
        assert!(Cli::try_parse_from(["sandbox", "--lifetime", "snapchat"]).is_err());
    }

    #[test]
    fn the_help_says_how_to_get_a_sandbox_environment_token() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("demo-tiktok-business-sandbox"), "{help}");
        assert!(
            help.contains("/tiktok-business/sandbox/open_api/v1.3/"),
            "{help}"
        );
        assert!(help.contains("\"environment\":\"sandbox\""), "{help}");
    }

    #[test]
    fn the_banner_names_every_prefix_demo_app_and_the_scripted_approval() {
        let c = SandboxConfig {
            demo_redirect_uris: vec!["http://127.0.0.1:8080/callback".into()],
            ..SandboxConfig::default()
        };
        let b = banner("http://127.0.0.1:8181", &c);
        for p in Provider::ALL {
            assert!(b.contains(&format!("http://127.0.0.1:8181/{}", p.id())));
            assert!(b.contains(&format!("demo-{} / demo-{}-secret", p.id(), p.id())));
            if let Some(token) = p.developer_token() {
                assert!(b.contains(&format!("developer token {token}")), "{b}");
            }
        }
        assert!(b.contains(
            "demo-tiktok-business-sandbox / demo-tiktok-business-sandbox-secret  (Demo app (sandbox), sandbox tokens)"
        ));
        assert!(b.contains("http://127.0.0.1:8181/tiktok-business/sandbox "));
        assert!(b.contains("decision=approve"));
        assert!(b.contains("/_sandbox/grants/GRANT_ID/revoke"));
        assert!(b.contains("/_sandbox/faults/snapchat/throttle"));
    }
}
