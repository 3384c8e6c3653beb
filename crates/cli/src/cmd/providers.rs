//! `tokenwarden providers`: the platform definitions.

use crate::definitions;
use crate::term::{self, Style};
use anyhow::{Context as _, Result, anyhow};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokenwarden_core::provider::{Provider, Registry};
use tokenwarden_core::span;

/// List the platforms with their refresh style and lifetimes, show one definition, or validate
/// a definition of your own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// List every platform (the default).
    List,
    /// Print one definition as TOML.
    Show {
        /// The provider id, e.g. snapchat.
        id: String,
    },
    /// Check a definition file and explain every problem in it.
    Validate {
        /// The TOML file; its name (without .toml) must equal its id.
        file: PathBuf,
    },
}

#[derive(Debug, serde::Serialize)]
struct Summary<'a> {
    id: &'a str,
    name: &'a str,
    refresh_style: &'a str,
    can_refresh: bool,
    token_lifetime: String,
    refresh_token_lifetime: String,
    refresh_margin: String,
    source: &'a str,
}

fn summary(p: &Provider) -> Summary<'_> {
    let r = &p.spec.refresh;
    let life = if r.token_expires {
        r.default_lifetime
            .map(span::format)
            .unwrap_or_else(|| "?".into())
    } else {
        "until revoked".into()
    };
    let rt = match (r.style.can_refresh(), r.refresh_token_lifetime) {
        (false, _) => "-".to_string(),
        (true, Some(d)) => span::format(d),
        (true, None) if r.style == tokenwarden_core::provider::RefreshStyle::SelfRefresh => {
            "(self)".into()
        }
        (true, None) => "long-lived".into(),
    };
    Summary {
        id: p.spec.id.as_str(),
        name: &p.spec.name,
        refresh_style: r.style.describe(),
        can_refresh: r.style.can_refresh(),
        token_lifetime: life,
        refresh_token_lifetime: rt,
        refresh_margin: if r.style.can_refresh() {
            span::format(r.margin)
        } else {
            "-".into()
        },
        source: &p.source,
    }
}

/// Runs the command.
pub fn run(args: Args, providers_dir: Option<&Path>) -> Result<ExitCode> {
    match args.command.unwrap_or(Sub::List) {
        Sub::List => {
            let reg = definitions::load(providers_dir)?;
            list(&reg, args.json)
        }
        Sub::Show { id } => {
            let reg = definitions::load(providers_dir)?;
            let p = reg
                .get(&id)
                .ok_or_else(|| anyhow!("unknown provider {id:?}; known: {}", reg.ids()))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&p.spec)?);
            } else {
                println!("# {} ({})", p.spec.name, p.source);
                print!("{}", p.text);
            }
            Ok(ExitCode::SUCCESS)
        }
        Sub::Validate { file } => validate(&file, args.json),
    }
}

fn list(reg: &Registry, json: bool) -> Result<ExitCode> {
    let rows: Vec<Summary<'_>> = reg.iter().map(|p| summary(p)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let colour = term::stdout_colour();
    let header = [
        "ID",
        "NAME",
        "REFRESH",
        "TOKEN LIFETIME",
        "REFRESH TOKEN",
        "MARGIN",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.name.to_string(),
                r.refresh_style.to_string(),
                r.token_lifetime.clone(),
                r.refresh_token_lifetime.clone(),
                r.refresh_margin.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        row.iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let head: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    println!("{}", term::paint(Style::Heading, &line(&head), colour));
    for row in &cells {
        println!("{}", line(row));
    }
    println!(
        "\n{}",
        term::paint(
            Style::Dim,
            "Lifetimes are the fallbacks used when a token response omits expires_in. `tokenwarden providers show ID` prints a definition.",
            colour
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(file: &Path, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let source = file.display().to_string();
    // Syntax and type problems first, all of them with their lines (the definition's own checks
    // need a file that reads).
    let unreadable = crate::toml_check::problems::<tokenwarden_core::provider::ProviderSpec>(&text);
    if !unreadable.is_empty() {
        if json {
            let list: Vec<_> = unreadable
                .iter()
                .map(|p| serde_json::json!({"file": source, "line": p.line, "key": "", "problem": p.message}))
                .collect();
            println!("{}", serde_json::json!({"valid": false, "problems": list}));
        } else {
            let colour = term::stderr_colour();
            eprintln!(
                "{} {} problem(s):",
                term::paint(Style::Error, "invalid:", colour),
                unreadable.len()
            );
            for p in &unreadable {
                eprintln!("  {source}:{p}");
            }
        }
        return Ok(ExitCode::from(1));
    }
    match Registry::check_allowing(&source, &text, definitions::endpoints(None)?) {
        Ok(p) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "id": p.spec.id.as_str(), "problems": []})
                );
            } else {
                println!(
                    "{}: valid ({}, {} error rules)",
                    source,
                    p.spec.name,
                    p.spec.errors.rules.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            if json {
                let list: Vec<_> = problems
                    .iter()
                    .map(
                        |p| serde_json::json!({"file": p.file, "key": p.key, "problem": p.problem}),
                    )
                    .collect();
                println!("{}", serde_json::json!({"valid": false, "problems": list}));
            } else {
                let colour = term::stderr_colour();
                eprintln!(
                    "{} {} problem(s):",
                    term::paint(Style::Error, "invalid:", colour),
                    problems.len()
                );
                for p in &problems {
                    eprintln!("  {p}");
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}
