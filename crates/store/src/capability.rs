//! The store's capabilities, one trait per topic; [`crate::Store`] is all of them at once. Each
//! file holds one trait and, where a layer in front of the store passes it through, its
//! [`crate::Delegate`] implementation. `crate::sql` implements each in the file of the same name.

mod api_keys;
mod apps;
mod authorizations;
mod connections;
mod coordination;
mod dashboard_sessions;
mod encryption;
mod events;
mod refreshes;
mod retention;
mod webhooks;

pub use api_keys::ApiKeys;
pub use apps::Apps;
pub use authorizations::Authorizations;
pub use connections::Connections;
pub use coordination::Coordination;
pub use dashboard_sessions::DashboardSessions;
pub use encryption::Encryption;
pub use events::Events;
pub use refreshes::Refreshes;
pub use retention::Retention;
pub use webhooks::Webhooks;
