//! `docs/platforms/<provider>.md` (issue 15, item 6): one page per shipped platform, naming the
//! redirect URI tokenwarden really uses, the scopes its definition requests, its sources, and only
//! error codes that the definition recognises (so `tokenwarden diagnose` explains each one the page
//! tells people to look for).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// The shipped definitions: (id, TOML text).
fn definitions() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo().join("providers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let id = text.parse::<toml::Table>().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            (id, text)
        })
        .collect();
    out.sort();
    out
}

/// The backticked words in the first column of the "error that says you skipped a step" table.
fn codes_in_error_table(page: &str) -> Vec<String> {
    let section = page
        .split("## The error that says you skipped a step")
        .nth(1)
        .expect("the page has the error section");
    let section = section.split("\n## ").next().unwrap();
    let mut codes = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                codes.push(part.to_string());
            }
        }
    }
    codes
}

#[test]
fn every_platform_has_a_page_that_matches_its_definition() {
    let index = std::fs::read_to_string(repo().join("docs/platforms/README.md")).unwrap();
    let common = std::fs::read_to_string(repo().join("providers/_common.toml")).unwrap();
    let defs = definitions();
    assert_eq!(
        defs.len(),
        13,
        "{:?}",
        defs.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    for (id, text) in &defs {
        let page = std::fs::read_to_string(repo().join(format!("docs/platforms/{id}.md")))
            .unwrap_or_else(|e| panic!("docs/platforms/{id}.md: {e}"));
        assert!(
            index.contains(&format!("]({id}.md)")),
            "the index links {id}"
        );
        assert!(
            page.contains(&format!("`{{public_url}}/callback/{id}`")),
            "{id}: the redirect URI the daemon uses"
        );
        let def: toml::Table = text.parse().unwrap();
        for key in ["default_scopes", "required_scopes"] {
            for scope in def["authorize"]
                .get(key)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let scope = scope.as_str().unwrap();
                assert!(
                    page.contains(&format!("`{scope}`")),
                    "{id}: the page names the scope {scope} tokenwarden requests"
                );
            }
        }
        // The first five cite platforms.md, the advertising platforms platforms-ads.md.
        let sources = ["platforms.md", "platforms-ads.md"]
            .iter()
            .find_map(|doc| {
                page.split(&format!("## Sources (as cited by {doc})"))
                    .nth(1)
            })
            .unwrap_or_else(|| panic!("{id}: a Sources section"));
        assert!(sources.contains('§'), "{id}: sources name their section");
        assert!(page.contains("## Review and access"), "{id}");

        let codes = codes_in_error_table(&page);
        assert!(codes.len() >= 3, "{id}: {codes:?}");
        for code in codes {
            let quoted = format!("\"{code}\"");
            let in_range =
                |t: &str| t.contains(&format!("\"{code}-")) || t.contains(&format!("-{code}\""));
            assert!(
                text.contains(&quoted)
                    || common.contains(&quoted)
                    || in_range(text)
                    || in_range(&common),
                "{id}: the page sends people to look for {code}, which the definition does not classify"
            );
        }
    }
}
