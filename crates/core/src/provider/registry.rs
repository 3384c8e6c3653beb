//! The set of loaded provider definitions: the shipped ones, embedded in the binary, and a user's
//! own from a directory (same id: the user's file wins).

use super::model::{CommonRules, ProviderSpec, RefreshStyle};
use super::validate::{Endpoints, Problems, SpecError, compile_rules, validate};
use crate::classify::{Classifier, Common, Kind};
use crate::id::ProviderId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The shipped definitions: `(file name, TOML text)`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "amazon-ads.toml",
        include_str!("../../../../providers/amazon-ads.toml"),
    ),
    (
        "google-ads.toml",
        include_str!("../../../../providers/google-ads.toml"),
    ),
    (
        "linkedin.toml",
        include_str!("../../../../providers/linkedin.toml"),
    ),
    (
        "microsoft-ads.toml",
        include_str!("../../../../providers/microsoft-ads.toml"),
    ),
    (
        "pinterest.toml",
        include_str!("../../../../providers/pinterest.toml"),
    ),
    (
        "snapchat.toml",
        include_str!("../../../../providers/snapchat.toml"),
    ),
    (
        "tiktok-business.toml",
        include_str!("../../../../providers/tiktok-business.toml"),
    ),
    (
        "tiktok.toml",
        include_str!("../../../../providers/tiktok.toml"),
    ),
    (
        "threads.toml",
        include_str!("../../../../providers/threads.toml"),
    ),
    ("meta.toml", include_str!("../../../../providers/meta.toml")),
    (
        "reddit.toml",
        include_str!("../../../../providers/reddit.toml"),
    ),
    ("x.toml", include_str!("../../../../providers/x.toml")),
    (
        "x-ads.toml",
        include_str!("../../../../providers/x-ads.toml"),
    ),
];

/// The rules every provider shares.
pub const COMMON: (&str, &str) = (
    "_common.toml",
    include_str!("../../../../providers/_common.toml"),
);

/// Why definitions could not be loaded: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct RegistryError {
    /// Each problem, naming file and key.
    pub problems: Vec<SpecError>,
}

/// A validated provider, ready to use.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The definition.
    pub spec: ProviderSpec,
    /// Where it came from (`builtin:snapchat.toml` or a path).
    pub source: String,
    /// The TOML text it was read from.
    pub text: String,
    classifier: Classifier,
    /// Each identity's classifier: its rules before the definition's.
    identity_classifiers: BTreeMap<String, Classifier>,
}

impl Provider {
    /// Its classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The same provider with every URL's origin replaced by `base` (see
    /// [`ProviderSpec::with_origin`]); how the daemon is pointed at the sandbox.
    pub fn with_origin(&self, base: &url::Url) -> Provider {
        Provider {
            spec: self.spec.with_origin(base),
            ..self.clone()
        }
    }

    /// The provider as an app of `region` sees it: that region's authorize, token and API hosts
    /// (see [`ProviderSpec::in_region`]). Borrowed unchanged for the default region or a
    /// platform without regions.
    pub fn in_region(&self, region: Option<&str>) -> std::borrow::Cow<'_, Provider> {
        match (region, self.spec.regions.first()) {
            (Some(r), Some(first)) if r != first.name => std::borrow::Cow::Owned(Provider {
                spec: self.spec.in_region(Some(r)),
                ..self.clone()
            }),
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The provider as an app of `region`, `identity` and `env` sees it: the region's hosts
    /// ([`Provider::in_region`]), the identity's consent, token calls, refresh and token-endpoint
    /// rules ([`ProviderSpec::as_identity`]), the environment's scope names
    /// ([`ProviderSpec::in_environment`]) and, with `refresh_end`, refresh tokens that end that
    /// long after the consent ([`ProviderSpec::with_refresh_token_end`]). Borrowed unchanged
    /// when none of them differs.
    pub fn for_app(
        &self,
        region: Option<&str>,
        identity: Option<&str>,
        env: crate::connection::Environment,
        refresh_end: Option<std::time::Duration>,
    ) -> std::borrow::Cow<'_, Provider> {
        let regional = self.in_region(region);
        let renamed =
            env != crate::connection::Environment::Production && !self.spec.environments.is_empty();
        let identity = identity.filter(|n| self.spec.identities.contains_key(*n));
        if !renamed && refresh_end.is_none() && identity.is_none() {
            return regional;
        }
        let mut spec = regional.spec.as_identity(identity);
        if renamed {
            spec = spec.in_environment(env);
        }
        if let Some(d) = refresh_end {
            spec = spec.with_refresh_token_end(d);
        }
        let classifier = identity
            .and_then(|n| self.identity_classifiers.get(n))
            .unwrap_or(&regional.classifier)
            .clone();
        std::borrow::Cow::Owned(Provider {
            spec,
            classifier,
            ..regional.into_owned()
        })
    }
}

