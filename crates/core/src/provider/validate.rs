//! Validation of a definition beyond its shape: URLs, templates, timing and rules that make sense
//! together. Every problem is reported, each naming the file, the key and what is wrong.

use super::model::*;
use crate::classify::{Action, Kind, Rule};
use std::fmt;
use std::time::Duration;

/// One problem in one definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file (or `builtin:NAME`).
    pub file: String,
    /// The key, dotted (`token.refresh.params.refresh_token`); empty for whole-file problems.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub problem: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.problem)
        }
    }
}

impl std::error::Error for SpecError {}

const PLACEHOLDERS: &[&str] = &[
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "access_token",
    "token",
    "token_type_hint",
];

/// Collects problems for one file.
pub(crate) struct Problems {
    file: String,
    pub(crate) list: Vec<SpecError>,
}

impl Problems {
    pub(crate) fn new(file: &str) -> Self {
        Problems {
            file: file.to_string(),
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.list.push(SpecError {
            file: self.file.clone(),
            key: key.into(),
            problem: problem.into(),
        });
    }
}

/// Placeholders used in a template, or the first malformed one.
pub(crate) fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in {template:?}; known: {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push(name);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Which schemes a definition's endpoints (the authorize URL, the token calls and the API bases)
/// may use. Links for people (`docs_url`) are not endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Endpoints {
    /// `https` only: over plain `http` client secrets, codes and tokens cross the network where
    /// anyone on the way can read and change them. The default.
    #[default]
    HttpsOnly,
    /// `http` is allowed too, on any host: a test server or a local emulator. Only on an explicit
    /// choice of whoever runs tokenwarden (`allow_insecure_endpoints = true`).
    AllowHttp,
}

/// What a definition with an `http` endpoint is told to do.
const INSECURE_FIX: &str = "is a plain http:// URL: client secrets, codes and tokens would cross the network unencrypted. Use the platform's https:// URL; for a local test server or emulator, allow http with allow_insecure_endpoints = true in the configuration file (or TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS=true)";

/// An endpoint: https, or http where allowed; a host; no credentials.
fn check_endpoint(p: &mut Problems, key: &str, u: &url::Url, endpoints: Endpoints) {
    match (u.scheme(), endpoints) {
        ("https", _) | ("http", Endpoints::AllowHttp) => {}
        ("http", Endpoints::HttpsOnly) => p.add(key, INSECURE_FIX),
        (other, _) => p.add(key, format!("must be an https URL, not {other}://")),
    }
    check_host(p, key, u);
}

fn check_host(p: &mut Problems, key: &str, u: &url::Url) {
    if u.host_str().is_none() {
        p.add(key, "has no host");
    }
    if !u.username().is_empty() || u.password().is_some() {
        p.add(key, "must not carry credentials");
    }
}

/// A link for people (documentation): https, or http on loopback.
fn check_url(p: &mut Problems, key: &str, u: &url::Url) {
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => p.add(
            key,
            format!("must be an https URL (http only for loopback), not {other}://"),
        ),
    }
    check_host(p, key, u);
}

fn check_call(p: &mut Problems, key: &str, call: &TokenCall, endpoints: Endpoints) -> Vec<String> {
    check_endpoint(p, &format!("{key}.url"), &call.url, endpoints);
    if call.method == Method::GET && call.encoding != Encoding::Query {
        p.add(
            format!("{key}.encoding"),
            "a GET call carries its parameters in the query: use encoding = \"query\"",
        );
    }
    if call.params.is_empty() {
        p.add(
            format!("{key}.params"),
            "no parameters: a token call needs at least its credential",
        );
    }
    let mut used = Vec::new();
    for (name, template) in &call.params {
        if name.trim().is_empty() {
            p.add(format!("{key}.params"), "a parameter has an empty name");
        }
        match placeholders(template) {
            Ok(names) => used.extend(names.into_iter().map(str::to_string)),
            Err(e) => p.add(format!("{key}.params.{name}"), e),
        }
    }
    match call.client_auth {
        ClientAuth::Basic if used.iter().any(|u| u == "client_secret") => {
            p.add(format!("{key}.client_auth"), "with client_auth = \"basic\" the secret goes in the Authorization header; remove {client_secret} from params");
        }
        ClientAuth::Post
            if call
                .params
                .keys()
                .any(|k| k == "client_id" || k == "client_secret") =>
        {
            p.add(format!("{key}.client_auth"), "with client_auth = \"post\" tokenwarden adds client_id and client_secret to the body itself; remove them from params");
        }
        ClientAuth::Post if call.encoding == Encoding::Query => {
            p.add(format!("{key}.client_auth"), "client_auth = \"post\" puts the secret in the body; a query call would put it in the URL. Use a POST with encoding = \"form\"");
        }
        _ => {}
    }
    let names_token = used.iter().any(|u| u == "token" || u == "token_type_hint");
    let token_calls = key == "token.revoke" || key == "token.introspect";
    if names_token && !token_calls {
        p.add(
            format!("{key}.params"),
            "{token} and {token_type_hint} exist only in [token.revoke] and [token.introspect]",
        );
    }
    if call.revokes != Revokes::Grant && key != "token.revoke" {
        p.add(
            format!("{key}.revokes"),
            "only [token.revoke] says what it revokes",
        );
    }
    // Token calls' own headers (Reddit's User-Agent): the app's values only, never a secret.
    for h in &call.headers {
        if h.replaces {
            p.add(
                format!("{key}.headers"),
                format!("{:?}: replaces means nothing on a token call (no caller sends headers there); drop it", h.name),
            );
        }
    }
    check_headers(
        p,
        &format!("{key}.headers"),
        &call.headers,
        "authorization",
        &["client_id", "user_agent"],
        false,
        false,
    );
    if !call.tokens.is_empty() && key != "token.revoke" {
        p.add(
            format!("{key}.tokens"),
            "only [token.revoke] revokes a list of tokens",
        );
    }
    if key == "token.revoke" && names_token && call.tokens.is_empty() {
        p.add(format!("{key}.tokens"), "the params use {token}: list which tokens to revoke, e.g. tokens = [\"refresh_token\", \"access_token\"]");
    }
    if key == "token.revoke" && !call.tokens.is_empty() && !used.iter().any(|u| u == "token") {
        p.add(
            format!("{key}.params"),
            "tokens is set but no parameter carries {token} (RFC 7009: token = \"{token}\")",
        );
    }
    used
}

