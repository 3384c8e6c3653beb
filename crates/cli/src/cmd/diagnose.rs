//! `tokenwarden diagnose`: a person pastes what went wrong and gets the answer.

use crate::definitions;
use crate::term::{self, Style};
use anyhow::{Context as _, Result, anyhow, bail};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokenwarden_core::classify::{Action, Classification, Kind, ResponseView, words};
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::provider::{Context, Provider, Registry};
use tokenwarden_core::raw_http;

/// More than this is not read from stdin or a file; the classifier looks at far less.
const MAX_INPUT: u64 = 32 * 1024 * 1024;

/// Explain a response from a platform: what happened, why, and the fix.
///
/// Paste the response exactly as `curl -i` prints it (status line, headers, blank line, body) on
/// stdin. When you only have parts of it, give --status, -H and --body-file (or the body on stdin).
/// Without --provider the platform is recognised from the error envelope and the headers.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  curl -si https://business-api.tiktok.com/open_api/v1.3/user/info/ -H 'Access-Token: …' \\\n    | tokenwarden diagnose\n  tokenwarden diagnose -p meta --status 400 --body-file error.json\n  tokenwarden diagnose -p snapchat --status 401 -H 'WWW-Authenticate: Bearer error=\"invalid_token\"' < /dev/null\n  tokenwarden diagnose -p tiktok --token-endpoint --json < refresh-response.txt\n\nExit status:\n  0  the response is a success (kind ok)\n  1  nothing could be diagnosed (bad input, unknown or unrecognisable platform)\n  2  the command line is wrong (unknown flag, bad value)\n  3  an error that passes by itself: retry after the wait (refresh_and_retry, backoff_and_retry, poll_later)\n  4  an error that needs a person or a code change (reauthorize, request_scopes, fix_request)"
)]
pub struct Args {
    /// The platform that answered: an id `tokenwarden providers` lists (snapchat, meta,
    /// google-ads, microsoft-ads, amazon-ads, …) or one of your own. Default: recognised from the
    /// error envelope and the headers.
    #[arg(long, short = 'p', value_name = "ID")]
    provider: Option<String>,
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

/// How well each provider's error envelopes and wait headers explain `resp`, best first.
fn fits<'a>(registry: &'a Registry, resp: &Response) -> Vec<(usize, &'a Provider)> {
    let mut out: Vec<(usize, &Provider)> = registry
        .iter()
        .map(|p| {
            let headers = p
                .spec
                .errors
                .wait_headers
                .iter()
                .filter(|w| {
                    resp.headers
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&w.name))
                })
                .count();
            (
                words::envelope_fit(&p.spec.errors, &resp.body) + headers,
                p.as_ref(),
            )
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.0));
    out
}

/// The platform that best explains `resp`; an error when none does or several do equally.
fn recognise<'a>(registry: &'a Registry, resp: &Response) -> Result<&'a Provider> {
    let fits = fits(registry, resp);
    match fits.as_slice() {
        [] => bail!(
            "cannot tell which platform answered: the body has none of their error envelopes; say which with --provider ({})",
            registry.ids()
        ),
        [(best, _), (second, _), ..] if best == second => {
            let tied: Vec<&str> = fits
                .iter()
                .filter(|(s, _)| s == best)
                .map(|(_, p)| p.spec.id.as_str())
                .collect();
            bail!(
                "the response fits {} equally (they share an error envelope); say which with --provider",
                tied.join(" and ")
            )
        }
        [(_, p), ..] => Ok(p),
    }
}

/// When `--provider` names a platform whose envelope the body does not have while another's
/// fits: a note saying so.
fn mismatch(registry: &Registry, given: &Provider, resp: &Response) -> Option<String> {
    let fits = fits(registry, resp);
    let (best, other) = fits.first()?;
    let own = fits
        .iter()
        .find(|(_, p)| p.spec.id == given.spec.id)
        .map_or(0, |(s, _)| *s);
    (own == 0 && *best > 0 && other.spec.id != given.spec.id).then(|| {
        format!(
            "note: this response does not have {}'s error envelope; it looks like {} ({}). The verdict below follows {}'s rules; try --provider {} if that is who answered.",
            given.spec.name, other.spec.name, other.spec.id, given.spec.name, other.spec.id
        )
    })
}