/// All loaded definitions.
#[derive(Debug, Clone)]
pub struct Registry {
    providers: BTreeMap<ProviderId, Arc<Provider>>,
}

/// The shipped common rules, compiled once per process: they are part of the binary, so every
/// check of a definition (the CLI's `providers check`, a fuzzer's millions of inputs) shares them.
fn shipped_common() -> Result<Arc<Common>, Vec<SpecError>> {
    static SHIPPED: std::sync::OnceLock<Result<Arc<Common>, Vec<SpecError>>> =
        std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(|| compile_common(COMMON.0, COMMON.1).map(Arc::new))
        .clone()
}

fn compile_common(name: &str, text: &str) -> Result<Common, Vec<SpecError>> {
    let mut p = Problems::new(name);
    let spec: CommonRules = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            p.add("", e.to_string());
            return Err(p.list);
        }
    };
    // Common rules use the kind's default action; refresh-dependent actions are resolved per provider.
    let rules = compile_rules(
        &spec.rules,
        "common",
        "rules",
        RefreshStyle::RefreshToken,
        &mut p,
    );
    let mut kinds = BTreeMap::new();
    for (name, text) in &spec.kinds {
        match name.parse::<Kind>() {
            Ok(k) => {
                kinds.insert(k, text.clone());
            }
            Err(e) => p.add(format!("kinds.{name}"), e),
        }
    }
    for k in Kind::ALL {
        if !kinds.contains_key(k) {
            p.add("kinds", format!("has no default text for {k}"));
        }
    }
    if p.list.is_empty() {
        Ok(Common {
            envelopes: spec.envelopes,
            wait_headers: spec.wait_headers,
            rules,
            kinds,
        })
    } else {
        Err(p.list)
    }
}

impl Registry {
    /// The shipped definitions. They are tested to load; an error here is a build defect.
    pub fn builtin() -> Result<Registry, RegistryError> {
        Registry::load(
            BUILTIN
                .iter()
                .map(|(n, t)| (format!("builtin:{n}"), t.to_string())),
            Endpoints::HttpsOnly,
        )
    }

    /// The shipped definitions plus `files` (`(path, text)`); a file whose id matches a shipped one
    /// replaces it. Endpoints must be https ([`Endpoints::HttpsOnly`]).
    pub fn with_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Registry, RegistryError> {
        Registry::with_files_allowing(files, Endpoints::HttpsOnly)
    }

    /// [`Registry::with_files`], with the endpoints `endpoints` allows (a test server or emulator
    /// on plain http, by explicit choice).
    pub fn with_files_allowing(
        files: impl IntoIterator<Item = (String, String)>,
        endpoints: Endpoints,
    ) -> Result<Registry, RegistryError> {
        let all = BUILTIN
            .iter()
            .map(|(n, t)| (format!("builtin:{n}"), t.to_string()))
            .chain(files);
        Registry::load(all, endpoints)
    }

