//! [`ServerState`]: what every handler and background task of the daemon shares.

use crate::{connect_session, dashboard, deauthorize, limits, webhooks};
use std::sync::Arc;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::provider::Registry;
use tokenwarden_engine::TokenService;
use tokenwarden_oauth::OAuthClient;
use tokenwarden_store::Store;
use url::Url;

/// What every handler shares: [`Shared`] behind one reference count. axum clones the state
/// for every layer and extractor a request passes (fifteen times for a token fetch), so a clone
/// must cost one count, not one per field and a copy of the public URL.
#[derive(Debug, Clone)]
pub struct ServerState(Arc<Shared>);

impl ServerState {
    /// The state of a daemon.
    pub fn new(shared: Shared) -> Self {
        ServerState(Arc::new(shared))
    }
}

impl std::ops::Deref for ServerState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`ServerState`].
#[derive(Debug)]
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The token service.
    pub tokens: Arc<TokenService>,
    /// The provider client.
    pub oauth: OAuthClient,
    /// Provider definitions, pointed where the platforms live.
    pub providers: Arc<Registry>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where people reach this daemon (builds re-authorization links).
    pub public_url: Url,
    /// Pokes the scheduler when a new deadline may be earlier than the one it sleeps until.
    pub wake: Arc<tokio::sync::Notify>,
    /// Where webhooks may be delivered.
    pub webhooks: webhooks::WebhookPolicy,
    /// The dashboard's sessions, password and activity counts.
    pub dashboard: Arc<dashboard::Dashboard>,
    /// Limits per client address.
    pub limits: Arc<limits::ClientLimits>,
    /// The forwarding proxy (`ANY /proxy/{connection_id}/{*path}`).
    pub proxy: Arc<tokenwarden_proxy::Proxy>,
    /// Where finished connect flows may send the browser.
    pub connect: Arc<connect_session::ConnectPolicy>,
    /// The platform callbacks already taken (against replays).
    pub callbacks: Arc<deauthorize::Callbacks>,
}

impl Shared {
    /// The re-authorization link of a connection, as API errors, proxy answers, webhooks and
    /// alerts carry it: the dashboard's re-authorize page, which needs a signed-in person and
    /// mints a connect session there. Never a link that starts a flow by itself.
    pub fn reauthorize_link(&self, connection: &str) -> String {
        tokenwarden_proxy::answer::reauthorize_url(&self.public_url, connection)
    }
}
