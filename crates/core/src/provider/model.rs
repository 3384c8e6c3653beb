//! The shape of a provider definition file.

use crate::classify::{Action, Blame, Kind};
use crate::id::ProviderId;
use crate::span::serde_span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// One platform, as its definition file describes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Stable id, e.g. `snapchat`; must equal the file name without `.toml`.
    pub id: ProviderId,
    /// Display name, e.g. "Snapchat Marketing API".
    pub name: String,
    /// One line on what this definition covers.
    #[serde(default)]
    pub description: String,
    /// The platform's developer documentation.
    pub docs_url: Url,
    /// The browser leg of the authorization-code flow.
    pub authorize: AuthorizeSpec,
    /// Calls to the token endpoint(s).
    pub token: TokenSpec,
    /// When and how tokens are renewed.
    pub refresh: RefreshSpec,
    /// How to call the platform's API with a token.
    pub api: ApiSpec,
    /// Published rate limits.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSpec>,
    /// How the platform reports errors, and what each error means.
    #[serde(default)]
    pub errors: ErrorSpec,
    /// Callbacks the platform sends to the app (a user removed it: `[callbacks.deauthorize]`).
    #[serde(default)]
    pub callbacks: crate::platform_callback::CallbacksSpec,
    /// The platform's regions, each with its own authorize, token and API hosts (Amazon Ads: NA,
    /// EU, FE). The first is the default and repeats `authorize.url`, `token.exchange.url` and
    /// `api.base_url`; an app picks another with `region = "eu"` in its configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionSpec>,
    /// OAuth 1.0a (RFC 5849) instead of OAuth 2.0 (X Ads API): the request-token leg before the
    /// authorize page, and HMAC-SHA1 signatures on the token calls and every API call. See
    /// [`OAuth1Spec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth1: Option<OAuth1Spec>,
    /// What differs for an app of the platform's sandbox environment besides the API host
    /// (`api.sandbox_base_url`): Microsoft Advertising's sandbox asks for its own scope. See
    /// [`EnvironmentsSpec`].
    #[serde(default, skip_serializing_if = "EnvironmentsSpec::is_empty")]
    pub environments: EnvironmentsSpec,
    /// Other issuers of the platform's tokens, by name (Microsoft Advertising accounts signed in
    /// with Google: `[identities.google]`). An app picks one with `identity = "google"`; its
    /// consent, code exchange and refresh then go to that issuer, and its API calls carry the
    /// identity's `api_headers`. See [`IdentitySpec`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, IdentitySpec>,
}

/// `[identities.NAME]`: another issuer of tokens the platform's API accepts. A Google OAuth
/// client is its own app (client id and secret), so the identity belongs to the app: the
/// definition's `[authorize]`, `[token]` and `[refresh]` are replaced by the identity's, the API
/// stays the definition's, and every API call (and the probe) also carries `api_headers`
/// (Microsoft Advertising: `IdentityProvider: Google`). The identity's `errors.rules` are tried
/// before the definition's, so its token endpoint's refusals are explained in its own words.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// What the identity is, for people ("Google account").
    #[serde(default)]
    pub note: String,
    /// The identity's consent page, scopes and parameters (replaces `[authorize]`).
    pub authorize: AuthorizeSpec,
    /// The identity's token endpoint calls (replaces `[token]`).
    pub token: TokenSpec,
    /// How the identity's tokens are renewed (replaces `[refresh]`).
    pub refresh: RefreshSpec,
    /// Headers every API call and probe carries for a connection of this identity, besides the
    /// definition's `api.headers`; a SOAP call (`[api.soap]`) also gets each as a header entry of
    /// its envelope. A fixed value is allowed here (`IdentityProvider = "Google"`); placeholders
    /// are those of `api.headers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_headers: Vec<ApiHeaderSpec>,
    /// Rules tried before the definition's (`[[identities.NAME.errors.rules]]`).
    #[serde(default)]
    pub errors: IdentityErrorsSpec,
}

/// The error rules of one identity.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityErrorsSpec {
    /// Rules tried before the definition's (the identity's token endpoint refusals).
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// An identity an app asked for that its definition does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} has no identity {wanted:?}; {}", if .allowed.is_empty() { "its definition lists no [identities]: remove identity".to_string() } else { format!("its identities are {}", .allowed.join(", ")) })]
pub struct IdentityError {
    /// The provider.
    pub provider: String,
    /// What was asked for.
    pub wanted: String,
    /// The identities it has.
    pub allowed: Vec<String>,
}

/// `[environments.sandbox]`: how an app configured with `environment = "sandbox"` sees the
/// definition. Production is the definition itself; `sandbox` is the only other environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentsSpec {
    /// The sandbox environment's differences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<EnvironmentSpec>,
}

impl EnvironmentsSpec {
    /// Whether nothing differs between the environments but the API host.
    pub fn is_empty(&self) -> bool {
        self.sandbox.as_ref().is_none_or(|e| e.scopes.is_empty())
    }
}

/// One environment's differences from the definition.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Scopes the environment knows under another name: the definition's (production) name →
    /// the environment's. Microsoft Advertising: `https://ads.microsoft.com/msads.manage` →
    /// `https://si.ads.microsoft.com/msads.manage`. The rename applies wherever the scope is
    /// written: `authorize.default_scopes`, `authorize.required_scopes`, `authorize.extra_params`
    /// and every token call's `params` (a fixed `scope` sent on refresh).
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

/// An OAuth 1.0a three-legged flow (RFC 5849 §2). The other two legs are the usual keys, read the
/// OAuth 1.0a way: `authorize.url` is the page the person is sent to with `oauth_token` (the
/// temporary credentials), and `[token.exchange]` is the access-token call (token credentials),
/// whose `{code}` is the `oauth_verifier` the callback brings; its `oauth_*` params travel in the
/// signed `Authorization: OAuth` header, the others in the body. The answer is form-encoded
/// (`oauth_token`, `oauth_token_secret`, …), read with `[token.response]` (`token_secret` names
/// the secret's field). Tokens do not expire and are not refreshed (`refresh.style = "none"`,
/// `token_expires = false`), and API calls carry a fresh signature (`api.credential_in =
/// "oauth1"`), made with the app's client id and secret as consumer key and secret.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth1Spec {
    /// The temporary-credentials endpoint (`POST …/oauth/request_token`), called with
    /// `oauth_callback` (tokenwarden's callback URL) signed in the header.
    pub request_token_url: Url,
    /// The signature method; only `HMAC-SHA1` (RFC 5849 §3.4.2).
    #[serde(default)]
    pub signature_method: SignatureMethod,
    /// Fixed extra parameters of the request-token call, sent in the body and signed (X:
    /// `x_auth_access_type = "write"`).
    #[serde(default)]
    pub request_token_params: BTreeMap<String, String>,
}

/// OAuth 1.0a signature methods tokenwarden can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum SignatureMethod {
    /// HMAC-SHA1 keyed by `consumer_secret&token_secret` (RFC 5849 §3.4.2).
    #[default]
    #[serde(rename = "HMAC-SHA1")]
    HmacSha1,
}

/// One region of a platform that keeps its accounts apart by region: its own hosts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Short name an app configures (`na`, `eu`, `fe`): lower-case letters, digits and `-`.
    pub name: String,
    /// The region's authorize URL (replaces `authorize.url`).
    pub authorize_url: Url,
    /// The region's token endpoint (replaces the URL of every `[token.*]` call that is at
    /// `token.exchange.url`).
    pub token_url: Url,
    /// The region's API base (replaces `api.base_url`).
    pub api_base_url: Url,
    /// What the region covers, for people.
    #[serde(default)]
    pub note: String,
}

