//! Provider apps (OAuth clients) and the problems raised against an app as a whole.

use crate::{App, Delegate, StoreError};
use async_trait::async_trait;
use tokenwarden_core::connection::Problem;
use tokenwarden_core::id::{AppId, ProviderId};

/// Provider apps and their app-level problems (hardening rule 5).
#[async_trait]
pub trait Apps: Send + Sync {
    /// Inserts or replaces an app (the client secret is encrypted).
    async fn put_app(&self, app: &App) -> Result<(), StoreError>;
    /// One app.
    async fn get_app(&self, provider: &ProviderId, app: &AppId) -> Result<Option<App>, StoreError>;
    /// Apps, of one provider or all.
    async fn list_apps(&self, provider: Option<&ProviderId>) -> Result<Vec<App>, StoreError>;
    /// Deletes an app; true if it existed.
    async fn delete_app(&self, provider: &ProviderId, app: &AppId) -> Result<bool, StoreError>;
    /// Raises (or refreshes the text of) an app-level problem (hardening rule 5).
    async fn raise_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        problem: &Problem,
    ) -> Result<(), StoreError>;
    /// Clears an app-level problem by code; true if it was open.
    async fn clear_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        code: &str,
    ) -> Result<bool, StoreError>;
    /// Open app-level problems.
    async fn app_problems(
        &self,
        provider: &ProviderId,
        app: &AppId,
    ) -> Result<Vec<Problem>, StoreError>;
}

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Apps> + Send + Sync> Apps for T {
    async fn put_app(&self, app: &App) -> Result<(), StoreError> {
        self.delegate().put_app(app).await
    }

    async fn get_app(&self, provider: &ProviderId, app: &AppId) -> Result<Option<App>, StoreError> {
        self.delegate().get_app(provider, app).await
    }

    async fn list_apps(&self, provider: Option<&ProviderId>) -> Result<Vec<App>, StoreError> {
        self.delegate().list_apps(provider).await
    }

    async fn delete_app(&self, provider: &ProviderId, app: &AppId) -> Result<bool, StoreError> {
        self.delegate().delete_app(provider, app).await
    }

    async fn raise_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        problem: &Problem,
    ) -> Result<(), StoreError> {
        self.delegate()
            .raise_app_problem(provider, app, problem)
            .await
    }

    async fn clear_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        code: &str,
    ) -> Result<bool, StoreError> {
        self.delegate().clear_app_problem(provider, app, code).await
    }

    async fn app_problems(
        &self,
        provider: &ProviderId,
        app: &AppId,
    ) -> Result<Vec<Problem>, StoreError> {
        self.delegate().app_problems(provider, app).await
    }
}