pub(crate) fn validate(
    spec: &ProviderSpec,
    stem: &str,
    endpoints: Endpoints,
    p: &mut Problems,
) -> Vec<Rule> {
    if spec.id.as_str() != stem {
        p.add(
            "id",
            format!(
                "is {:?} but the file is named {stem:?}.toml; they must match",
                spec.id.as_str()
            ),
        );
    }
    if spec.name.trim().is_empty() {
        p.add("name", "is empty");
    }
    check_url(p, "docs_url", &spec.docs_url);

    let a = &spec.authorize;
    check_endpoint(p, "authorize.url", &a.url, endpoints);
    if a.client_id_param.trim().is_empty() {
        p.add("authorize.client_id_param", "is empty");
    }
    if a.scope_separator.is_empty() {
        p.add("authorize.scope_separator", "is empty; use \" \" or \",\"");
    }
    if a.callback_code_params.is_empty() {
        p.add(
            "authorize.callback_code_params",
            "is empty; the callback needs to know where the code is",
        );
    }
    for s in &a.required_scopes {
        if !a.default_scopes.contains(s) && !a.scope_param.is_empty() {
            p.add(
                "authorize.required_scopes",
                format!("{s:?} is required but not in default_scopes"),
            );
        }
    }

    let t = &spec.token;
    let exchange_uses = check_call(p, "token.exchange", &t.exchange, endpoints);
    if !exchange_uses.iter().any(|u| u == "code") {
        p.add("token.exchange.params", "no parameter carries {code}");
    }
    if let Some(up) = &t.upgrade {
        let uses = check_call(p, "token.upgrade", up, endpoints);
        if !uses.iter().any(|u| u == "access_token") {
            p.add("token.upgrade.params", "the upgrade exchanges the short-lived token: a parameter must carry {access_token}");
        }
    }
    let refresh_uses = t
        .refresh
        .as_ref()
        .map(|r| check_call(p, "token.refresh", r, endpoints));
    if let Some(rv) = &t.revoke {
        let uses = check_call(p, "token.revoke", rv, endpoints);
        if !uses
            .iter()
            .any(|u| u == "access_token" || u == "refresh_token" || u == "token")
        {
            p.add(
                "token.revoke.params",
                "no parameter carries {access_token} or {refresh_token}",
            );
        }
    }
    if let Some(ins) = &t.introspect {
        let uses = check_call(p, "token.introspect", ins, endpoints);
        if !uses.iter().any(|u| u == "access_token" || u == "token") {
            p.add(
                "token.introspect.params",
                "no parameter carries the token (RFC 7662: token = \"{token}\")",
            );
        }
        if ins.method != Method::POST {
            p.add(
                "token.introspect.method",
                "RFC 7662 introspection is a POST (a GET would put the token in the URL)",
            );
        }
    }
    for (key, path) in [
        ("token.response.access_token", &t.response.access_token),
        ("token.response.expires_in", &t.response.expires_in),
    ] {
        if path.trim().is_empty() || path.split('.').any(str::is_empty) {
            p.add(key, format!("{path:?} is not a dotted path"));
        }
    }

    let r = &spec.refresh;
    match (r.style, &refresh_uses) {
        (RefreshStyle::RefreshToken | RefreshStyle::RefreshTokenWhenIssued, Some(uses))
            if !uses.iter().any(|u| u == "refresh_token") =>
        {
            p.add("token.refresh.params", format!("refresh.style = {} but no parameter carries {{refresh_token}}", as_written(&r.style)))
        }
        (RefreshStyle::SelfRefresh, Some(uses)) if !uses.iter().any(|u| u == "access_token") => {
            p.add("token.refresh.params", "refresh.style = \"self_refresh\" but no parameter carries {access_token}")
        }
        (
            RefreshStyle::RefreshToken
            | RefreshStyle::SelfRefresh
            | RefreshStyle::RefreshTokenWhenIssued,
            None,
        ) => {
            p.add("token.refresh", format!("refresh.style = {} needs a [token.refresh] call", as_written(&r.style)))
        }
        (RefreshStyle::Exchange | RefreshStyle::None, Some(_)) => p.add(
            "token.refresh",
            "this provider's refresh.style cannot renew tokens; remove [token.refresh] or change the style",
        ),
        _ => {}
    }
    if r.style == RefreshStyle::Exchange && t.upgrade.is_none() {
        p.add("token.upgrade", "refresh.style = \"exchange\" needs the [token.upgrade] call that makes the long-lived token");
    }
    match (r.token_expires, r.default_lifetime) {
        (true, None) => p.add(
            "refresh.default_lifetime",
            "is required when tokens expire: a response without expires_in must not mean \"never expires\"",
        ),
        (true, Some(life)) => {
            if life.is_zero() {
                p.add("refresh.default_lifetime", "is zero");
            }
            if r.style.can_refresh() && r.margin + r.jitter >= life {
                p.add("refresh.margin", "margin plus jitter is not shorter than default_lifetime: every token would be refreshed at once");
            }
            if let Some(min) = r.min_age
                && min >= life
            {
                p.add("refresh.min_age", "is not shorter than default_lifetime: tokens would expire before they may be refreshed");
            }
        }
        (false, _) => {}
    }
    if let Some(grace) = r.reuse_grace {
        if !r.rotates {
            p.add(
                "refresh.reuse_grace",
                "a reuse grace only means something when refresh tokens rotate; set rotates = true or remove it",
            );
        }
        if grace.is_zero() {
            p.add(
                "refresh.reuse_grace",
                "is zero; leave it out when the old refresh token dies at once",
            );
        }
    }
    if r.rotates && !r.style.uses_refresh_token() {
        p.add(
            "refresh.rotates",
            "only refresh-token grants rotate refresh tokens",
        );
    }
    if !r.refresh_token_extends {
        if !r.style.uses_refresh_token() {
            p.add(
                "refresh.refresh_token_extends",
                "only means something for refresh-token grants",
            );
        } else if r.refresh_token_lifetime.is_none() && t.response.refresh_expires_in.is_none() {
            p.add(
                "refresh.refresh_token_extends",
                "an end counted from the consent needs its length: set refresh_token_lifetime (or token.response.refresh_expires_in)",
            );
        }
    }

    let api = &spec.api;
    check_endpoint(p, "api.base_url", &api.base_url, endpoints);
    if let Some(u) = &api.sandbox_base_url {
        check_endpoint(p, "api.sandbox_base_url", u, endpoints);
    }
    check_services(p, spec, endpoints);
    let header_ok = !api.credential_header.is_empty()
        && api
            .credential_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !header_ok {
        p.add(
            "api.credential_header",
            format!("{:?} is not a header name", api.credential_header),
        );
    }
    match (api.credential_in, api.credential_param.as_deref()) {
        (CredentialPlacement::Query, None) => p.add(
            "api.credential_param",
            "credential_in = \"query\" needs the name of the query parameter that carries the token",
        ),
        (CredentialPlacement::Query, Some(name))
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            p.add(
                "api.credential_param",
                format!("{name:?} is not a query parameter name"),
            )
        }
        (CredentialPlacement::Header, Some(_)) => p.add(
            "api.credential_param",
            "only means something with credential_in = \"query\"",
        ),
        _ => {}
    }
    match placeholders(&api.credential_value) {
        Ok(names) if names == ["access_token"] => {}
        Ok(_) => p.add(
            "api.credential_value",
            "must contain {access_token} exactly once and nothing else in braces",
        ),
        Err(e) => p.add("api.credential_value", e),
    }
    check_api_headers(p, api);
    check_soap(p, api);
    check_regions(p, spec, endpoints);
    check_environments(p, spec);
    check_identities(p, spec, stem, endpoints);
    check_oauth1(p, spec, endpoints);
    if api.probe.via == ProbeVia::Introspection && t.introspect.is_none() {
        p.add(
            "api.probe.via",
            "probing by introspection needs a [token.introspect] call",
        );
    }
    if api.probe.via == ProbeVia::Api
        && (!api.probe.path.starts_with('/')
            || api.probe.path.starts_with("//")
            || api.probe.path.contains(".."))
    {
        p.add(
            "api.probe.path",
            "must start with a single / and stay under the API base",
        );
    }
    for (field, pointer) in [
        ("api.probe.account_id", &api.probe.account_id),
        ("api.probe.account_name", &api.probe.account_name),
    ] {
        if let Some(ptr) = pointer
            && !ptr.starts_with('/')
        {
            p.add(
                field,
                format!("{ptr:?} is not a JSON pointer: write it like \"/me/id\""),
            );
        }
    }
    if api.probe.account_name.is_some() && api.probe.account_id.is_none() {
        p.add(
            "api.probe.account_name",
            "needs api.probe.account_id: the account is recognised by its id",
        );
    }
    if api.probe.account_id.is_some() && api.probe.via != ProbeVia::Api {
        p.add(
            "api.probe.account_id",
            "is read from the probe's API answer; an introspection probe has none",
        );
    }
    if !matches!(api.probe.method.as_str(), "GET" | "POST" | "HEAD") {
        p.add("api.probe.method", "use GET, POST or HEAD");
    }
    if let Some(body) = &api.probe.body {
        if api.probe.via != ProbeVia::Api {
            p.add("api.probe.body", "only an API probe sends a body");
        } else if api.probe.method != "POST" {
            p.add(
                "api.probe.body",
                "a body is sent with method = \"POST\" only",
            );
        } else if serde_json::from_str::<serde_json::Value>(body).is_err() {
            p.add("api.probe.body", format!("{body:?} is not JSON"));
        } else if body.len() > 4096 {
            p.add(
                "api.probe.body",
                "a probe body is a few bytes; keep it under 4 KiB",
            );
        }
    }
    if api.probe.every < Duration::from_secs(10) {
        p.add(
            "api.probe.every",
            "probing more often than every 10 s would spend the platform's rate limit",
        );
    }

    for (i, l) in spec.rate_limits.iter().enumerate() {
        if l.requests == 0 || l.per.is_zero() {
            p.add(
                format!("rate_limits[{i}]"),
                "requests and per must both be above zero",
            );
        }
    }

    if let Some(d) = &spec.callbacks.deauthorize {
        for (key, problem) in d.problems() {
            p.add(format!("callbacks.deauthorize.{key}"), problem);
        }
        if let Some(u) = &d.docs_url {
            check_url(p, "callbacks.deauthorize.docs_url", u);
        }
    }

    let e = &spec.errors;
    if let Some(u) = &e.docs_url {
        check_url(p, "errors.docs_url", u);
    }
    for (i, env) in e.envelopes.iter().enumerate() {
        for path in [
            Some(&env.code),
            env.subcode.as_ref(),
            env.message.as_ref(),
            env.trace_id.as_ref(),
            env.transient.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            // Only `message` may list alternatives (`details|detail`); elsewhere a `|` is a
            // character of a key.
            let alternatives: Vec<&str> = if Some(path) == env.message.as_ref() {
                path.split('|').collect()
            } else {
                vec![path.as_str()]
            };
            if alternatives
                .iter()
                .any(|a| a.is_empty() || a.split('.').any(str::is_empty))
            {
                p.add(
                    format!("errors.envelopes[{i}]"),
                    format!("{path:?} is not a dotted path"),
                );
            }
        }
    }
    for (i, env) in e.envelopes.iter().enumerate() {
        if env.keyed && env.subcode.is_some() {
            p.add(
                format!("errors.envelopes[{i}].subcode"),
                "a keyed envelope's sub-code is the key of its code object; leave subcode out",
            );
        }
    }
    for (i, w) in e.wait_fields.iter().enumerate() {
        if w.path.is_empty() || w.path.split('.').any(str::is_empty) {
            p.add(
                format!("errors.wait_fields[{i}].path"),
                format!("{:?} is not a dotted path", w.path),
            );
        }
    }
    if let Some(items) = &e.items {
        for path in std::iter::once(&items.status)
            .chain(&items.code)
            .chain(&items.message)
        {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                p.add("errors.items", format!("{path:?} is not a dotted path"));
            }
        }
        if items.success.is_empty() {
            p.add(
                "errors.items.success",
                "name at least one status value of an item that succeeded",
            );
        }
    }
    compile_rules(&e.rules, spec.id.as_str(), "errors.rules", r.style, p)
}