/// A region an app asked for that its definition does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The definition has regions, and this is not one of them.
    #[error("{provider} has no region {wanted:?}; its regions are {}", .allowed.join(", "))]
    Unknown {
        /// The provider.
        provider: String,
        /// What was asked for.
        wanted: String,
        /// The regions it has, the default first.
        allowed: Vec<String>,
    },
    /// The definition has no regions at all.
    #[error(
        "{provider} has no regions (its definition lists no [[regions]]); remove region = {wanted:?}"
    )]
    NoRegions {
        /// The provider.
        provider: String,
        /// What was asked for.
        wanted: String,
    },
}

/// The authorize redirect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeSpec {
    /// The platform's authorize page.
    pub url: Url,
    /// Name of the client id parameter (`client_id`, TikTok's `client_key` or `app_id`).
    #[serde(default = "default_client_id_param")]
    pub client_id_param: String,
    /// Name of the scope parameter; empty when the platform takes none (TikTok Business: the
    /// permissions are fixed on the developer app).
    #[serde(default = "default_scope_param")]
    pub scope_param: String,
    /// How scopes are joined in the request and split in the response.
    #[serde(default = "default_scope_separator")]
    pub scope_separator: String,
    /// Scopes requested when the caller names none.
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// Scopes without which nothing works (Threads: `threads_basic`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Fixed extra parameters, e.g. `response_type = "code"`.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// Whether to send a PKCE S256 challenge.
    #[serde(default)]
    pub pkce: bool,
    /// Callback parameters that may carry the code, in order (TikTok Business: `auth_code`, `code`).
    #[serde(default = "default_code_params")]
    pub callback_code_params: Vec<String>,
    /// The issuer, when the platform sends `iss` on the callback (RFC 9207).
    #[serde(default)]
    pub issuer: Option<String>,
}

/// The token-endpoint calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Code → token.
    pub exchange: TokenCall,
    /// Short-lived → long-lived, made at once after the exchange (Threads, Meta).
    #[serde(default)]
    pub upgrade: Option<TokenCall>,
    /// Renewal; present exactly when `refresh.style` can renew.
    #[serde(default)]
    pub refresh: Option<TokenCall>,
    /// Revocation (RFC 7009 or the platform's own), used when a connection is deleted.
    #[serde(default)]
    pub revoke: Option<TokenCall>,
    /// Token introspection (RFC 7662): usable as the health probe (`api.probe.via =
    /// "introspection"`). `{token}` is the access token, `{token_type_hint}` is `access_token`.
    #[serde(default)]
    pub introspect: Option<TokenCall>,
    /// Where the fields sit in a token response.
    #[serde(default)]
    pub response: TokenResponseSpec,
}

impl TokenSpec {
    /// Every token call the definition makes, the exchange first.
    pub fn calls_mut(&mut self) -> impl Iterator<Item = &mut TokenCall> {
        std::iter::once(&mut self.exchange).chain(
            [
                &mut self.upgrade,
                &mut self.refresh,
                &mut self.revoke,
                &mut self.introspect,
            ]
            .into_iter()
            .flatten(),
        )
    }
}

/// HTTP method of a token call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Method {
    /// GET, parameters in the query.
    GET,
    /// POST, parameters in the body as `encoding` says.
    POST,
}

/// How a token call carries its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `application/x-www-form-urlencoded` body.
    Form,
    /// JSON object body (TikTok Business).
    Json,
    /// Query string (Threads and Meta GET calls).
    Query,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// The parameters (templates) carry the credentials themselves, under the platform's own
    /// names (TikTok Business: `app_id` and `secret`).
    #[default]
    Params,
    /// HTTP Basic with client id and secret, each form-urlencoded first (RFC 6749 §2.3.1,
    /// `client_secret_basic`).
    #[serde(alias = "client_secret_basic")]
    Basic,
    /// `client_id` and `client_secret` added to the request body (RFC 6749 §2.3.1,
    /// `client_secret_post`).
    #[serde(alias = "client_secret_post")]
    Post,
}

/// Which token of a set a call is about (RFC 7009 revokes one token per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// The access token.
    AccessToken,
    /// The refresh token.
    RefreshToken,
}

impl TokenKind {
    /// The RFC 7009 / RFC 7662 `token_type_hint` value.
    pub fn hint(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::RefreshToken => "refresh_token",
        }
    }
}

/// One call to a token endpoint. Parameter values are templates over `{client_id}`,
/// `{client_secret}`, `{code}`, `{redirect_uri}`, `{code_verifier}`, `{refresh_token}`,
/// `{access_token}`, and in revocation and introspection calls `{token}` and `{token_type_hint}`;
/// a parameter whose template expands to nothing is left out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCall {
    /// GET or POST.
    pub method: Method,
    /// The endpoint.
    pub url: Url,
    /// How parameters travel.
    pub encoding: Encoding,
    /// How the client authenticates.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Parameter name → template.
    pub params: BTreeMap<String, String>,
    /// Revocation only: the tokens to revoke, one call each in this order, with `{token}` and
    /// `{token_type_hint}` set to each (RFC 7009 §2.1). A token the set lacks is skipped. Empty:
    /// one call, with the templates naming the tokens themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenKind>,
    /// Revocation only: what the platform withdraws. `grant` (the default, and the safe reading):
    /// everything the person gave this app, including tokens issued since, so an old grant is
    /// not revoked after a re-authorization by the same account. `token`: only the tokens sent
    /// (TikTok Business `revoke_token`), so the superseded ones are revoked then too.
    #[serde(default)]
    pub revokes: Revokes,
    /// Headers this call carries besides the client authentication (Reddit wants a unique
    /// `User-Agent` on every call, token calls included). Values are templates over
    /// `{client_id}` and `{user_agent}` only: never a token, a code or the client secret. A header
    /// whose template lacks a value is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ApiHeaderSpec>,
}

/// What a revocation call withdraws at the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Revokes {
    /// The whole grant of the person to the app.
    #[default]
    Grant,
    /// Only the tokens sent.
    Token,
}

/// Where fields sit in a token response. Paths are dotted (`data.access_token`) relative to `root`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenResponseSpec {
    /// Object holding the fields (TikTok Business and tt_user: `data`); empty for the top level.
    #[serde(default)]
    pub root: String,
    /// Access token field.
    #[serde(default = "default_access_token")]
    pub access_token: String,
    /// Refresh token field.
    #[serde(default = "default_refresh_token")]
    pub refresh_token: String,
    /// Seconds-to-expiry field.
    #[serde(default = "default_expires_in")]
    pub expires_in: String,
    /// Seconds until the refresh token expires, where the platform says.
    #[serde(default)]
    pub refresh_expires_in: Option<String>,
    /// Token type field.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// Granted scope field: a separated string or an array.
    #[serde(default = "default_scope_field")]
    pub scope: String,
    /// Fields holding external account ids (a string or an array each).
    #[serde(default)]
    pub account_ids: Vec<String>,
    /// OAuth 1.0a: the token secret's field (`oauth_token_secret`). Stored encrypted like the
    /// tokens, used only to sign, never sent, logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
}

impl Default for TokenResponseSpec {
    fn default() -> Self {
        TokenResponseSpec {
            root: String::new(),
            access_token: default_access_token(),
            refresh_token: default_refresh_token(),
            expires_in: default_expires_in(),
            refresh_expires_in: None,
            token_type: default_token_type(),
            scope: default_scope_field(),
            account_ids: Vec::new(),
            token_secret: None,
        }
    }
}

