//! Why a refresh that someone asked for (the API's `POST /v1/connections/{id}/refresh`, the
//! dashboard's Refresh button) handed back a token without refreshing it.

use crate::ServerState;
use tokenwarden_core::id::ConnectionId;

/// Why a refresh that was asked for handed back a token without refreshing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRefreshed {
    /// The platform does not renew this token set (a TikTok Business long-term token, a Meta
    /// long-lived token): it is served until it expires, then a person re-authorizes.
    NotRenewable,
    /// Another refresh stored a newer token meanwhile; that one is handed back.
    NewerStored,
}

impl NotRefreshed {
    /// Why, for `issued` of connection `id`, when it was not refreshed.
    pub(crate) async fn of(
        s: &ServerState,
        id: &ConnectionId,
        issued: &tokenwarden_engine::Issued,
    ) -> Option<NotRefreshed> {
        if issued.refreshed {
            return None;
        }
        let conn = s.store.get_connection(id).await.ok().flatten()?;
        let renews = s
            .providers
            .get(conn.provider.as_str())
            .is_some_and(|p| p.spec.refresh.renews(&issued.tokens));
        Some(if renews {
            NotRefreshed::NewerStored
        } else {
            NotRefreshed::NotRenewable
        })
    }

    /// Its stable code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            NotRefreshed::NotRenewable => "not_renewable",
            NotRefreshed::NewerStored => "newer_stored",
        }
    }

    /// One sentence for a person.
    pub(crate) fn message(self) -> &'static str {
        match self {
            NotRefreshed::NotRenewable => {
                "Not refreshed: the platform does not renew this token. It is served until it expires; the health probe checks that it still works, a warning comes days before the end, and then the connection must be authorized again."
            }
            NotRefreshed::NewerStored => {
                "Not refreshed by this call: another refresh stored a newer token meanwhile, and that one is handed back."
            }
        }
    }
}