/// Headers no definition may set: ours (the credential), the ones the HTTP client owns, and
/// the ones that would carry a caller's cookies or change where the call goes.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "cookie",
    "proxy-authorization",
    "te",
    "upgrade",
    "keep-alive",
];

/// `api.headers`: names that are header names and not reserved, each once, and values whose
/// placeholders come from the app or the connection, never a token or the client secret.
/// `[[regions]]`: named uniquely, each with its own hosts, the first repeating the top-level URLs
/// (it is what an app without `region` gets).
/// OAuth 1.0a (`[oauth1]`) and the keys that must agree with it: signed API calls, no renewal,
/// no OAuth 2.0-only features (PKCE, client authentication, revocation, introspection, regions).
fn check_oauth1(p: &mut Problems, spec: &ProviderSpec, endpoints: Endpoints) {
    let signed = spec.api.credential_in == CredentialPlacement::OAuth1;
    let Some(o) = &spec.oauth1 else {
        if signed {
            p.add(
                "api.credential_in",
                "\"oauth1\" signs with OAuth 1.0a: the definition needs an [oauth1] table (request_token_url)",
            );
        }
        if spec.token.response.token_secret.is_some() {
            p.add(
                "token.response.token_secret",
                "only OAuth 1.0a definitions ([oauth1]) have a token secret",
            );
        }
        return;
    };
    check_endpoint(
        p,
        "oauth1.request_token_url",
        &o.request_token_url,
        endpoints,
    );
    for (k, v) in &o.request_token_params {
        if k.starts_with("oauth_") {
            p.add(
                format!("oauth1.request_token_params.{k}"),
                "oauth_* parameters are tokenwarden's to set (oauth_callback, the nonce, the signature)",
            );
        }
        if v.contains('{') {
            p.add(
                format!("oauth1.request_token_params.{k}"),
                "must be a fixed value: the request-token call has no placeholders",
            );
        }
    }
    if !signed {
        p.add(
            "api.credential_in",
            "must be \"oauth1\" with [oauth1]: the platform takes only signed API calls",
        );
    }
    if !spec
        .api
        .credential_header
        .eq_ignore_ascii_case("Authorization")
    {
        p.add(
            "api.credential_header",
            "OAuth 1.0a signatures travel in Authorization (RFC 5849 §3.5.1)",
        );
    }
    if spec.refresh.style != RefreshStyle::None {
        p.add(
            "refresh.style",
            "OAuth 1.0a token credentials cannot be renewed: use \"none\" (a refused token means re-authorize)",
        );
    }
    if spec.refresh.token_expires {
        p.add(
            "refresh.token_expires",
            "OAuth 1.0a token credentials do not expire: set token_expires = false",
        );
    }
    if spec.authorize.pkce {
        p.add("authorize.pkce", "PKCE is OAuth 2.0; OAuth 1.0a has none");
    }
    let ex = &spec.token.exchange;
    if ex.client_auth != ClientAuth::Params {
        p.add(
            "token.exchange.client_auth",
            "OAuth 1.0a authenticates the app by the signature: leave client_auth out",
        );
    }
    if ex.method != Method::POST || ex.encoding != Encoding::Form {
        p.add(
            "token.exchange",
            "the OAuth 1.0a access-token call is a POST with a form body (RFC 5849 §2.3)",
        );
    }
    if ex.params.get("oauth_verifier").map(String::as_str) != Some("{code}") {
        p.add(
            "token.exchange.params",
            "must send oauth_verifier = \"{code}\": the verifier the callback brings (RFC 5849 §2.3)",
        );
    }
    for (k, v) in &ex.params {
        if v.contains("{client_secret}")
            || v.contains("{access_token}")
            || v.contains("{refresh_token}")
        {
            p.add(
                format!("token.exchange.params.{k}"),
                "secrets never travel in an OAuth 1.0a call: they only sign it",
            );
        }
    }
    if spec.token.response.token_secret.is_none() {
        p.add(
            "token.response.token_secret",
            "name the token secret's field (oauth_token_secret): every call is signed with it",
        );
    }
    if spec.token.upgrade.is_some()
        || spec.token.revoke.is_some()
        || spec.token.introspect.is_some()
    {
        p.add(
            "token",
            "[token.upgrade], [token.revoke] and [token.introspect] are OAuth 2.0 calls; an OAuth 1.0a definition has only [token.exchange]",
        );
    }
    if spec.api.probe.via == ProbeVia::Introspection {
        p.add(
            "api.probe.via",
            "OAuth 1.0a has no introspection: probe with an API call",
        );
    }
    if !spec.regions.is_empty() {
        p.add("regions", "regions are not supported with [oauth1]");
    }
}

