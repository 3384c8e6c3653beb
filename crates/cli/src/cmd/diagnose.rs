//! `tokenwarden diagnose`: a person pastes what went wrong and gets the answer.

use crate::definitions;
use crate::term::{self, Style};
use anyhow::{Context as _, Result, anyhow, bail};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokenwarden_core::classify::{Action, Classification, Kind, ResponseView};
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::provider::{Context, Provider, Registry};
use tokenwarden_core::raw_http;

/// More than this is not read from stdin or a file; the classifier looks at far less.
const MAX_INPUT: u64 = 32 * 1024 * 1024;

/// Explain a response from a platform: what happened, why, and the fix.
///
/// Paste the response exactly as `curl -i` prints it (status line, headers, blank line, body) on
/// stdin. When you only have parts of it, give --status, -H and --body-file (or the body on stdin).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  curl -si https://business-api.tiktok.com/open_api/v1.3/user/info/ -H 'Access-Token: …' \\\n    | tokenwarden diagnose --provider tiktok-business\n  tokenwarden diagnose -p meta --status 400 --body-file error.json\n  tokenwarden diagnose -p snapchat --status 401 -H 'WWW-Authenticate: Bearer error=\"invalid_token\"' < /dev/null\n  tokenwarden diagnose -p tiktok --token-endpoint --json < refresh-response.txt"
)]
pub struct Args {
    /// The platform that answered: snapchat, tiktok-business, tiktok, threads, meta, or one of your own.
    #[arg(long, short = 'p', value_name = "ID")]
    provider: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The HTTP status, when you have only parts of the response; the body then comes from
    /// --body-file, or stdin when it is not a terminal.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(100..=999))]
    status: Option<u16>,
    /// A response header, as `Name: value`. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Read the body from this file.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,
    /// The response came from a token endpoint (code exchange or refresh), not an API call.
    #[arg(long)]
    token_endpoint: bool,
}

/// An owned response assembled from the inputs.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_header(h: &str) -> Result<(String, String)> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| anyhow!("-H {h:?}: write a header as 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("-H {h:?}: {name:?} is not a header name");
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn read_limited(mut r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(MAX_INPUT)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what}"))?;
    Ok(buf)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open --body-file {}", path.display()))?;
    read_limited(f, &path.display().to_string())
}

/// Builds the response from a raw paste or from parts.
fn assemble(args: &Args, stdin: Option<Vec<u8>>) -> Result<Response> {
    let extra: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<_>>()?;
    let file_body = args.body_file.as_deref().map(read_file).transpose()?;
    match args.status {
        Some(status) => Ok(Response {
            status,
            headers: extra,
            body: file_body.or(stdin).unwrap_or_default(),
        }),
        None => {
            let input = stdin.ok_or_else(|| {
                anyhow!("nothing to diagnose: pipe a response into stdin (as `curl -i` prints it), or give --status with -H and --body-file")
            })?;
            let raw = raw_http::parse(&input).map_err(|e| {
                anyhow!("{e}\nIf you have only the body, give the status too: --status 400 (and -H 'Name: value' for headers).")
            })?;
            let mut headers = raw.headers;
            headers.extend(extra);
            Ok(Response {
                status: raw.status,
                headers,
                body: file_body.unwrap_or(raw.body),
            })
        }
    }
}

/// Classifies `resp` as `provider` answered it.
fn classify(
    provider: &Provider,
    resp: &Response,
    context: Context,
    clock: &dyn Clock,
) -> Classification {
    let view = ResponseView {
        status: resp.status,
        headers: &resp.headers,
        body: &resp.body,
    };
    provider.classifier().classify(&view, context, clock.now())
}

fn lookup<'a>(registry: &'a Registry, id: &str) -> Result<&'a Provider> {
    registry.get(id).map(|p| p.as_ref()).ok_or_else(|| {
        anyhow!(
            "unknown provider {id:?}; known: {} (see `tokenwarden providers`)",
            registry.ids()
        )
    })
}

/// Runs the command.
pub fn run(args: Args, providers_dir: Option<&Path>) -> Result<ExitCode> {
    let registry = definitions::load(providers_dir)?;
    let provider = lookup(&registry, &args.provider)?;
    let stdin = std::io::stdin();
    let stdin_bytes = if stdin.is_terminal() {
        if args.status.is_none() && args.body_file.is_none() {
            eprintln!(
                "Paste the response as `curl -i` prints it, then press Ctrl-D (or pipe it in)."
            );
            Some(read_limited(stdin.lock(), "stdin")?)
        } else {
            None
        }
    } else if args.status.is_some() && args.body_file.is_some() {
        None
    } else {
        Some(read_limited(stdin.lock(), "stdin")?)
    };
    let resp = assemble(&args, stdin_bytes)?;
    let context = if args.token_endpoint {
        Context::TokenEndpoint
    } else {
        Context::Api
    };
    let c = classify(provider, &resp, context, &SystemClock);
    if args.json {
        let mut value = serde_json::to_value(&c)?;
        value["provider"] = serde_json::Value::String(provider.spec.id.to_string());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&c, &provider.spec.name, term::stdout_colour()));
    }
    Ok(ExitCode::SUCCESS)
}

