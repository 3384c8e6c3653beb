//! A definition whose endpoints are plain `http://` would send client secrets, codes and tokens
//! where anyone on the way can read and change them: it is refused, each endpoint by its key,
//! with the fix, unless whoever runs tokenwarden allowed it (a test server, a local emulator).

use tokenwarden_core::provider::Registry;

/// The complete example from docs/adding-a-platform.md, with every endpoint moved to `origin`
/// (and a sandbox API host added there too).
fn acme_at(origin: &str) -> String {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/adding-a-platform.md"
    ))
    .unwrap();
    let example = page
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.lines().any(|l| l.starts_with("id = ")))
        .expect("the page has a complete example");
    example
        .replace(
            "url = \"https://login.acme-ads.example",
            &format!("url = \"{origin}"),
        )
        .replace(
            "base_url = \"https://api.acme-ads.example/v3\"",
            &format!("base_url = \"{origin}/v3\"\nsandbox_base_url = \"{origin}/sandbox/v3\""),
        )
}

const ENDPOINTS: [&str; 7] = [
    "authorize.url",
    "token.exchange.url",
    "token.refresh.url",
    "token.revoke.url",
    "token.introspect.url",
    "api.base_url",
    "api.sandbox_base_url",
];

#[test]
fn the_example_moved_to_https_elsewhere_still_loads() {
    Registry::check("acme-ads.toml", &acme_at("https://idp.example.org"))
        .unwrap_or_else(|e| panic!("{e:?}"));
}

#[test]
fn http_endpoints_are_refused_each_by_its_key_with_the_fix() {
    // Loopback is no exception: a definition that reaches a local test server says so
    // explicitly, through the configuration.
    for origin in [
        "http://127.0.0.1:4000",
        "http://localhost:4000",
        "http://[::1]:4000",
        "http://idp.example.org",
    ] {
        let text = acme_at(origin);
        let problems = Registry::check("/etc/tokenwarden/providers/acme-ads.toml", &text)
            .err()
            .unwrap_or_else(|| panic!("{origin} was accepted"));
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ENDPOINTS, "{origin}");
        for p in &problems {
            let line = p.to_string();
            assert!(
                line.starts_with(&format!(
                    "/etc/tokenwarden/providers/acme-ads.toml: {}: ",
                    p.key
                )),
                "{line}"
            );
            assert!(line.contains("https"), "{line}");
            assert!(
                line.contains("allow_insecure_endpoints = true")
                    && line.contains("TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS"),
                "the fix is named: {line}"
            );
        }
        // The same through the registry the daemon loads.
        let e = Registry::with_files([("mine/acme-ads.toml".to_string(), text)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mine/acme-ads.toml: token.exchange.url: "),
            "{e}"
        );
    }
}

#[test]
fn http_endpoints_load_when_explicitly_allowed() {
    use tokenwarden_core::provider::Endpoints;
    for origin in ["http://127.0.0.1:4000", "http://emulator.internal:8181"] {
        let text = acme_at(origin);
        let p = Registry::check_allowing("acme-ads.toml", &text, Endpoints::AllowHttp)
            .unwrap_or_else(|e| panic!("{origin}: {e:?}"));
        assert_eq!(p.spec.token.exchange.url.scheme(), "http");
        let reg = Registry::with_files_allowing(
            [("mine/acme-ads.toml".to_string(), text)],
            Endpoints::AllowHttp,
        )
        .unwrap();
        assert!(reg.get("acme-ads").is_some());
    }
    // The allowance is for http, not for any scheme, and not for credentials in the URL.
    let ftp = acme_at("ftp://127.0.0.1:4000");
    let Err(problems) = Registry::check_allowing("acme-ads.toml", &ftp, Endpoints::AllowHttp)
    else {
        panic!("ftp was accepted")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.key == "token.exchange.url" && p.problem.contains("not ftp://")),
        "{problems:?}"
    );
    let userinfo = acme_at("http://user:pw@127.0.0.1:4000");
    let Err(problems) = Registry::check_allowing("acme-ads.toml", &userinfo, Endpoints::AllowHttp)
    else {
        panic!("credentials in an endpoint were accepted")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.problem.contains("must not carry credentials")),
        "{problems:?}"
    );
}

/// The shipped definitions need no allowance, and the sandbox's way of pointing them at its
/// http emulator (after loading) is untouched by it.
#[test]
fn shipped_definitions_are_https_and_move_to_the_sandbox() {
    let reg = Registry::builtin().unwrap();
    for p in reg.iter() {
        assert_eq!(p.spec.api.base_url.scheme(), "https", "{}", p.spec.id);
        let moved = p.with_origin(&url::Url::parse("http://127.0.0.1:8181/x").unwrap());
        assert_eq!(moved.spec.token.exchange.url.scheme(), "http");
    }
}