/// `[[api.services]]`: each serves path prefixes that are plain paths, has its own hosts (a
/// sandbox one exactly when the definition has a sandbox host), and none with regions, whose hosts
/// are per region.
fn check_services(p: &mut Problems, spec: &ProviderSpec, endpoints: Endpoints) {
    let api = &spec.api;
    if !api.services.is_empty() && !spec.regions.is_empty() {
        p.add(
            "api.services",
            "services are not supported with [[regions]] (each region has one API host)",
        );
    }
    for (i, svc) in api.services.iter().enumerate() {
        let key = format!("api.services[{i}]");
        check_endpoint(p, &format!("{key}.base_url"), &svc.base_url, endpoints);
        match (&svc.sandbox_base_url, &api.sandbox_base_url) {
            (Some(u), Some(_)) => {
                check_endpoint(p, &format!("{key}.sandbox_base_url"), u, endpoints);
            }
            (None, Some(_)) => p.add(
                format!("{key}.sandbox_base_url"),
                "the definition has a sandbox host (api.sandbox_base_url): say this service's too",
            ),
            (Some(_), None) => p.add(
                format!("{key}.sandbox_base_url"),
                "a service's sandbox host needs api.sandbox_base_url for the connection's own calls",
            ),
            (None, None) => {}
        }
        if svc.paths.is_empty() {
            p.add(
                format!("{key}.paths"),
                "name at least one path prefix it serves",
            );
        }
        for (j, path) in svc.paths.iter().enumerate() {
            let plain = path.len() > 1
                && path.starts_with('/')
                && !path.starts_with("//")
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.~:".contains(&b))
                && !path.split('/').any(|seg| seg == "." || seg == "..");
            if !plain {
                p.add(
                    format!("{key}.paths[{j}]"),
                    format!(
                        "{path:?} is not a path prefix: start with one '/', then letters, digits and / - _ . ~ : only"
                    ),
                );
            }
        }
    }
}