/// How a platform renews access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStyle {
    /// RFC 6749 `refresh_token` grant (Snapchat, TikTok Login Kit).
    RefreshToken,
    /// A long-lived token renews itself (Threads `th_refresh_token`), subject to a minimum age.
    SelfRefresh,
    /// The long-lived token comes from exchanging a short-lived one at connect time and cannot be
    /// renewed without the person (Meta): watched and forecast instead.
    Exchange,
    /// No renewal at all (TikTok Business advertiser tokens live until revoked): watched instead.
    None,
    /// The RFC 6749 `refresh_token` grant for token sets that came with a refresh token; a set
    /// without one is a long-term token, watched like [`RefreshStyle::None`]. TikTok Business:
    /// advertiser tokens have no refresh token, while the SDK documents `/oauth2/access_token/`
    /// answers with a `refresh_token` and a 24 h access token for creators (platforms.md
    /// "Corrections (2026-12)" 2). Which applies is decided per token set by
    /// [`RefreshSpec::renews`].
    RefreshTokenWhenIssued,
}

impl RefreshStyle {
    /// Whether tokenwarden can renew tokens of this platform without a person (some of them,
    /// for [`RefreshStyle::RefreshTokenWhenIssued`]: see [`RefreshSpec::renews`] for one set).
    pub fn can_refresh(self) -> bool {
        matches!(
            self,
            RefreshStyle::RefreshToken
                | RefreshStyle::SelfRefresh
                | RefreshStyle::RefreshTokenWhenIssued
        )
    }

    /// Whether renewing uses the `refresh_token` grant.
    pub fn uses_refresh_token(self) -> bool {
        matches!(
            self,
            RefreshStyle::RefreshToken | RefreshStyle::RefreshTokenWhenIssued
        )
    }

    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            RefreshStyle::RefreshToken => "refresh-token grant",
            RefreshStyle::SelfRefresh => "self-refresh of a long-lived token",
            RefreshStyle::Exchange => "exchange of a short-lived token (not renewable)",
            RefreshStyle::None => "none (long-term token, watched)",
            RefreshStyle::RefreshTokenWhenIssued => "refresh-token grant if issued, else watched",
        }
    }
}

/// Renewal timing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    /// How access is renewed.
    pub style: RefreshStyle,
    /// Renew this long before the access token expires.
    #[serde(with = "serde_span")]
    pub margin: Duration,
    /// Spread renewals by up to this much (earlier), so a crowd does not renew at one instant.
    #[serde(with = "serde_span", default)]
    pub jitter: Duration,
    /// A token younger than this cannot be renewed (Threads: 24 h).
    #[serde(with = "serde_span::option", default)]
    pub min_age: Option<Duration>,
    /// Access-token lifetime to assume when the response omits or garbles `expires_in`.
    /// Absent only when `token_expires = false`.
    #[serde(with = "serde_span::option", default)]
    pub default_lifetime: Option<Duration>,
    /// Whether access tokens expire at all (false: TikTok Business advertiser tokens).
    #[serde(default = "yes")]
    pub token_expires: bool,
    /// Refresh-token lifetime when the response does not say.
    #[serde(with = "serde_span::option", default)]
    pub refresh_token_lifetime: Option<Duration>,
    /// Whether a refresh returns a new refresh token and kills the old one.
    #[serde(default)]
    pub rotates: bool,
    /// With `rotates`: how long the platform still accepts the previous refresh token after a
    /// rotation (Okta's grace period, Auth0's reuse interval). Absent: it dies at once, and
    /// reusing it may revoke the grant (RFC 9700 §4.14.2). With a grace, a refresh whose answer
    /// was lost in transit is retried at once with the same refresh token while the grace lasts;
    /// without one it is not retried at once, since the platform may have consumed it.
    #[serde(with = "serde_span::option", default)]
    pub reuse_grace: Option<Duration>,
    /// Warn this long before a token that cannot be renewed expires.
    #[serde(with = "serde_span", default = "default_warn_before")]
    pub warn_before: Duration,
    /// Whether a refresh moves the refresh token's end. `false`: the end is counted from the
    /// consent and no refresh extends it (LinkedIn: 365 days from the first authorization however
    /// often the token is used): a refresh answer's own lifetime, or `refresh_token_lifetime`,
    /// never moves it past the end already known, and only a new consent starts a new count.
    #[serde(default = "yes")]
    pub refresh_token_extends: bool,
}

impl RefreshSpec {
    /// Whether tokenwarden renews this token set without a person: by the style, and for
    /// [`RefreshStyle::RefreshTokenWhenIssued`] only when the platform issued a refresh token.
    pub fn renews(&self, set: &crate::token::TokenSet) -> bool {
        match self.style {
            RefreshStyle::RefreshTokenWhenIssued => set.refresh_token.is_some(),
            style => style.can_refresh(),
        }
    }
}

/// One more host of the API (`[[api.services]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiServiceSpec {
    /// Path prefixes this host serves, matched ignoring ASCII case (`/CampaignManagement/`,
    /// `/Api/Advertiser/Reporting/`); the first service that matches wins.
    pub paths: Vec<String>,
    /// Its production base.
    pub base_url: Url,
    /// Its sandbox base: required when the definition has `api.sandbox_base_url`.
    #[serde(default)]
    pub sandbox_base_url: Option<Url>,
}

impl ApiServiceSpec {
    /// Whether a raw call path is one this service serves.
    pub fn serves(&self, path: &str) -> bool {
        self.paths.iter().any(|p| {
            path.len() >= p.len() && path.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        })
    }
}

/// Calling the API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Production API base.
    pub base_url: Url,
    /// The platform's own sandbox API base, where one exists.
    #[serde(default)]
    pub sandbox_base_url: Option<Url>,
    /// Other hosts of the same API, each for the paths it serves (Microsoft Advertising: campaign,
    /// bulk, reporting and adinsight beside clientcenter). A call whose path starts with one of a
    /// service's `paths` goes to that service's base in the connection's environment; every other
    /// call goes to the connection's own base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ApiServiceSpec>,
    /// Where the token travels on API calls: a header (the default) or a query parameter.
    #[serde(default)]
    pub credential_in: CredentialPlacement,
    /// Header that carries the token (with `credential_in = "header"`). With the query
    /// placement it is still never taken from a caller (hardening rule 10).
    #[serde(default = "default_credential_header")]
    pub credential_header: String,
    /// With `credential_in = "query"`: the query parameter that carries the token (Threads:
    /// `access_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_param: Option<String>,
    /// Its value, a template over `{access_token}`.
    #[serde(default = "default_credential_value")]
    pub credential_value: String,
    /// A cheap authenticated call that proves the token works.
    pub probe: ProbeSpec,
    /// Headers every API call (and the probe) carries besides the credential, with values taken
    /// from the app or the connection (Google Ads `developer-token`, Amazon
    /// `Amazon-Advertising-API-ClientId`). A header whose template lacks a value is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ApiHeaderSpec>,
    /// The API version calls ask for, where the platform versions its API by a header (LinkedIn
    /// `LinkedIn-Version: 202601`); headers use it as `{api_version}`. A setting of the
    /// deployment: a user definition of the same id rolls it forward without a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Calls whose body is a SOAP envelope carry the token inside it, not in a header
    /// (Microsoft Advertising's SOAP services: `AuthenticationToken`, without "Bearer ").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<SoapSpec>,
}

