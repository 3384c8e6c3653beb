//! `tokenwarden`: keeps OAuth connections to ad and social platforms alive, and explains in plain
//! words what is wrong when they break.
//!
//! This binary wires configuration to the pieces: [`cmd::diagnose`] (the classifier on a pasted
//! response), [`cmd::providers`] (the platform definitions), `sandbox` (the platform emulator).
#![forbid(unsafe_code)]

mod cmd;
mod config;
mod data_dir;
mod definitions;
mod settings;
mod term;
mod toml_check;

use clap::{CommandFactory as _, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps OAuth connections to ad and social platforms (Snapchat, TikTok, Threads, Meta) alive,
/// and explains in plain words what is wrong when they break.
#[derive(Debug, Parser)]
#[command(name = "tokenwarden", version, propagate_version = true)]
#[command(
    after_help = "Start here:\n  tokenwarden serve --sandbox                    the daemon, with the platforms emulated locally\n  tokenwarden providers                          the platforms and how their tokens live\n  tokenwarden diagnose --provider tiktok-business < response.txt\n                                                 what a failed call means and how to fix it\n  tokenwarden sandbox                            a local emulator of the platforms"
)]
struct Cli {
    /// A directory of your own provider definitions (`*.toml`); a file whose id matches a shipped
    /// definition replaces it.
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_PROVIDERS_DIR",
        value_name = "DIR"
    )]
    providers_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain an API or token-endpoint response: what happened, why, and the fix.
    Diagnose(cmd::diagnose::Args),
    /// List the platform definitions, show one, or validate your own.
    Providers(cmd::providers::Args),
    /// Run the daemon: connect accounts, keep their tokens fresh, serve them over an API.
    Serve(cmd::serve::Args),
    /// List, show, refresh or delete the connections of a running daemon.
    Connections(cmd::remote::ConnectionsArgs),
    /// Make a single-use link that connects (or re-authorizes) an account of a platform (asks the
    /// running daemon for a connect session; needs an admin API key).
    Connect(cmd::remote::ConnectArgs),
    /// Print a fresh access token of a connection, from a running daemon.
    Token(cmd::remote::TokenArgs),
    /// The configuration file: `config example` prints a commented one.
    Config(ConfigArgs),
    /// Manage the master keys that encrypt tokens at rest (rotate while the daemon serves).
    Keys(cmd::keys::Args),
    /// List, create or revoke the API keys of a running daemon (`keys` is the master keyring).
    ApiKeys(cmd::api_keys::Args),
    /// List, add or remove the webhook endpoints of a running daemon, and read their deliveries.
    Webhooks(cmd::webhooks::Args),
    /// Run the local platform emulator (OAuth, APIs, fault injection, accelerated time).
    #[cfg(feature = "sandbox")]
    Sandbox(tokenwarden_sandbox::SandboxArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `tokenwarden completions bash > /etc/bash_completion.d/tokenwarden`, or
    /// `tokenwarden completions zsh > ~/.zfunc/_tokenwarden` with `~/.zfunc` on `fpath`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or write one page per command into a directory.
    ///
    /// Read it with `tokenwarden man | man -l -`; install them with
    /// `tokenwarden man --dir /usr/local/share/man/man1`.
    Man {
        /// Write `tokenwarden.1`, `tokenwarden-serve.1`, … into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigSub,
}

#[derive(Debug, Subcommand)]
enum ConfigSub {
    /// Print a commented example configuration file.
    Example,
    /// Check a configuration file: unknown keys, unknown providers, unreadable secret files, bad
    /// durations.
    Check {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Diagnose(args) => cmd::diagnose::run(args, cli.providers_dir.as_deref()),
        Command::Providers(args) => cmd::providers::run(args, cli.providers_dir.as_deref()),
        Command::Keys(args) => cmd::keys::run(args),
        Command::ApiKeys(args) => cmd::api_keys::run(args),
        Command::Webhooks(args) => cmd::webhooks::run(args),
        Command::Completions { shell } => cmd::manual::completions(Cli::command(), shell),
        Command::Man { dir } => cmd::manual::man(Cli::command(), dir.as_deref()),
        Command::Config(ConfigArgs {
            command: ConfigSub::Example,
        }) => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigArgs {
            command: ConfigSub::Check { file },
        }) => config::check_syntax(&file)
            .and_then(|()| config::FileConfig::load(&file))
            .and_then(|c| {
                let registry = definitions::load_allowing(
                    cli.providers_dir.as_deref(),
                    definitions::endpoints(c.allow_insecure_endpoints)?,
                )?;
                let public = c.public_url.clone().unwrap_or_else(|| {
                    url::Url::parse("http://127.0.0.1:8080/").expect("a literal URL")
                });
                let apps = c.resolve_apps(&registry, &public)?;
                c.dashboard.password()?;
                c.cache.resolve()?;
                c.proxy.resolve(None, None)?;
                if let Some(a) = &c.alerts {
                    tokenwarden_server::alerts::SlackWebhook::new(&a.webhook_url()?)
                        .map_err(|e| anyhow::anyhow!("[alerts]: {e}"))?;
                }
                let kept = |keep: Option<std::time::Duration>| {
                    keep.map_or_else(|| "forever".to_string(), tokenwarden_core::span::format)
                };
                let retention = c.retention.resolve(None, None)?;
                println!(
                    "{}: valid ({} app(s); events kept {}, webhook deliveries {})",
                    file.display(),
                    apps.len(),
                    kept(retention.events),
                    kept(retention.deliveries)
                );
                Ok(ExitCode::SUCCESS)
            }),
        Command::Connections(args) => cmd::remote::connections(args),
        Command::Token(args) => cmd::remote::token(args),
        Command::Connect(args) => definitions::load(cli.providers_dir.as_deref())
            .and_then(|r| cmd::remote::connect(args, &r)),
        Command::Serve(args) => cmd::serve::run(args, cli.providers_dir.as_deref()),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(tokenwarden_sandbox::run(args)))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "{}: {e:#}",
                term::paint(term::Style::Error, "error", term::stderr_colour())
            );
            ExitCode::from(1)
        }
    }
}