/// The exit status a script reads (documented in `--help`).
fn exit_status(c: &Classification) -> ExitCode {
    match (c.kind, c.action) {
        (Kind::Ok, _) => ExitCode::SUCCESS,
        // 1 and 2 are taken: a failed run, and clap's usage errors.
        (_, Action::RefreshAndRetry | Action::BackoffAndRetry | Action::PollLater) => {
            ExitCode::from(3)
        }
        _ => ExitCode::from(4),
    }
}

/// Runs the command.
pub fn run(args: Args, providers_dir: Option<&Path>) -> Result<ExitCode> {
    let registry = definitions::load(providers_dir)?;
    let given = args
        .provider
        .as_deref()
        .map(|id| lookup(&registry, id))
        .transpose()?;
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
    let (provider, recognised) = match given {
        Some(p) => {
            if let Some(note) = mismatch(&registry, p, &resp) {
                eprintln!("{note}");
            }
            (p, false)
        }
        None => (recognise(&registry, &resp)?, true),
    };
    let context = if args.token_endpoint {
        Context::TokenEndpoint
    } else {
        Context::Api
    };
    let c = classify(provider, &resp, context, &SystemClock);
    let said = words::platform_words(&provider.spec.errors, &resp.body);
    if args.json {
        let mut value = serde_json::to_value(&c)?;
        value["provider"] = serde_json::Value::String(provider.spec.id.to_string());
        value["provider_recognised"] = serde_json::Value::Bool(recognised);
        value["platform_user_title"] = serde_json::json!(said.user_title);
        value["platform_user_message"] = serde_json::json!(said.user_message);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let reading = Reading {
            provider,
            said: &said,
            recognised,
            wait_source: wait_source(provider, &resp),
        };
        print!("{}", render(&c, &reading, term::stdout_colour()));
    }
    Ok(exit_status(&c))
}

/// What the renderer knows besides the classification.
struct Reading<'a> {
    provider: &'a Provider,
    said: &'a words::PlatformWords,
    /// The platform was recognised, not given.
    recognised: bool,
    /// Which header the wait came from, if one did.
    wait_source: Option<String>,
}

/// The header that carried a wait (`Retry-After`, or one of the provider's usage headers).
fn wait_source(provider: &Provider, resp: &Response) -> Option<String> {
    let present = |name: &str| {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, _)| n.clone())
    };
    present("retry-after").or_else(|| {
        provider
            .spec
            .errors
            .wait_headers
            .iter()
            .find_map(|w| present(&w.name))
    })
}

/// The shell has no connection, so no link is below: say where a new one comes from.
fn without_link(text: &str, provider_id: &str) -> String {
    text.replace(
        "the link below",
        &format!(
            "a new connect link (`tokenwarden connect {provider_id}`, or Re-authorize on the connection's dashboard page)"
        ),
    )
}