/// `[environments.sandbox]`: only with a sandbox host, and each renamed scope is one the
/// definition asks for somewhere (a rename of a scope written nowhere is a typo that would leave
/// sandbox apps asking for the production scope).
fn check_environments(p: &mut Problems, spec: &ProviderSpec) {
    let Some(env) = &spec.environments.sandbox else {
        return;
    };
    if spec.api.sandbox_base_url.is_none() {
        p.add(
            "environments.sandbox",
            "needs the sandbox's API host in api.sandbox_base_url: apps choose environment = \"sandbox\" only where there is one",
        );
    }
    let is_scope = |s: &str| {
        !s.is_empty()
            && s.len() <= 512
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c == ',' || c == '+' || c.is_control())
    };
    let a = &spec.authorize;
    let t = &spec.token;
    let written: Vec<&str> = a
        .default_scopes
        .iter()
        .chain(&a.required_scopes)
        .map(String::as_str)
        .chain(a.extra_params.values().map(String::as_str))
        .chain(
            std::iter::once(&t.exchange)
                .chain(
                    [&t.upgrade, &t.refresh, &t.revoke, &t.introspect]
                        .into_iter()
                        .flatten(),
                )
                .flat_map(|c| c.params.values().map(String::as_str)),
        )
        .collect();
    for (from, to) in &env.scopes {
        let key = format!("environments.sandbox.scopes.{from:?}");
        if !is_scope(from) || !is_scope(to) {
            p.add(
                key,
                "a scope rename names one scope on each side: no spaces, commas or '+', at most 512 characters",
            );
            continue;
        }
        if from == to {
            p.add(key, "renames the scope to itself");
            continue;
        }
        let used = written.iter().any(|w| {
            w.split(|c: char| c.is_whitespace() || c == ',' || c == '+')
                .any(|word| word == from)
        });
        if !used {
            p.add(
                key,
                "names a scope the definition never asks for (authorize.default_scopes, required_scopes, extra_params or a token call's params)",
            );
        }
    }
}

