//! [`Apps`] on SQL.

use super::SqlStore;
use super::row::{from_ms, ms, parse_id, problem_code};
use crate::Apps;
use crate::crypto::Place;
use crate::error::{Result, StoreError};
use crate::model::*;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokenwarden_core::connection::Problem;
use tokenwarden_core::id::{AppId, ProviderId};

fn app_row_key(provider: &ProviderId, app: &AppId) -> String {
    // Neither id may contain '/', so the key is unambiguous.
    format!("{provider}/{app}")
}

#[async_trait]
impl Apps for SqlStore {
    async fn put_app(&self, app: &App) -> Result<()> {
        let key = app_row_key(&app.provider, &app.id);
        let ct = self
            .seal_secret(
                &Place::new("apps", "client_secret_ct", &key),
                &app.client_secret,
            )
            .await?;
        let developer_token_ct = match &app.developer_token {
            Some(t) => Some(
                self.seal_secret(&Place::new("apps", "developer_token_ct", &key), t)
                    .await?,
            ),
            None => None,
        };
        sqlx::query(
            "INSERT INTO apps (row_key, provider, app_id, client_id, client_secret_ct, redirect_uri, created_at, updated_at, environment, developer_token_ct, region, user_agent, refresh_token_ends_after_secs, identity)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (row_key) DO UPDATE SET client_id = excluded.client_id, client_secret_ct = excluded.client_secret_ct,
               redirect_uri = excluded.redirect_uri, updated_at = excluded.updated_at, environment = excluded.environment,
               developer_token_ct = excluded.developer_token_ct, region = excluded.region,
               user_agent = excluded.user_agent, refresh_token_ends_after_secs = excluded.refresh_token_ends_after_secs,
               identity = excluded.identity",
        )
        .bind(&key)
        .bind(app.provider.as_str())
        .bind(app.id.as_str())
        .bind(&app.client_id)
        .bind(ct)
        .bind(&app.redirect_uri)
        .bind(ms(app.created_at))
        .bind(ms(app.updated_at))
        .bind(app.environment.as_str())
        .bind(developer_token_ct)
        .bind(app.region.clone())
        .bind(app.user_agent.clone())
        .bind(
            app.refresh_token_ends_after
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        )
        .bind(app.identity.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_app(&self, provider: &ProviderId, app: &AppId) -> Result<Option<App>> {
        let row = sqlx::query("SELECT * FROM apps WHERE row_key = $1")
            .bind(app_row_key(provider, app))
            .fetch_optional(&self.pool)
            .await?;
        self.decoded(|| row.as_ref().map(|r| self.row_to_app(r)).transpose())
            .await
    }

    async fn list_apps(&self, provider: Option<&ProviderId>) -> Result<Vec<App>> {
        let rows = match provider {
            Some(p) => {
                sqlx::query("SELECT * FROM apps WHERE provider = $1 ORDER BY row_key")
                    .bind(p.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM apps ORDER BY row_key")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        self.decoded(|| rows.iter().map(|r| self.row_to_app(r)).collect())
            .await
    }

    async fn delete_app(&self, provider: &ProviderId, app: &AppId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM apps WHERE row_key = $1")
            .bind(app_row_key(provider, app))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn raise_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        p: &Problem,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_problems (provider, app_id, code, title, fix, since) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (provider, app_id, code) DO UPDATE SET title = excluded.title, fix = excluded.fix",
        )
        .bind(provider.as_str())
        .bind(app.as_str())
        .bind(p.code.as_str())
        .bind(&p.title)
        .bind(&p.fix)
        .bind(ms(p.since))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_app_problem(
        &self,
        provider: &ProviderId,
        app: &AppId,
        code: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM app_problems WHERE provider = $1 AND app_id = $2 AND code = $3",
        )
        .bind(provider.as_str())
        .bind(app.as_str())
        .bind(code)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn app_problems(&self, provider: &ProviderId, app: &AppId) -> Result<Vec<Problem>> {
        let rows = sqlx::query("SELECT code, title, fix, since FROM app_problems WHERE provider = $1 AND app_id = $2 ORDER BY since, code")
            .bind(provider.as_str())
            .bind(app.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Problem {
                    code: problem_code(r.try_get("code")?)?,
                    title: r.try_get("title")?,
                    fix: r.try_get("fix")?,
                    since: from_ms(r.try_get("since")?)?,
                })
            })
            .collect()
    }
}

impl SqlStore {
    fn row_to_app(&self, r: &AnyRow) -> Result<App> {
        let row_key: String = r.try_get("row_key")?;
        let ct: Vec<u8> = r.try_get("client_secret_ct")?;
        Ok(App {
            provider: parse_id("provider", r.try_get("provider")?)?,
            id: parse_id("app id", r.try_get("app_id")?)?,
            client_id: r.try_get("client_id")?,
            client_secret: self
                .open_secret(&Place::new("apps", "client_secret_ct", &row_key), &ct)?,
            redirect_uri: r.try_get("redirect_uri")?,
            developer_token: match r.try_get::<Option<Vec<u8>>, _>("developer_token_ct")? {
                Some(ct) => Some(
                    self.open_secret(&Place::new("apps", "developer_token_ct", &row_key), &ct)?,
                ),
                None => None,
            },
            environment: {
                let e: String = r.try_get("environment")?;
                e.parse().map_err(|_| {
                    StoreError::Corrupt(format!("app {row_key} has environment {e:?}"))
                })?
            },
            created_at: from_ms(r.try_get("created_at")?)?,
            updated_at: from_ms(r.try_get("updated_at")?)?,
            region: r.try_get("region")?,
            user_agent: r.try_get("user_agent")?,
            identity: r.try_get("identity")?,
            refresh_token_ends_after: match r
                .try_get::<Option<i64>, _>("refresh_token_ends_after_secs")?
            {
                Some(secs) => Some(std::time::Duration::from_secs(
                    u64::try_from(secs).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "app {row_key} has a negative refresh-token end"
                        ))
                    })?,
                )),
                None => None,
            },
        })
    }
}