/// Drops the sentences that say the platform sent no `Retry-After` when this response has one.
fn consistent_with(text: &str, wait_source: Option<&str>) -> String {
    if !wait_source.is_some_and(|s| s.eq_ignore_ascii_case("retry-after")) {
        return text.to_string();
    }
    text.split_inclusive(". ")
        .filter(|sentence| !sentence.contains("no Retry-After"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn severity(c: &Classification) -> Style {
    match (c.kind, c.action) {
        (Kind::Ok, _) => Style::Good,
        (_, Action::RefreshAndRetry | Action::BackoffAndRetry | Action::PollLater) => Style::Warn,
        _ => Style::Bad,
    }
}

/// The human form: headline, facts, what happened, the fix, the link.
fn render(c: &Classification, r: &Reading<'_>, colour: bool) -> String {
    let mut out = String::new();
    let style = severity(c);
    let provider_name = &r.provider.spec.name;
    out.push_str(&format!(
        "{} {}\n",
        term::paint(style, "●", colour),
        term::paint(Style::Heading, &c.title, colour)
    ));
    let mut facts = vec![
        if r.recognised {
            format!("platform: {provider_name} (recognised from the response)")
        } else {
            format!("platform: {provider_name}")
        },
        format!("HTTP {}", c.status),
        format!("kind: {}", term::paint(style, c.kind.as_str(), colour)),
        format!("action: {}", c.action),
        format!("retryable: {}", if c.retryable { "yes" } else { "no" }),
    ];
    if let Some(w) = c.retry_after {
        let source = match &r.wait_source {
            Some(h) => format!("from its {h} header"),
            None => {
                "tokenwarden's reading of this error; no wait header in the response".to_string()
            }
        };
        facts.push(format!(
            "wait: {} ({source})",
            tokenwarden_core::span::format(w)
        ));
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
        // Under the platform's own name for it: what its support asks for.
        let label = r.said.trace_label.as_deref().unwrap_or("trace id");
        facts.push(format!("{label}: {t}"));
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
    out.push_str(&term::wrap(
        &consistent_with(&c.explanation, r.wait_source.as_deref()),
        92,
        2,
    ));
    out.push('\n');
    if r.said.user_title.is_some() || r.said.user_message.is_some() {
        out.push_str(&format!(
            "{}\n",
            term::paint(Style::Heading, &format!("{provider_name} says"), colour)
        ));
        let words: Vec<&str> = [r.said.user_title.as_deref(), r.said.user_message.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        out.push_str(&term::wrap(&words.join(": "), 92, 2));
        out.push('\n');
    }
    out.push_str(&format!("{}\n", term::paint(Style::Heading, "Fix", colour)));
    out.push_str(&term::wrap(
        &without_link(&c.fix, r.provider.spec.id.as_str()),
        92,
        2,
    ));
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
            provider: Some(provider.into()),
            json: false,
            status: None,
            headers: vec![],
            body_file: None,
            token_endpoint: false,
        }
    }

    /// The renderer's view of `resp` as `id` answered it; leaked for the test's lifetime.
    fn reading<'a>(reg: &'a Registry, id: &str, resp: &Response) -> Reading<'a> {
        let p = lookup(reg, id).unwrap();
        Reading {
            provider: p,
            said: Box::leak(Box::new(words::platform_words(&p.spec.errors, &resp.body))),
            recognised: false,
            wait_source: wait_source(p, resp),
        }
    }

    fn raw(text: &str) -> Response {
        let mut a = args("meta");
        a.provider = None;
        assemble(&a, Some(text.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn the_platform_words_survive_and_no_placeholder_or_missing_link_shows() {
        let reg = Registry::builtin().unwrap();
        let resp = raw(
            "HTTP/1.1 400 Bad\r\ncontent-type: application/json\r\n\r\n{\"error\":{\"message\":\"Error validating access token\",\"code\":190,\"error_subcode\":458,\"error_user_title\":\"App not authorised\",\"error_user_msg\":\"You removed this app from your account.\",\"fbtrace_id\":\"AbCd\"}}",
        );
        let c = classify(lookup(&reg, "meta").unwrap(), &resp, Context::Api, &clock());
        let text = render(&c, &reading(&reg, "meta", &resp), false);
        assert!(text.contains("Meta Marketing API says"), "{text}");
        assert!(
            text.contains("App not authorised: You removed this app from your account."),
            "{text}"
        );
        assert!(text.contains("fbtrace_id: AbCd"), "{text}");
        assert!(!text.contains("link below"), "{text}");
        assert!(text.contains("tokenwarden connect meta"), "{text}");
        assert_eq!(exit_status(&c), ExitCode::from(4));

        // No message in the body: no "((no message))".
        let resp = raw("HTTP/1.1 400 Bad\r\n\r\n{\"error\":{\"code\":190,\"error_subcode\":463}}");
        let c = classify(lookup(&reg, "meta").unwrap(), &resp, Context::Api, &clock());
        let text = render(&c, &reading(&reg, "meta", &resp), false);
        assert!(!text.contains("(no message)"), "{text}");
        assert!(!text.contains("()"), "{text}");

        // TikTok's request_id, under its own name.
        let resp = raw(
            "HTTP/1.1 200 OK\r\n\r\n{\"code\":40105,\"message\":\"Access token is incorrect or has been revoked.\",\"request_id\":\"20240101ABCDEF\"}",
        );
        let c = classify(
            lookup(&reg, "tiktok-business").unwrap(),
            &resp,
            Context::Api,
            &clock(),
        );
        let text = render(&c, &reading(&reg, "tiktok-business", &resp), false);
        assert!(text.contains("request_id: 20240101ABCDEF"), "{text}");
    }

    #[test]
    fn a_wait_says_where_it_came_from() {
        let reg = Registry::builtin().unwrap();
        let with = raw(
            "HTTP/1.1 429 Too Many\r\nRetry-After: 30\r\n\r\n{\"request_status\":\"ERROR\",\"request_id\":\"r1\",\"debug_message\":\"slow down\"}",
        );
        let c = classify(
            lookup(&reg, "snapchat").unwrap(),
            &with,
            Context::Api,
            &clock(),
        );
        let text = render(&c, &reading(&reg, "snapchat", &with), false);
        assert!(
            text.contains("wait: 30s (from its Retry-After header)"),
            "{text}"
        );
        assert!(!text.contains("no Retry-After"), "{text}");
        assert_eq!(exit_status(&c), ExitCode::from(3));
    }

    #[test]
    fn the_platform_is_recognised_or_the_choice_is_explained() {
        let reg = Registry::builtin().unwrap();
        let tiktok = raw(
            "HTTP/1.1 200 OK\r\n\r\n{\"code\":40105,\"message\":\"x\",\"request_id\":\"r\",\"data\":{}}",
        );
        assert_eq!(
            recognise(&reg, &tiktok).unwrap().spec.id.as_str(),
            "tiktok-business"
        );
        let meta = raw(
            "HTTP/1.1 400 Bad\r\n\r\n{\"error\":{\"message\":\"m\",\"code\":190,\"fbtrace_id\":\"t\"}}",
        );
        let e = recognise(&reg, &meta).unwrap_err().to_string();
        assert!(
            e.contains("meta") && e.contains("threads") && e.contains("--provider"),
            "{e}"
        );
        let meta_usage = raw(
            "HTTP/1.1 400 Bad\r\nx-business-use-case-usage: {}\r\n\r\n{\"error\":{\"message\":\"m\",\"code\":190,\"fbtrace_id\":\"t\"}}",
        );
        assert_eq!(
            recognise(&reg, &meta_usage).unwrap().spec.id.as_str(),
            "meta"
        );
        let nothing = raw("HTTP/1.1 500 Oops\r\n\r\nplain text");
        assert!(
            recognise(&reg, &nothing)
                .unwrap_err()
                .to_string()
                .contains("--provider")
        );
        let note = mismatch(&reg, lookup(&reg, "snapchat").unwrap(), &tiktok).unwrap();
        assert!(note.contains("tiktok-business"), "{note}");
        assert_eq!(
            mismatch(&reg, lookup(&reg, "tiktok-business").unwrap(), &tiktok),
            None
        );
        let ok = raw(
            "HTTP/1.1 200 OK\r\n\r\n{\"code\":0,\"message\":\"OK\",\"request_id\":\"r\",\"data\":{}}",
        );
        let c = classify(
            lookup(&reg, "tiktok-business").unwrap(),
            &ok,
            Context::Api,
            &clock(),
        );
        assert_eq!(exit_status(&c), ExitCode::SUCCESS);
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
        let text = render(&c, &reading(&reg, "tiktok-business", &resp), false);
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
                    let said = words::platform_words(&p.spec.errors, &resp.body);
                    let r = Reading { provider: p, said: &said, recognised: false, wait_source: wait_source(p, &resp) };
                    let _ = render(&c, &r, true);
                    let _ = recognise(&reg, &resp);
                    let _ = mismatch(&reg, p, &resp);
                }
            }
        }
    }
}