fn check_regions(p: &mut Problems, spec: &ProviderSpec, endpoints: Endpoints) {
    let mut seen: Vec<&str> = Vec::new();
    let mut bases: Vec<&str> = Vec::new();
    for (i, r) in spec.regions.iter().enumerate() {
        let key = format!("regions[{i}]");
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 32
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            p.add(
                format!("{key}.name"),
                format!(
                    "{:?} is not a region name: use 1 to 32 lower-case letters, digits or '-' (na, eu, fe)",
                    r.name
                ),
            );
        }
        if seen.contains(&r.name.as_str()) {
            p.add(
                format!("{key}.name"),
                format!("region {:?} is listed twice", r.name),
            );
        }
        seen.push(&r.name);
        check_endpoint(
            p,
            &format!("{key}.authorize_url"),
            &r.authorize_url,
            endpoints,
        );
        check_endpoint(p, &format!("{key}.token_url"), &r.token_url, endpoints);
        check_endpoint(
            p,
            &format!("{key}.api_base_url"),
            &r.api_base_url,
            endpoints,
        );
        let base = r.api_base_url.as_str().trim_end_matches('/');
        if bases.contains(&base) {
            p.add(
                format!("{key}.api_base_url"),
                "is another region's API base too: each region has its own host (a connection is recognised by its base)",
            );
        }
        bases.push(base);
    }
    if let Some(first) = spec.regions.first() {
        let same = |a: &url::Url, b: &url::Url| {
            a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/')
        };
        for (what, region_url, top, top_key) in [
            (
                "authorize_url",
                &first.authorize_url,
                &spec.authorize.url,
                "authorize.url",
            ),
            (
                "token_url",
                &first.token_url,
                &spec.token.exchange.url,
                "token.exchange.url",
            ),
            (
                "api_base_url",
                &first.api_base_url,
                &spec.api.base_url,
                "api.base_url",
            ),
        ] {
            if !same(region_url, top) {
                p.add(
                    format!("regions[0].{what}"),
                    format!("the first region is the default and must repeat {top_key} ({top})"),
                );
            }
        }
    }
}