/// `[api.soap]`: where a SOAP call's credential and header entries go. A call is SOAP when its
/// `Content-Type` is one of `content_types`; its body is then held (never streamed), the token is
/// written into the envelope header's `credential_element` (which the caller sends empty), and no
/// credential header is sent. See [`crate::soap`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SoapSpec {
    /// Media types that make a call SOAP, compared without parameters and ignoring case.
    #[serde(default = "default_soap_content_types")]
    pub content_types: Vec<String>,
    /// The header entry that carries the raw access token (`AuthenticationToken`).
    pub credential_element: String,
    /// Other header entries, templates as in `api.headers` (`{developer_token}`,
    /// `{account_id}`, `{client_id}`): an entry the caller left empty or out is filled (added
    /// beside the credential element, in its namespace); with `replaces`, the caller's own value
    /// is replaced too. An entry whose value is missing is left as the caller wrote it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<ApiHeaderSpec>,
}

fn default_soap_content_types() -> Vec<String> {
    vec!["text/xml".into(), "application/soap+xml".into()]
}

impl SoapSpec {
    /// Whether a call with this `Content-Type` is a SOAP call.
    pub fn matches(&self, content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else {
            return false;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        self.content_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(essence))
    }
}

/// One header sent on API calls, its value a template over `{client_id}` (the app's client id),
/// `{account_id}` (the platform account recorded on the connection), `{developer_token}` (the
/// app's developer token, a secret kept encrypted with the app: Microsoft Advertising
/// `DeveloperToken`, Google Ads `developer-token`) and `{user_agent}` (the app's configured
/// `user_agent`, else [`default_user_agent`]). Token calls' `headers` use the same shape with
/// `{client_id}` and `{user_agent}` only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiHeaderSpec {
    /// Header name.
    pub name: String,
    /// Value template. When a placeholder has no value (a setting the app does not configure,
    /// an account not yet recorded) the header is not sent: an optional header is never an error.
    pub value: String,
    /// Whether ours replaces whatever a caller sent under that name (Amazon's client id must be
    /// the app's). Otherwise a caller's own value (another Google Ads `login-customer-id`) is
    /// kept and ours is only the default.
    #[serde(default)]
    pub replaces: bool,
    /// What the header is for, for people.
    #[serde(default)]
    pub note: String,
    /// Where the header goes: path prefixes under the API base (LinkedIn's versioned `/rest`
    /// calls, `["/rest/"]`). Empty: every call. A header limited to paths may have a fixed value
    /// (a protocol version the platform requires on that part of its API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// The values [`ApiSpec::headers`] templates are filled from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderValues {
    /// The app's client id.
    pub client_id: String,
    /// The platform account recorded on the connection, when one is.
    pub account_id: Option<String>,
    /// The app's developer token, when the app has one. A secret: never logged or shown.
    pub developer_token: Option<crate::secret::Secret>,
    /// The app's configured `User-Agent`; `None`: [`default_user_agent`] of the client id.
    pub user_agent: Option<String>,
    /// The app's identity (`[identities.NAME]`), whose `api_headers` go with its calls.
    pub identity: Option<String>,
}

/// The `User-Agent` a definition's `{user_agent}` stands for when the app configures none: names
/// tokenwarden, its version and the app's client id, so it is unique per app (Reddit throttles
/// and blocks by User-Agent and asks for `<platform>:<app id>:<version> (by …)`).
pub fn default_user_agent(client_id: &str) -> String {
    let id: String = client_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .take(64)
        .collect();
    format!(
        "server:tokenwarden.{id}:v{} (by tokenwarden)",
        env!("CARGO_PKG_VERSION")
    )
}

/// What `{user_agent}` expands to: the app's own when it set one, else the default.
pub fn user_agent_for(configured: Option<&str>, client_id: &str) -> String {
    configured
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| default_user_agent(client_id))
}

/// One header ready to send: name, value, and whether it replaces a caller's own. Its `Debug`
/// never shows the value: it may hold the app's developer token.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    /// Header name as the definition writes it.
    pub name: String,
    /// The filled value.
    pub value: String,
    /// Whether it replaces a caller's header of that name.
    pub replaces: bool,
    /// Whether the value holds a secret (the developer token): it is marked sensitive on the
    /// wire and never written anywhere.
    pub sensitive: bool,
    /// The path prefixes (under the API base) it is limited to; empty: every call.
    pub paths: Vec<String>,
}

impl ExtraHeader {
    /// Whether it goes on a call to `path` (relative to the API base, with or without its
    /// leading `/`).
    pub fn applies_to(&self, path: &str) -> bool {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str()))
    }
}

impl std::fmt::Debug for ExtraHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraHeader")
            .field("name", &self.name)
            .field("replaces", &self.replaces)
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

/// Where an API call carries the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CredentialPlacement {
    /// In `credential_header` (`Authorization: Bearer …`, TikTok's `Access-Token: …`).
    #[default]
    Header,
    /// In the `credential_param` query parameter (Threads documents `access_token`). The URL
    /// then holds a secret: it must never be logged, shown or put in an error.
    Query,
    /// An OAuth 1.0a signature (`[oauth1]`) in `credential_header` (`Authorization: OAuth …`),
    /// made afresh for each request over its method, URL and form body with the app's consumer
    /// key and secret and the connection's token and token secret (X Ads API).
    #[serde(rename = "oauth1")]
    OAuth1,
}

impl ApiSpec {
    /// The definition's extra headers filled from `values`; a header whose template names a
    /// value that is missing or empty is left out.
    pub fn extra_headers(&self, values: &HeaderValues) -> Vec<ExtraHeader> {
        ApiSpec::fill_headers(&self.headers, values, self.version.as_deref())
    }

    /// Any list of header templates (`api.headers`, a token call's `headers`) filled from
    /// `values` (and `{api_version}` from `api_version`); a header whose template names a missing
    /// or empty value is left out.
    pub fn fill_headers(
        headers: &[ApiHeaderSpec],
        values: &HeaderValues,
        api_version: Option<&str>,
    ) -> Vec<ExtraHeader> {
        headers
            .iter()
            .filter_map(|h| {
                Some(ExtraHeader {
                    name: h.name.clone(),
                    value: fill_header(&h.value, values, api_version)?,
                    replaces: h.replaces,
                    sensitive: h.value.contains("{developer_token}"),
                    paths: h.paths.clone(),
                })
            })
            .collect()
    }

    /// The header and value our credential travels in, when it travels in a header.
    pub fn credential_header_value(&self, access_token: &str) -> Option<(&str, String)> {
        match self.credential_in {
            CredentialPlacement::Header => Some((
                self.credential_header.as_str(),
                self.credential_value
                    .replace("{access_token}", access_token),
            )),
            CredentialPlacement::Query | CredentialPlacement::OAuth1 => None,
        }
    }

    /// Puts our credential into `url`'s query when the definition says it travels there,
    /// replacing every parameter of that name, so a caller's own cannot override it or reach
    /// the platform.
    pub fn place_query_credential(&self, url: &mut Url, access_token: &str) {
        let (CredentialPlacement::Query, Some(name)) =
            (self.credential_in, self.credential_param.as_deref())
        else {
            return;
        };
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let value = self
            .credential_value
            .replace("{access_token}", access_token);
        url.set_query(None);
        let mut q = url.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair(name, &value);
    }
}