    fn load(
        files: impl IntoIterator<Item = (String, String)>,
        endpoints: Endpoints,
    ) -> Result<Registry, RegistryError> {
        let common = Arc::new(
            compile_common(&format!("builtin:{}", COMMON.0), COMMON.1)
                .map_err(|problems| RegistryError { problems })?,
        );
        let mut providers = BTreeMap::new();
        let mut problems = Vec::new();
        for (source, text) in files {
            match parse_with(&common, &source, &text, endpoints) {
                Ok(p) => {
                    providers.insert(p.spec.id.clone(), Arc::new(p));
                }
                Err(mut e) => problems.append(&mut e),
            }
        }
        if problems.is_empty() {
            Ok(Registry { providers })
        } else {
            Err(RegistryError { problems })
        }
    }

    /// Validates one definition file against the shipped common rules, reporting every problem.
    /// Endpoints must be https.
    pub fn check(source: &str, text: &str) -> Result<Provider, Vec<SpecError>> {
        Registry::check_allowing(source, text, Endpoints::HttpsOnly)
    }

    /// [`Registry::check`], with the endpoints `endpoints` allows.
    pub fn check_allowing(
        source: &str,
        text: &str,
        endpoints: Endpoints,
    ) -> Result<Provider, Vec<SpecError>> {
        parse_with(&shipped_common()?, source, text, endpoints)
    }

    /// A provider by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        // Not parsed into an id first: a text that is not a valid id is no key of the map.
        self.providers.get(id)
    }

    /// Every provider, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// The ids, comma-separated (for error messages).
    pub fn ids(&self) -> String {
        self.providers
            .keys()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Replaces one provider (e.g. with its origin pointed at the sandbox).
    pub fn replace(&mut self, provider: Provider) {
        self.providers
            .insert(provider.spec.id.clone(), Arc::new(provider));
    }
}

fn parse_with(
    common: &Arc<Common>,
    source: &str,
    text: &str,
    endpoints: Endpoints,
) -> Result<Provider, Vec<SpecError>> {
    let mut p = Problems::new(source);
    let file_name = source.rsplit(['/', '\\', ':']).next().unwrap_or(source);
    let stem = file_name.strip_suffix(".toml").unwrap_or(file_name);
    let spec: ProviderSpec = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            p.add("", e.to_string().trim_end().to_string());
            return Err(p.list);
        }
    };
    let rules = validate(&spec, stem, endpoints, &mut p);
    if !p.list.is_empty() {
        return Err(p.list);
    }
    let mut identity_classifiers = BTreeMap::new();
    for (name, id) in &spec.identities {
        let key = format!("identities.{name}.errors.rules");
        let mut own = compile_rules(
            &id.errors.rules,
            &format!("{}/{name}", spec.id.as_str()),
            &key,
            id.refresh.style,
            &mut p,
        );
        own.extend(rules.iter().cloned());
        identity_classifiers.insert(name.clone(), own);
    }
    if !p.list.is_empty() {
        return Err(p.list);
    }
    let classifier = Classifier {
        provider_name: spec.name.clone(),
        refresh: spec.refresh.style,
        docs_url: spec
            .errors
            .docs_url
            .as_ref()
            .map(|u| u.to_string())
            .or_else(|| Some(spec.docs_url.to_string())),
        envelopes: spec.errors.envelopes.clone(),
        success_codes: spec.errors.success_codes.clone(),
        wait_headers: spec.errors.wait_headers.clone(),
        wait_fields: spec.errors.wait_fields.clone(),
        rules,
        items: spec.errors.items.clone(),
        common: common.clone(),
        json_keys: Default::default(),
        header_names: Default::default(),
        plain: Default::default(),
    };
    let identity_classifiers = identity_classifiers
        .into_iter()
        .map(|(name, rules)| {
            let refresh = spec.identities[&name].refresh.style;
            (
                name,
                Classifier {
                    refresh,
                    rules,
                    // Its own rules, so its own keys.
                    json_keys: Default::default(),
                    header_names: Default::default(),
                    plain: Default::default(),
                    ..classifier.clone()
                },
            )
        })
        .collect();
    Ok(Provider {
        spec,
        source: source.to_string(),
        text: text.to_string(),
        classifier,
        identity_classifiers,
    })
}