/// `[identities.NAME]`: a name an app can write, sections that pass the same checks as the
/// definition's own `[authorize]`, `[token]` and `[refresh]` (reported under
/// `identities.NAME.`), and `api_headers` like `api.headers` (a fixed value allowed: it names the
/// identity), none of them one the definition already sends.
fn check_identities(p: &mut Problems, spec: &ProviderSpec, stem: &str, endpoints: Endpoints) {
    if !spec.identities.is_empty() && spec.oauth1.is_some() {
        p.add("identities", "identities are not supported with [oauth1]");
    }
    // An identity names its own issuer's hosts; which region's they would be is not said.
    if !spec.identities.is_empty() && !spec.regions.is_empty() {
        p.add(
            "identities",
            "identities are not supported with [[regions]] (an identity's hosts are its issuer's, in no region)",
        );
    }
    for (name, id) in &spec.identities {
        let key = format!("identities.{name}");
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            p.add(
                &key,
                format!("{name:?} is not an identity name: 1 to 32 lower-case letters, digits or '-' (\"google\")"),
            );
        }
        let mut view = spec.as_identity(Some(name));
        view.identities.clear();
        let mut own = Problems::new(&p.file);
        let _ = validate(&view, stem, endpoints, &mut own);
        for e in own.list {
            if ["authorize", "token", "refresh"]
                .iter()
                .any(|s| e.key == *s || e.key.starts_with(&format!("{s}.")))
            {
                p.add(format!("{key}.{}", e.key), e.problem);
            }
        }
        check_headers(
            p,
            &format!("{key}.api_headers"),
            &id.api_headers,
            &spec.api.credential_header,
            &[
                "client_id",
                "account_id",
                "developer_token",
                "api_version",
                "user_agent",
            ],
            spec.api.version.is_some(),
            true,
        );
        for (i, h) in id.api_headers.iter().enumerate() {
            if spec
                .api
                .headers
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case(&h.name))
            {
                p.add(
                    format!("{key}.api_headers[{i}].name"),
                    format!("{:?} is already in api.headers; an identity adds headers, it does not change the definition's", h.name),
                );
            }
        }
    }
}

fn check_api_headers(p: &mut Problems, api: &ApiSpec) {
    check_headers(
        p,
        "api.headers",
        &api.headers,
        &api.credential_header,
        &[
            "client_id",
            "account_id",
            "developer_token",
            "api_version",
            "user_agent",
        ],
        api.version.is_some(),
        false,
    );
    if let Some(v) = &api.version {
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            p.add(
                "api.version",
                format!("{v:?} is not a version: 1 to 32 letters, digits, '-', '_' or '.' (LinkedIn: 202511)"),
            );
        }
    }
}

/// `[api.soap]`: a token that travels in a header otherwise (the envelope replaces the header),
/// XML names for its entries, media types that are types, entry templates as `api.headers`.
fn check_soap(p: &mut Problems, api: &ApiSpec) {
    let Some(soap) = &api.soap else {
        return;
    };
    if api.credential_in != CredentialPlacement::Header {
        p.add(
            "api.soap",
            "only works with credential_in = \"header\" (a SOAP call's token goes in its envelope instead of that header)",
        );
    }
    let xml_name = |n: &str| {
        n.len() <= 100
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    if !xml_name(&soap.credential_element) {
        p.add(
            "api.soap.credential_element",
            format!(
                "{:?} is not an XML element name (AuthenticationToken)",
                soap.credential_element
            ),
        );
    }
    if soap.content_types.is_empty() {
        p.add(
            "api.soap.content_types",
            "list at least one media type (text/xml)",
        );
    }
    for (i, t) in soap.content_types.iter().enumerate() {
        let ok = t.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"/+-.".contains(&c))
        });
        if !ok {
            p.add(
                format!("api.soap.content_types[{i}]"),
                format!("{t:?} is not a media type (text/xml)"),
            );
        }
    }
    for (i, e) in soap.elements.iter().enumerate() {
        if !xml_name(&e.name) {
            p.add(
                format!("api.soap.elements[{i}].name"),
                format!("{:?} is not an XML element name (DeveloperToken)", e.name),
            );
        } else if e.name == soap.credential_element
            || soap.elements[..i].iter().any(|o| o.name == e.name)
        {
            p.add(
                format!("api.soap.elements[{i}].name"),
                format!(
                    "{:?} is listed twice (or is the credential element)",
                    e.name
                ),
            );
        }
        if !e.paths.is_empty() {
            p.add(
                format!("api.soap.elements[{i}].paths"),
                "header entries go in every SOAP call; paths do not apply",
            );
        }
        let allowed = [
            "client_id",
            "account_id",
            "developer_token",
            "api_version",
            "user_agent",
        ];
        match header_placeholders(&e.value, &allowed) {
            Ok(names) if names.is_empty() => p.add(
                format!("api.soap.elements[{i}].value"),
                "a fixed value belongs in the caller's envelope; use a placeholder ({developer_token})",
            ),
            Ok(names) if names.contains(&"api_version") && api.version.is_none() => p.add(
                format!("api.soap.elements[{i}].value"),
                "uses {api_version}: set api.version to the version calls ask for",
            ),
            Ok(_) => {}
            Err(e) => p.add(format!("api.soap.elements[{i}].value"), e),
        }
    }
}