/// Fills one header template; `None` when a placeholder has no value.
fn fill_header(template: &str, values: &HeaderValues, api_version: Option<&str>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        let value = match name {
            "client_id" => Some(values.client_id.clone()),
            "account_id" => values.account_id.clone(),
            "api_version" => api_version.map(str::to_string),
            "developer_token" => values
                .developer_token
                .as_ref()
                .map(crate::secret::Secret::expose)
                .map(str::to_string),
            "user_agent" => Some(user_agent_for(
                values.user_agent.as_deref(),
                &values.client_id,
            )),
            _ => None,
        }
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let out = out.trim().to_string();
    // A value that could split the header or smuggle another one is never sent.
    (!out.is_empty() && !out.bytes().any(|b| b.is_ascii_control())).then_some(out)
}

/// How the health probe asks whether a token works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbeVia {
    /// A cheap authenticated API call (`method` and `path` under the API base).
    #[default]
    Api,
    /// The authorization server's introspection endpoint (RFC 7662, `[token.introspect]`):
    /// `active: false` counts as an RFC 6750 `invalid_token` answer.
    Introspection,
}

/// The health probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// An API call, or token introspection.
    #[serde(default)]
    pub via: ProbeVia,
    /// Method.
    #[serde(default = "default_probe_method")]
    pub method: String,
    /// Path (with query) relative to the API base, starting with `/`; unused with introspection.
    #[serde(default)]
    pub path: String,
    /// A JSON body the probe sends (with `Content-Type: application/json`), for platforms whose
    /// cheapest "who am I" call is a POST with a body (Microsoft Advertising REST `User/Query`
    /// with `{"UserId": null}`). Validated as JSON; unset sends no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How often to probe a healthy connection.
    #[serde(with = "serde_span", default = "default_probe_every")]
    pub every: Duration,
    /// Where the probe's answer names the platform account (a JSON pointer, RFC 6901, such as
    /// `/me/id`): the account recorded with each grant, so a re-authorization with another
    /// account is noticed. Unset: only the token response's `account_ids` are compared.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Where the probe's answer gives the account's display name (a JSON pointer).
    #[serde(default)]
    pub account_name: Option<String>,
}

impl ProbeSpec {
    /// The account a successful probe answer names, per `account_id` / `account_name`; `None`
    /// when the definition names no pointer or the answer has no such field.
    pub fn account(&self, body: &[u8]) -> Option<crate::connection::Account> {
        let pointer = self.account_id.as_deref()?;
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let text = |p: &str| match v.pointer(p)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        Some(crate::connection::Account {
            id: text(pointer)?,
            name: self.account_name.as_deref().and_then(text),
        })
    }
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateScope {
    /// All calls of one app (client).
    App,
    /// All calls made with one access token.
    Token,
    /// All calls on one external account (advertiser, ad account, profile).
    Account,
    /// Each endpoint separately.
    Endpoint,
}

/// A published rate limit: `requests` per `per`, counted by `scope`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// What is counted.
    pub scope: RateScope,
    /// How many requests.
    pub requests: u32,
    /// In what window.
    #[serde(with = "serde_span")]
    pub per: Duration,
    /// Where the figure comes from.
    #[serde(default)]
    pub note: String,
}

/// How a platform reports errors.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// Where codes sit in an error body; tried in order, the first whose `code` path holds a
    /// scalar wins.
    #[serde(default)]
    pub envelopes: Vec<EnvelopeSpec>,
    /// Code values that mean success (`0` for TikTok Business, `ok` for TikTok v2).
    #[serde(default)]
    pub success_codes: Vec<String>,
    /// Headers that say how long to wait or how close the limit is.
    #[serde(default)]
    pub wait_headers: Vec<WaitHeaderSpec>,
    /// Fields of the body that say how long to wait (Google Ads
    /// `quotaErrorDetails.retryDelay`): read when no header gives a wait.
    #[serde(default)]
    pub wait_fields: Vec<WaitFieldSpec>,
    /// The platform's error documentation.
    #[serde(default)]
    pub docs_url: Option<Url>,
    /// What each error means. Rules that name sub-codes are tried first (a sub-code the
    /// definition knows decides over its code: Meta's 1 and 2 "unknown error" codes carry a
    /// sub-code that says what happened); within each group, the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Batch answers whose items carry their own status (Snapchat `sub_request_status`): an
    /// HTTP 200 whose items failed is not `ok`.
    #[serde(default)]
    pub items: Option<ItemsSpec>,
}

/// Where a batch answer keeps its items and how an item tells that it failed. Every array at
/// the top level of the body whose objects carry `status` is a list of items.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsSpec {
    /// The field of an item that holds its status (`sub_request_status`).
    pub status: String,
    /// Status values (case-insensitive) of an item that succeeded; any other value failed.
    pub success: Vec<String>,
    /// Dotted paths in a failed item to its code, tried in order.
    #[serde(default)]
    pub code: Vec<String>,
    /// Dotted paths in a failed item to its message, tried in order.
    #[serde(default)]
    pub message: Vec<String>,
}

/// One body field that carries a wait.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitFieldSpec {
    /// Dotted path to the field (`*` matches any array element or object member).
    pub path: String,
    /// How to read it.
    pub format: WaitFieldFormat,
}

/// Formats of a wait written in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFieldFormat {
    /// A number of seconds.
    Seconds,
    /// A protobuf `Duration` in JSON: seconds with an `s` suffix, maybe fractional (`"40591s"`,
    /// `"1.5s"`); a bare number is read as seconds too.
    Duration,
}

/// Paths of the fields of one error envelope. Paths are dotted; a number indexes an array, and
/// `*` matches any array element or object member (the first for which the rest resolves).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSpec {
    /// The code (`error.code`, `code`, `error_code`, `error`).
    pub code: String,
    /// Read this envelope from an XML body (a SOAP fault) instead of JSON. The XML is read into
    /// a tree of element local names (namespace prefixes dropped, attributes ignored, only the
    /// first of repeated sibling elements kept, text of leaf elements as strings), so the paths
    /// name elements: `Envelope.Body.Fault.detail.*.Errors.*.Code`. Bounded and without entity
    /// expansion: a DOCTYPE or anything malformed yields no envelope.
    #[serde(default)]
    pub xml: bool,
    /// The code path ends on an object of one member, `{"<family>": "<CODE>"}` (Google Ads
    /// `errorCode: {"authenticationError": "OAUTH_TOKEN_EXPIRED"}`): the member's value is the
    /// code and its key the sub-code, so rules can name the family in `subcodes`.
    #[serde(default)]
    pub keyed: bool,
    /// The sub-code (`error.error_subcode`).
    #[serde(default)]
    pub subcode: Option<String>,
    /// The message for people. Alternatives separated by `|` (`details|detail`) are tried in
    /// order, the first that holds a value wins.
    #[serde(default)]
    pub message: Option<String>,
    /// A trace id to quote to the platform's support (`fbtrace_id`, `request_id`, `log_id`).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// A boolean saying the error is temporary (Meta `is_transient`).
    #[serde(default)]
    pub transient: Option<String>,
    /// A heading the platform wrote for the end user (Meta `error_user_title`).
    #[serde(default)]
    pub user_title: Option<String>,
    /// A sentence the platform wrote for the end user (Meta `error_user_msg`): often the most
    /// useful words in the answer.
    #[serde(default)]
    pub user_message: Option<String>,
}

