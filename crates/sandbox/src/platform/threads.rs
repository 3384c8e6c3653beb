use crate::Sandbox;
use crate::error_case::{ErrorCase, ErrorDetail, Reply};
use axum::Router;
pub(crate) const CASES: &[ErrorCase] = &[];
pub(crate) fn render(_case: ErrorCase, _d: &ErrorDetail) -> Reply {
    Reply::json(500, &serde_json::json!({}))
}
pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
}
