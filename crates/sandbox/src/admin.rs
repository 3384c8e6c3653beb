use crate::Sandbox;
use axum::Router;
pub(crate) fn routes() -> Router<Sandbox> { Router::new() }