/// Formats of headers that carry waits or usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitHeaderFormat {
    /// Whole seconds to wait.
    Seconds,
    /// Seconds or an HTTP date (`Retry-After`, RFC 9110 §10.2.3).
    RetryAfter,
    /// Unix time (seconds) at which the window resets.
    EpochSeconds,
    /// Either: a value from 10^9 up is a Unix time, a smaller one seconds to wait
    /// (`X-RateLimit-Reset` is the first on GitHub and X, the second on Reddit).
    SecondsOrEpoch,
    /// The IETF `RateLimit` field (`limit=100, remaining=0, reset=30` or `"default";r=0;t=30`):
    /// its reset.
    RateLimit,
    /// Meta `X-Business-Use-Case-Usage`: usage percentages and
    /// `estimated_time_to_regain_access` in minutes.
    MetaBusinessUseCase,
    /// A JSON object of usage percentages (Meta `X-App-Usage`, `X-Ad-Account-Usage`).
    UsagePercentJson,
}

/// One header to read for waits or usage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitHeaderSpec {
    /// Header name (case-insensitive).
    pub name: String,
    /// How to read it.
    pub format: WaitHeaderFormat,
}

/// The kind of body a rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// Nothing, or only white space.
    Empty,
    /// Parsed as JSON (possibly repaired after truncation).
    Json,
    /// An HTML page (an edge, load balancer or login page).
    Html,
    /// Anything else.
    Text,
}

/// Where a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    /// A platform API call.
    #[default]
    Api,
    /// A token endpoint (exchange, refresh, upgrade, revoke).
    TokenEndpoint,
    /// The consent step: the platform's authorize page, or its redirect back to the app with
    /// error parameters (RFC 6749 §4.1.2.1). A redirect whose `Location` carries `error` or
    /// `error_code` is read as this context whatever the caller said.
    Authorize,
}

/// A code, or an inclusive range `lo-hi` of numeric codes (`51000-51999`). Written as a string
/// or, for statuses, a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CodePattern {
    /// A number (statuses).
    Number(i64),
    /// Text: one code, or `lo-hi`.
    Text(String),
}

/// One error rule: all given conditions must hold (within a list, any item may).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Platform codes (from the envelope).
    #[serde(default)]
    pub codes: Vec<CodePattern>,
    /// Sub-codes.
    #[serde(default)]
    pub subcodes: Vec<CodePattern>,
    /// HTTP statuses.
    #[serde(default)]
    pub statuses: Vec<CodePattern>,
    /// Case-insensitive fragments of the platform's message (or, without an envelope, the body).
    #[serde(default)]
    pub message_contains: Vec<String>,
    /// A header whose value contains one of the fragments (case-insensitive).
    #[serde(default)]
    pub header: Option<HeaderMatch>,
    /// The kind of body.
    #[serde(default)]
    pub body: Option<BodyKind>,
    /// Only for responses from this context.
    #[serde(default)]
    pub context: Option<Context>,
    /// A field of the (JSON) body and the values it may hold: how work that is not finished
    /// answers in HTTP 200 (Threads container `status = IN_PROGRESS`).
    #[serde(default)]
    pub field: Option<FieldMatch>,
    /// What it is.
    pub kind: Kind,
    /// What to do; derived from the kind and the refresh style when absent.
    #[serde(default)]
    pub action: Option<Action>,
    /// Whose problem it is; derived from the kind when absent.
    #[serde(default)]
    pub blame: Option<Blame>,
    /// One line for a person; the kind's default when empty.
    #[serde(default)]
    pub title: String,
    /// What happened and why, in plain words; the kind's default when empty.
    #[serde(default)]
    pub explanation: String,
    /// The concrete fix; the kind's default when empty.
    #[serde(default)]
    pub fix: String,
    /// A page that explains it; the provider's error docs when absent.
    #[serde(default)]
    pub docs_url: Option<Url>,
    /// The wait this error asks for when no header says; the first matching entry wins.
    #[serde(default)]
    pub wait: Vec<WaitRule>,
}

/// A body-field condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMatch {
    /// Dotted path to the field (`status`, `data.status`; a number indexes an array).
    pub path: String,
    /// Values (compared case-insensitively), any of which may be there.
    pub equals: Vec<String>,
}

/// A header condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// Fragments, any of which may appear.
    pub contains: Vec<String>,
}

/// A wait implied by an error (TikTok: QPS → next second, QPM → 5 minutes, QPD → 00:00 UTC).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRule {
    /// Applies only when the message contains one of these (case-insensitive); always when empty.
    #[serde(default)]
    pub message_contains: Vec<String>,
    /// Wait this long.
    #[serde(with = "serde_span::option", default)]
    pub after: Option<Duration>,
    /// Or wait until this moment.
    #[serde(default)]
    pub until: Option<WaitUntil>,
}

/// A moment to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitUntil {
    /// The next 00:00 UTC (daily quotas).
    NextUtcMidnight,
}

/// Texts of a kind's default explanation, from the common rules file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KindText {
    /// One line.
    pub title: String,
    /// What happened.
    pub explanation: String,
    /// What to do.
    pub fix: String,
}

/// The rules that apply to every provider (RFC 6749 §5.2, RFC 6750 §3.1, HTTP statuses) and the
/// default texts of each kind. Loaded from `providers/_common.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommonRules {
    /// Envelopes tried after the provider's (RFC 6749 `error`/`error_description`).
    #[serde(default)]
    pub envelopes: Vec<EnvelopeSpec>,
    /// Headers read for every provider (`Retry-After`).
    #[serde(default)]
    pub wait_headers: Vec<WaitHeaderSpec>,
    /// Rules tried after the provider's.
    pub rules: Vec<RuleSpec>,
    /// Default texts by kind name.
    pub kinds: BTreeMap<String, KindText>,
}

fn default_client_id_param() -> String {
    "client_id".into()
}
fn default_scope_param() -> String {
    "scope".into()
}
fn default_scope_separator() -> String {
    " ".into()
}
fn default_code_params() -> Vec<String> {
    vec!["code".into()]
}
fn default_access_token() -> String {
    "access_token".into()
}
fn default_refresh_token() -> String {
    "refresh_token".into()
}
fn default_expires_in() -> String {
    "expires_in".into()
}
fn default_token_type() -> String {
    "token_type".into()
}
fn default_scope_field() -> String {
    "scope".into()
}
fn default_credential_header() -> String {
    "Authorization".into()
}
fn default_credential_value() -> String {
    "Bearer {access_token}".into()
}
fn default_probe_method() -> String {
    "GET".into()
}
fn default_probe_every() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_warn_before() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn yes() -> bool {
    true
}

impl ProviderSpec {
    /// Checks that `wanted` is one of the definition's identities (`None`, the definition's
    /// own issuer, is always fine).
    pub fn check_identity(&self, wanted: Option<&str>) -> Result<(), IdentityError> {
        match wanted {
            Some(w) if !self.identities.contains_key(w) => Err(IdentityError {
                provider: self.id.to_string(),
                wanted: w.to_string(),
                allowed: self.identities.keys().cloned().collect(),
            }),
            _ => Ok(()),
        }
    }

    /// The same definition as an app of identity `name` sees it: the identity's `[authorize]`,
    /// `[token]` and `[refresh]` in place of the definition's. The API and its headers stay:
    /// the identity's `api_headers` are added by [`ProviderSpec::extra_headers`] from the
    /// app's [`HeaderValues::identity`]. `None` or an unknown name (configuration refuses those)
    /// leaves the definition as it is.
    pub fn as_identity(&self, name: Option<&str>) -> ProviderSpec {
        let mut s = self.clone();
        if let Some(id) = name.and_then(|n| self.identities.get(n)) {
            s.authorize = id.authorize.clone();
            s.token = id.token.clone();
            s.refresh = id.refresh.clone();
        }
        s
    }

