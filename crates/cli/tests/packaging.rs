//! What people expect around a daemon (issue 15, item 5): a licence file that matches
//! `Cargo.toml`, no made-up repository URL, shell completions and manual pages generated from the
//! CLI, and a `deploy/` folder whose systemd unit passes `systemd-analyze verify` and whose
//! production configuration `config check` accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn tokenwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `[workspace.package]`'s value of `key`, if set.
fn workspace_package(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["workspace"]["package"]
        .get(key)
        .map(|v| v.as_str().unwrap().to_string())
}

#[test]
fn the_licence_files_match_the_licence_field_and_no_repository_is_made_up() {
    let license = workspace_package("license").expect("Cargo.toml names a licence");
    // The SPDX ids this project could use, with a line only their standard text has.
    let known = [
        (
            "Apache-2.0",
            "Apache License\n                           Version 2.0, January 2004",
        ),
        ("MIT", "Permission is hereby granted, free of charge"),
    ];
    let ids: Vec<&str> = license.split(" OR ").map(str::trim).collect();
    for id in &ids {
        let (_, marker) = known
            .iter()
            .find(|(k, _)| k == id)
            .unwrap_or_else(|| panic!("no standard text known for licence {id}"));
        // One licence: LICENSE; a choice: LICENSE-APACHE, LICENSE-MIT (the Rust convention).
        let file = if ids.len() == 1 {
            "LICENSE".to_string()
        } else {
            format!("LICENSE-{}", id.split('-').next().unwrap().to_uppercase())
        };
        let text = std::fs::read_to_string(repo().join(&file))
            .unwrap_or_else(|e| panic!("{file} for {id}: {e}"));
        assert!(text.contains(marker), "{file} is not the {id} text");
    }
    if ids.len() == 1 {
        assert!(!repo().join("LICENSE-MIT").exists() && !repo().join("LICENSE-APACHE").exists());
    }
    if let Some(url) = workspace_package("repository") {
        let host = url::Url::parse(&url)
            .unwrap()
            .host_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !host.ends_with(".invalid") && !host.starts_with("example."),
            "repository = {url:?} is a placeholder: give the real one or none"
        );
    }
}

#[test]
fn completions_cover_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = tokenwarden(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["serve", "connections", "api-keys", "webhooks", "deliveries"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    if on_path("bash") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokenwarden.bash");
        std::fs::write(&file, tokenwarden(&["completions", "bash"]).stdout).unwrap();
        let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
        assert!(
            check.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let out = tokenwarden(&["completions", "tcsh"]);
    assert!(!out.status.success(), "an unknown shell is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn man_prints_the_page_and_writes_one_per_command() {
    let out = tokenwarden(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH tokenwarden 1"));
    assert!(page.contains("api\\-keys") && page.contains("webhooks"));

    let dir = tempfile::tempdir().unwrap();
    let out = tokenwarden(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    for page in [
        "tokenwarden.1",
        "tokenwarden-serve.1",
        "tokenwarden-webhooks-deliveries.1",
        "tokenwarden-api-keys-revoke.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
}

/// The lines of the unit that set `key`, as written.
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_agrees_with_the_configuration() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/tokenwarden.service")).unwrap();
    let config = std::fs::read_to_string(repo().join("deploy/tokenwarden.toml")).unwrap();
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("UMask", "0077"),
        ("StateDirectoryMode", "0700"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(settings(&unit, key), [want], "{key}");
    }
    // The data directory is the state directory systemd makes and keeps.
    let state = settings(&unit, "StateDirectory");
    assert_eq!(state.len(), 1);
    let config: toml::Table = config.parse().unwrap();
    assert_eq!(
        config["data_dir"].as_str(),
        Some(format!("/var/lib/{}", state[0]).as_str())
    );
    // Every secret file the configuration reads is a credential the unit loads.
    let loaded: Vec<&str> = settings(&unit, "LoadCredential")
        .into_iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    let text = toml::to_string(&config).unwrap();
    let mut read = 0;
    for part in text.split("/run/credentials/tokenwarden.service/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            loaded.contains(&name),
            "the configuration reads credential {name}, the unit does not load it"
        );
        read += 1;
    }
    assert_eq!(
        read,
        loaded.len(),
        "the unit loads no credential nobody reads"
    );
    let exec = settings(&unit, "ExecStart");
    assert_eq!(
        exec,
        ["/usr/local/bin/tokenwarden serve --config /etc/tokenwarden/tokenwarden.toml"]
    );

    if !on_path("systemd-analyze") {
        eprintln!(
            "SKIPPED the systemd-analyze verify check: systemd-analyze is not installed here (the unit's settings were checked above)"
        );
        return;
    }
    // Verify a copy that starts the binary just built (verify wants ExecStart to exist) and finds
    // the manual page its Documentation= names.
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    assert!(
        tokenwarden(&["man", "--dir", man1.to_str().unwrap()])
            .status
            .success()
    );
    let mut copy = unit.replace(
        "/usr/local/bin/tokenwarden",
        env!("CARGO_BIN_EXE_tokenwarden"),
    );
    if !on_path("man") {
        eprintln!("man is not installed here: Documentation= is left out of the verified copy");
        copy = copy
            .lines()
            .filter(|l| !l.starts_with("Documentation="))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let file = dir.path().join("tokenwarden.service");
    std::fs::write(&file, copy).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Unknown keys and bad values are only warnings to verify; none is allowed here.
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
fn config_check_accepts_the_production_configuration() {
    let text = std::fs::read_to_string(repo().join("deploy/tokenwarden.toml")).unwrap();
    // As shipped, the secrets are credentials systemd provides; without them the check says which.
    let shipped = repo().join("deploy/tokenwarden.toml");
    let out = tokenwarden(&["config", "check", shipped.to_str().unwrap()]);
    if !Path::new("/run/credentials/tokenwarden.service").exists() {
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("snapchat-client-secret"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // With the credentials in place (here: a directory of our own), it is valid.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    for name in [
        "snapchat-client-secret",
        "tiktok-business-secret",
        "dashboard-password",
    ] {
        std::fs::write(creds.join(name), "a-secret-for-the-check-only\n").unwrap();
    }
    let file = dir.path().join("tokenwarden.toml");
    std::fs::write(
        &file,
        text.replace(
            "/run/credentials/tokenwarden.service/",
            &format!("{}/", creds.display()),
        ),
    )
    .unwrap();
    let out = tokenwarden(&["config", "check", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("valid (2 app(s)"), "{said}");
    assert!(!said.contains("a-secret-for-the-check-only"));
}