/// Checks a list of headers (`api.headers`, a token call's `headers`): valid names, none that
/// tokenwarden or the HTTP client sets or that carries the credential, none twice, and values
/// that are templates over `allowed` placeholders only.
fn check_headers(
    p: &mut Problems,
    key_prefix: &str,
    headers: &[crate::provider::ApiHeaderSpec],
    credential_header: &str,
    allowed: &[&str],
    version_set: bool,
    fixed_ok: bool,
) {
    let mut seen: Vec<String> = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let key = format!("{key_prefix}[{i}]");
        let lower = h.name.to_ascii_lowercase();
        let name_ok = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !name_ok {
            p.add(
                format!("{key}.name"),
                format!("{:?} is not a header name", h.name),
            );
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.eq_ignore_ascii_case(credential_header)
        {
            p.add(
                format!("{key}.name"),
                format!(
                    "{:?} is set by tokenwarden or the HTTP client; a definition cannot send it",
                    h.name
                ),
            );
        } else if seen.contains(&lower) {
            p.add(
                format!("{key}.name"),
                format!("{:?} is listed twice", h.name),
            );
        }
        seen.push(lower);
        let listed = allowed
            .iter()
            .map(|a| format!("{{{a}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        match header_placeholders(&h.value, allowed) {
            Ok(names) if names.is_empty() && h.paths.is_empty() && !fixed_ok => p.add(
                format!("{key}.value"),
                format!("a fixed value belongs in the caller's request; use {listed}, or limit a protocol header to the paths that need it (paths = [\"/rest/\"])"),
            ),
            Ok(names) if names.contains(&"api_version") && !version_set => p.add(
                format!("{key}.value"),
                "uses {api_version}: set api.version to the version calls ask for",
            ),
            Ok(_) => {}
            Err(e) => p.add(format!("{key}.value"), e),
        }
        for (j, path) in h.paths.iter().enumerate() {
            let ok = path.starts_with('/')
                && path.len() <= 200
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
            if !ok {
                p.add(
                    format!("{key}.paths[{j}]"),
                    format!("{path:?} is not a path prefix under the API base: start it with '/' (\"/rest/\")"),
                );
            }
        }
    }
}

/// Placeholders of a header value, each one of `allowed`.
fn header_placeholders<'t>(template: &'t str, allowed: &[&str]) -> Result<Vec<&'t str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..end];
        if !allowed.contains(&name) {
            let listed = allowed
                .iter()
                .map(|a| format!("{{{a}}}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "unknown placeholder {{{name}}} in {template:?}; a header here takes {listed}, never a token, a code or the client secret"
            ));
        }
        out.push(name);
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unopened '}}' in {template:?}"));
    }
    Ok(out)
}

pub(crate) fn compile_rules(
    rules: &[RuleSpec],
    prefix: &str,
    key: &str,
    style: RefreshStyle,
    p: &mut Problems,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, spec) in rules.iter().enumerate() {
        let k = format!("{key}[{i}]");
        match Rule::compile(format!("{prefix}#{i}"), spec) {
            Ok(rule) => out.push(rule),
            Err(e) => p.add(&k, e),
        }
        if spec.action == Some(Action::RefreshAndRetry) && !style.can_refresh() {
            p.add(
                format!("{k}.action"),
                "refresh_and_retry, but this provider cannot refresh tokens; use reauthorize",
            );
        }
        if spec.kind == Kind::Ok && spec.action.is_some_and(|a| a != Action::None) {
            p.add(format!("{k}.action"), "a rule of kind ok takes no action");
        }
        for (j, w) in spec.wait.iter().enumerate() {
            if w.after.is_some() == w.until.is_some() {
                p.add(
                    format!("{k}.wait[{j}]"),
                    "give exactly one of after or until",
                );
            }
        }
        if let Some(u) = &spec.docs_url {
            check_url(p, &format!("{k}.docs_url"), u);
        }
    }
    out
}

/// A value as a definition file writes it (`"refresh_token"`, not `RefreshToken`): problems quote
/// what the person can search for in their file.
fn as_written<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(|s| format!("\"{s}\"")))
        .unwrap_or_else(|| "an unknown value".to_string())
}