    /// The headers an API call (or the probe) carries besides the credential: `api.headers`,
    /// then the `api_headers` of the app's identity (`values.identity`), each filled from
    /// `values`.
    pub fn extra_headers(&self, values: &HeaderValues) -> Vec<ExtraHeader> {
        let mut out = self.api.extra_headers(values);
        out.extend(self.identity_headers(values));
        out
    }

    /// The `api_headers` of the app's identity (`values.identity`), filled; none without one.
    fn identity_headers(&self, values: &HeaderValues) -> Vec<ExtraHeader> {
        values
            .identity
            .as_deref()
            .and_then(|n| self.identities.get(n))
            .map(|id| ApiSpec::fill_headers(&id.api_headers, values, self.api.version.as_deref()))
            .unwrap_or_default()
    }

    /// The header entries a SOAP call's envelope carries besides the credential
    /// (`[api.soap] elements`), then the `api_headers` of the app's identity as entries of the
    /// same names (Microsoft Advertising: the `IdentityProvider` element, Part A §2). Empty
    /// without `[api.soap]`.
    pub fn soap_elements(&self, values: &HeaderValues) -> Vec<ExtraHeader> {
        let Some(soap) = &self.api.soap else {
            return Vec::new();
        };
        let mut out = ApiSpec::fill_headers(&soap.elements, values, self.api.version.as_deref());
        out.extend(self.identity_headers(values));
        out
    }

    /// The names of its regions, the default first; empty for a platform without regions.
    pub fn region_names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }

    /// Checks that `wanted` is one of the definition's regions (`None` is always fine: the
    /// default region, or no regions at all).
    pub fn check_region(&self, wanted: Option<&str>) -> Result<(), RegionError> {
        let Some(w) = wanted else { return Ok(()) };
        if self.regions.is_empty() {
            return Err(RegionError::NoRegions {
                provider: self.id.to_string(),
                wanted: w.to_string(),
            });
        }
        if self.regions.iter().any(|r| r.name == w) {
            Ok(())
        } else {
            Err(RegionError::Unknown {
                provider: self.id.to_string(),
                wanted: w.to_string(),
                allowed: self.region_names(),
            })
        }
    }

    /// The region an app's tokens belong to: `wanted` when it is one of the definition's
    /// regions, else the default (first) one; `None` for a platform without regions.
    pub fn region(&self, wanted: Option<&str>) -> Option<&RegionSpec> {
        wanted
            .and_then(|w| self.regions.iter().find(|r| r.name == w))
            .or_else(|| self.regions.first())
    }

    /// The same definition with `wanted`'s hosts in place of the default ones: its authorize
    /// URL, its token URL on every token call made to `token.exchange.url`, and its API base.
    /// The default region, an unknown one (configuration refuses those before they get here)
    /// or a platform without regions leave the definition as it is.
    pub fn in_region(&self, wanted: Option<&str>) -> ProviderSpec {
        let mut s = self.clone();
        let (Some(first), Some(r)) = (self.regions.first(), self.region(wanted)) else {
            return s;
        };
        if r.name == first.name {
            return s;
        }
        s.authorize.url = r.authorize_url.clone();
        let default_token = self.token.exchange.url.clone();
        for call in s.token.calls_mut() {
            if call.url == default_token {
                call.url = r.token_url.clone();
            }
        }
        s.api.base_url = r.api_base_url.clone();
        s
    }

    /// The same definition as an app of `env` sees it: for the sandbox environment, the scopes
    /// renamed by `[environments.sandbox] scopes` wherever they are written. Production, or a
    /// definition without `[environments.sandbox]`, leaves it as it is. The API host is chosen
    /// separately ([`ProviderSpec::api_base`]), since a connection records it.
    pub fn in_environment(&self, env: crate::connection::Environment) -> ProviderSpec {
        let mut s = self.clone();
        let renames = match (env, &self.environments.sandbox) {
            (crate::connection::Environment::Sandbox, Some(e)) if !e.scopes.is_empty() => &e.scopes,
            _ => return s,
        };
        let rename = |v: &mut String| *v = rename_scopes(v, renames);
        s.authorize
            .default_scopes
            .iter_mut()
            .chain(s.authorize.required_scopes.iter_mut())
            .chain(s.authorize.extra_params.values_mut())
            .for_each(rename);
        for call in s.token.calls_mut() {
            call.params.values_mut().for_each(rename);
        }
        s
    }

    /// The same definition for an app whose refresh tokens end `after` the consent (Google: 7
    /// days for an app whose OAuth consent screen is in Testing status): the refresh token's
    /// lifetime is the shorter of the two, and a refresh never moves the end, so the monitor
    /// forecasts it (`expires_soon`) and the scheduler never counts on a later one.
    pub fn with_refresh_token_end(&self, after: std::time::Duration) -> ProviderSpec {
        let mut s = self.clone();
        let lifetime = s
            .refresh
            .refresh_token_lifetime
            .map_or(after, |d| d.min(after));
        s.refresh.refresh_token_lifetime = Some(lifetime);
        s.refresh.refresh_token_extends = false;
        s
    }

    /// `scopes` (a caller's own choice) under the names `env` knows them by (see
    /// [`ProviderSpec::in_environment`]).
    pub fn scopes_in(&self, env: crate::connection::Environment, scopes: &[String]) -> Vec<String> {
        match (env, &self.environments.sandbox) {
            (crate::connection::Environment::Sandbox, Some(e)) => scopes
                .iter()
                .map(|s| e.scopes.get(s).unwrap_or(s).clone())
                .collect(),
            _ => scopes.to_vec(),
        }
    }

    /// The API base for an environment.
    pub fn api_base(&self, env: crate::connection::Environment) -> &Url {
        match (env, &self.api.sandbox_base_url) {
            (crate::connection::Environment::Sandbox, Some(u)) => u,
            _ => &self.api.base_url,
        }
    }

    /// The same definition with the origin (`scheme://host:port`) of every URL replaced by `base`
    /// (which may carry a path prefix): how the daemon is pointed at the sandbox, or at a proxy,
    /// without code that knows it. `https://accounts.snapchat.com/login/oauth2/authorize` with base
    /// `http://127.0.0.1:8181/snapchat` becomes `http://127.0.0.1:8181/snapchat/login/oauth2/authorize`.
    ///
    /// The platform's own sandbox API host (`api.sandbox_base_url`) goes under
    /// [`SANDBOX_HOST_PREFIX`] instead: `https://sandbox-ads.tiktok.com/open_api/v1.3` becomes
    /// `http://127.0.0.1:8181/tiktok-business/sandbox/open_api/v1.3`. The two hosts serve the same
    /// paths but know different tokens, so they must stay apart after the move.
    pub fn with_origin(&self, base: &Url) -> ProviderSpec {
        let mut s = self.clone();
        let re = |u: &mut Url| *u = rebase(u, base);
        re(&mut s.authorize.url);
        re(&mut s.token.exchange.url);
        for call in [
            &mut s.token.upgrade,
            &mut s.token.refresh,
            &mut s.token.revoke,
            &mut s.token.introspect,
        ]
        .into_iter()
        .flatten()
        {
            re(&mut call.url);
        }
        re(&mut s.api.base_url);
        if let Some(o) = s.oauth1.as_mut() {
            re(&mut o.request_token_url);
        }
        // The services' hosts serve distinct paths, so they share the origin the main base moves
        // to; their sandbox bases go where the main sandbox base goes.
        let sandbox_base = Url::parse(&format!(
            "{}{SANDBOX_HOST_PREFIX}",
            base.as_str().trim_end_matches('/')
        ));
        for svc in &mut s.api.services {
            re(&mut svc.base_url);
            if let (Some(u), Ok(b)) = (svc.sandbox_base_url.as_mut(), sandbox_base.as_ref()) {
                *u = rebase(u, b);
            }
        }
        if let Some(u) = s.api.sandbox_base_url.as_mut() {
            let prefix = base.as_str().trim_end_matches('/');
            // A prefix that is itself a valid URL path cannot fail to parse; keep the original
            // rather than send a request somewhere unintended if it somehow does.
            if let Ok(b) = Url::parse(&format!("{prefix}{SANDBOX_HOST_PREFIX}")) {
                *u = rebase(u, &b);
            }
        }
        // An identity's issuer is another host serving its own paths: under `/identity/<name>`.
        for (name, id) in &mut s.identities {
            let prefix = base.as_str().trim_end_matches('/');
            if let Ok(b) = Url::parse(&format!("{prefix}{IDENTITY_HOST_PREFIX}/{name}")) {
                id.authorize.url = rebase(&id.authorize.url, &b);
                for call in id.token.calls_mut() {
                    call.url = rebase(&call.url, &b);
                }
            }
        }
        // The default region moves with the top-level URLs it repeats; every other region goes
        // under `/region/<name>`, since the regions' hosts serve the same paths (Amazon's
        // /auth/o2/token on api.amazon.com and api.amazon.co.uk) and must stay apart.
        for (i, r) in s.regions.iter_mut().enumerate() {
            let prefix = base.as_str().trim_end_matches('/');
            let b = if i == 0 {
                Some(base.clone())
            } else {
                Url::parse(&format!("{prefix}{REGION_HOST_PREFIX}/{}", r.name)).ok()
            };
            if let Some(b) = b {
                r.authorize_url = rebase(&r.authorize_url, &b);
                r.token_url = rebase(&r.token_url, &b);
                r.api_base_url = rebase(&r.api_base_url, &b);
            }
        }
        s
    }
}