fn severity(c: &Classification) -> Style {
    match (c.kind, c.action) {
        (Kind::Ok, _) => Style::Good,
        (_, Action::RefreshAndRetry | Action::BackoffAndRetry | Action::PollLater) => Style::Warn,
        _ => Style::Bad,
    }
}

/// The human form: headline, facts, what happened, the fix, the link.
fn render(c: &Classification, provider_name: &str, colour: bool) -> String {
    let mut out = String::new();
    let style = severity(c);
    out.push_str(&format!(
        "{} {}\n",
        term::paint(style, "●", colour),
        term::paint(Style::Heading, &c.title, colour)
    ));
    let mut facts = vec![
        format!("platform: {provider_name}"),
        format!("HTTP {}", c.status),
        format!("kind: {}", term::paint(style, c.kind.as_str(), colour)),
        format!("action: {}", c.action),
        format!("retryable: {}", if c.retryable { "yes" } else { "no" }),
    ];
    if let Some(w) = c.retry_after {
        facts.push(format!("wait: {}", tokenwarden_core::span::format(w)));
    }
    if let Some(code) = &c.platform_code {
        let sub = c
            .platform_subcode
            .as_deref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        facts.push(format!("code: {code}{sub}"));
    }
    if let Some(u) = c.usage_pct {
        facts.push(format!("usage: {u}%"));
    }
    if let Some(t) = &c.trace_id {
        facts.push(format!("trace id: {t}"));
    }
    out.push_str(&term::wrap(
        &term::paint(Style::Dim, &facts.join("  ·  "), colour),
        2000,
        2,
    ));
    out.push('\n');
    out.push_str(&format!(
        "{}\n",
        term::paint(Style::Heading, "What happened", colour)
    ));
    out.push_str(&term::wrap(&c.explanation, 92, 2));
    out.push('\n');
    out.push_str(&format!("{}\n", term::paint(Style::Heading, "Fix", colour)));
    out.push_str(&term::wrap(&c.fix, 92, 2));
    if let Some(url) = &c.docs_url {
        out.push('\n');
        out.push_str(&format!(
            "{} {url}\n",
            term::paint(Style::Dim, "More:", colour)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokenwarden_core::clock::FakeClock;

    fn args(provider: &str) -> Args {
        Args {
            provider: provider.into(),
            json: false,
            status: None,
            headers: vec![],
            body_file: None,
            token_endpoint: false,
        }
    }

    fn clock() -> FakeClock {
        FakeClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap())
    }

    #[test]
    fn raw_paste_is_classified() {
        let reg = Registry::builtin().unwrap();
        let input = b"HTTP/2 200\r\ncontent-type: application/json\r\n\r\n{\"code\":40100,\"message\":\"Due to too many requests\"}".to_vec();
        let resp = assemble(&args("tiktok-business"), Some(input)).unwrap();
        let c = classify(
            lookup(&reg, "tiktok-business").unwrap(),
            &resp,
            Context::Api,
            &clock(),
        );
        assert_eq!(c.kind, Kind::RateLimited);
        let text = render(&c, "TikTok API for Business", false);
        assert!(
            text.contains("What happened") && text.contains("40100") && text.contains("wait: 1s"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn parts_are_assembled() {
        let mut a = args("snapchat");
        a.status = Some(401);
        a.headers = vec!["WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"The access token expired\"".into()];
        let resp = assemble(&a, None).unwrap();
        assert_eq!((resp.status, resp.body.len()), (401, 0));
        let reg = Registry::builtin().unwrap();
        let c = classify(
            lookup(&reg, "snapchat").unwrap(),
            &resp,
            Context::Api,
            &clock(),
        );
        assert_eq!(
            (c.kind, c.action),
            (Kind::TokenExpired, Action::RefreshAndRetry)
        );
    }

    #[test]
    fn bad_inputs_are_explained() {
        let e = assemble(&args("meta"), Some(b"{\"error\":{}}".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("status line") && e.contains("--status"), "{e}");
        let mut a = args("meta");
        a.status = Some(400);
        a.headers = vec!["no colon here".into()];
        assert!(
            assemble(&a, None)
                .unwrap_err()
                .to_string()
                .contains("Name: value")
        );
        let reg = Registry::builtin().unwrap();
        let e = lookup(&reg, "myspace").unwrap_err().to_string();
        assert!(e.contains("snapchat"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn any_stdin_never_panics(input in proptest::collection::vec(any::<u8>(), 0..4096), prefix in any::<bool>()) {
            let reg = Registry::builtin().unwrap();
            let mut bytes = if prefix { b"HTTP/1.1 400 Bad\r\n".to_vec() } else { Vec::new() };
            bytes.extend(input);
            for p in reg.iter() {
                if let Ok(resp) = assemble(&args(p.spec.id.as_str()), Some(bytes.clone())) {
                    let c = classify(p, &resp, Context::Api, &clock());
                    let _ = render(&c, &p.spec.name, true);
                }
            }
        }
    }
}
