//! `tokenwarden completions SHELL` and `tokenwarden man`: shell completions and manual pages,
//! generated from the same command definition the parser uses, so they cannot drift from it.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::ExitCode;

/// Prints the completion script for `shell` of the command `cmd` on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<ExitCode> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Prints `tokenwarden(1)` on stdout, or, with `dir`, writes one page per command into it
/// (`tokenwarden.1`, `tokenwarden-serve.1`, …) and names them on stderr.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<ExitCode> {
    match dir {
        None => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
            // `tokenwarden man | head` closes the pipe early; that is not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.context("cannot write the manual page")?,
        },
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tokenwarden") && n.ends_with(".1"))
                .collect();
            pages.sort();
            eprintln!(
                "Wrote {} manual pages into {} (man -l {}/tokenwarden.1).",
                pages.len(),
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