/// Where [`ProviderSpec::with_origin`] puts a region's hosts (all but the default region's),
/// under the new origin: `/amazon-ads/region/eu/auth/o2/token`.
pub const REGION_HOST_PREFIX: &str = "/region";

/// Where [`ProviderSpec::with_origin`] puts an identity's issuer (its authorize and token hosts),
/// under the new origin: `/microsoft-ads/identity/google/token`.
pub const IDENTITY_HOST_PREFIX: &str = "/identity";

/// Where [`ProviderSpec::with_origin`] puts the platform's sandbox API host, under the new origin.
/// An emulator serves the sandbox host's API under this prefix (`/tiktok-business/sandbox/…`).
pub const SANDBOX_HOST_PREFIX: &str = "/sandbox";

/// `value` with every whole scope named in `renames` replaced by its new name. Scopes are the
/// words between spaces, commas and `+` (every separator a definition uses), so a rename never
/// touches part of a longer scope: `https://ads.microsoft.com/msads.manage.x` stays.
fn rename_scopes(value: &str, renames: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(renames.get(word.as_str()).unwrap_or(word));
        word.clear();
    };
    for ch in value.chars() {
        if ch.is_whitespace() || ch == ',' || ch == '+' {
            flush(&mut word, &mut out);
            out.push(ch);
        } else {
            word.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn rebase(u: &Url, base: &Url) -> Url {
    let prefix = base.as_str().trim_end_matches('/');
    let mut text = format!("{prefix}{}", u.path());
    if let Some(q) = u.query() {
        text.push('?');
        text.push_str(q);
    }
    // Both parts came from valid URLs; if the join is somehow not one, keep the original rather
    // than send a request somewhere unintended.
    Url::parse(&text).unwrap_or_else(|_| u.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_host_stays_apart_from_production_after_a_move() {
        let text = include_str!("../../../../providers/tiktok-business.toml");
        let spec: ProviderSpec = toml::from_str(text).unwrap();
        let moved = spec.with_origin(&Url::parse("http://127.0.0.1:8181/tiktok-business").unwrap());
        let prod = moved.api_base(crate::connection::Environment::Production);
        let sandbox = moved.api_base(crate::connection::Environment::Sandbox);
        assert_eq!(
            prod.as_str(),
            "http://127.0.0.1:8181/tiktok-business/open_api/v1.3"
        );
        assert_eq!(
            sandbox.as_str(),
            "http://127.0.0.1:8181/tiktok-business/sandbox/open_api/v1.3"
        );
        // A definition without a sandbox host has one base for both.
        let mut plain = spec.clone();
        plain.api.sandbox_base_url = None;
        let moved = plain.with_origin(&Url::parse("http://127.0.0.1:8181/x/").unwrap());
        assert_eq!(
            moved.api_base(crate::connection::Environment::Sandbox),
            moved.api_base(crate::connection::Environment::Production)
        );
    }

    #[test]
    fn extra_headers_are_filled_from_the_app_and_the_connection_or_left_out() {
        let h = |name: &str, value: &str, replaces: bool| ApiHeaderSpec {
            name: name.into(),
            value: value.into(),
            replaces,
            note: String::new(),
            paths: Vec::new(),
        };
        let text = include_str!("../../../../providers/snapchat.toml");
        let mut spec: ProviderSpec = toml::from_str(text).unwrap();
        spec.api.headers = vec![
            h("X-Client", "id {client_id}", true),
            h("login-customer-id", "{account_id}", false),
        ];
        let mut values = HeaderValues {
            client_id: "cid".into(),
            ..Default::default()
        };
        // No account recorded: only the client id header goes.
        let got = spec.api.extra_headers(&values);
        assert_eq!(
            got,
            vec![ExtraHeader {
                name: "X-Client".into(),
                value: "id cid".into(),
                replaces: true,
                sensitive: false,
                paths: Vec::new(),
            }]
        );
        values.account_id = Some("  1234567890 ".into());
        let got = spec.api.extra_headers(&values);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].value, "1234567890");
        assert!(!got[1].replaces);
        // An empty or header-splitting value is never sent.
        values.account_id = Some("1\r\nX-Evil: 1".into());
        assert_eq!(spec.api.extra_headers(&values).len(), 1);
        values.account_id = Some("   ".into());
        assert_eq!(spec.api.extra_headers(&values).len(), 1);
        // The developer token: sent only when the app has one, marked sensitive, and its value
        // never in the header's Debug.
        spec.api
            .headers
            .push(h("DeveloperToken", "{developer_token}", true));
        assert_eq!(spec.api.extra_headers(&values).len(), 1);
        values.developer_token = Some(crate::secret::Secret::new("DEVTOKEN-VALUE-42"));
        let got = spec.api.extra_headers(&values);
        let dev = got.iter().find(|e| e.name == "DeveloperToken").unwrap();
        assert_eq!(dev.value, "DEVTOKEN-VALUE-42");
        assert!(dev.sensitive && dev.replaces);
        assert!(!format!("{got:?}").contains("DEVTOKEN-VALUE-42"));
        assert!(!format!("{values:?}").contains("DEVTOKEN-VALUE-42"));
    }

    #[test]
    fn rebase_keeps_path_and_query() {
        let u = Url::parse("https://graph.threads.net/refresh_access_token?x=1").unwrap();
        let b = Url::parse("http://127.0.0.1:8181/threads/").unwrap();
        assert_eq!(
            rebase(&u, &b).as_str(),
            "http://127.0.0.1:8181/threads/refresh_access_token?x=1"
        );
    }
}
