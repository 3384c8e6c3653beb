//! Axum's extractors with their rejections answered as [`ApiError`]s (a JSON error like every
//! other, never axum's text), and the checks of what a request gives.

use crate::ServerState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::Value;

/// `Query`, with a malformed query answered as a JSON error like every other.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<ServerState> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ServerState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))
    }
}

/// `Path`, with a segment that is not UTF-8 text once decoded (`%FF`) answered as a JSON error
/// like every other (400 `bad_id`: every path parameter of the API is an id), not axum's text.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<ServerState> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ServerState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, s)
            .await
            .map(|Path(v)| PathParam(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", e.body_text()))
    }
}

/// `Json`, with a malformed or wrongly typed body answered as a JSON error like every other:
/// 415 without `Content-Type: application/json`, 413 over the body limit, 400 for text that is
/// not JSON, and 422 for JSON that does not fit (a missing or unknown field, a wrong type, or not
/// an object at all: serde would otherwise take `[…]` for a struct's fields in order).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<ServerState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, s: &ServerState) -> Result<Self, ApiError> {
        let Json(v) = Json::<Value>::from_request(req, s)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
        fitted(v).map(Body)
    }
}

/// A JSON body as `T`: it must be an object, and fit `T` (422 `bad_body` otherwise). A number
/// is read as JSON Schema reads it: `437.0` is the integer 437.
pub(crate) fn fitted<T: serde::de::DeserializeOwned>(mut v: Value) -> Result<T, ApiError> {
    whole_numbers(&mut v);
    if !v.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_body",
            format!("the body does not fit: {e}"),
        )
    })
}

/// `?limit=N` checked against `1..=max` (absent: `default`): a filter out of range is refused,
/// not quietly changed.
pub(crate) fn limit(given: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            format!("limit must be between 1 and {max}; {n} is not"),
        )),
    }
}

/// Writes every number with no fractional part (within ±2^53, where floats are exact) as an
/// integer, so that an integer field takes `60.0` as the document says it may.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_numbers),
        Value::Object(o) => o.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct B {
        n: i64,
        #[serde(default)]
        s: Option<String>,
    }

    #[test]
    fn a_body_is_an_object_whose_whole_numbers_are_integers() {
        assert_eq!(
            fitted::<B>(json!({"n": 60.0})).unwrap(),
            B { n: 60, s: None }
        );
        assert_eq!(fitted::<B>(json!({"n": -3})).unwrap().n, -3);
        for bad in [
            json!({"n": 60.5}),
            json!([60]),
            json!("x"),
            json!({"n": 1, "x": 2}),
        ] {
            let e = fitted::<B>(bad.clone()).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
    }
}
