//! Batch answers whose items carry their own status (Snapchat `sub_request_status`, platforms.md
//! §1 "Batch responses carry a per-item `sub_request_status`, so an HTTP 200 can hide failed
//! items"): finding the items that failed.

use super::body::{lookup, scalar};
use crate::provider::ItemsSpec;
use serde_json::Value;

/// A failed item: where it is, its code and message.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) list: String,
    pub(super) index: usize,
    pub(super) code: Option<String>,
    pub(super) message: Option<String>,
}

/// What a batch answer holds: how many items, and the failed ones in order.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) total: usize,
    pub(super) failed: Vec<Failed>,
}

/// Looks through every top-level array of `json` whose objects carry `spec.status`.
pub(super) fn failed(spec: &ItemsSpec, json: &Value) -> Found {
    let mut found = Found::default();
    let Value::Object(top) = json else {
        return found;
    };
    let success: Vec<String> = spec.success.iter().map(|s| s.to_lowercase()).collect();
    for (list, value) in top {
        let Value::Array(items) = value else { continue };
        for (index, item) in items.iter().enumerate() {
            let Some(status) = lookup(item, &spec.status).and_then(scalar) else {
                continue;
            };
            found.total += 1;
            if success.contains(&status.to_lowercase()) {
                continue;
            }
            let first =
                |paths: &[String]| paths.iter().find_map(|p| lookup(item, p).and_then(scalar));
            found.failed.push(Failed {
                list: list.clone(),
                index,
                code: first(&spec.code),
                message: first(&spec.message),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ItemsSpec {
        ItemsSpec {
            status: "sub_request_status".into(),
            success: vec!["SUCCESS".into()],
            code: vec!["error_code".into()],
            message: vec!["sub_request_error_reason".into()],
        }
    }

    #[test]
    fn finds_failed_items_in_any_top_level_list() {
        let v: Value = serde_json::json!({
            "request_status": "SUCCESS",
            "campaigns": [
                {"sub_request_status": "SUCCESS", "campaign": {"id": "1"}},
                {"sub_request_status": "ERROR", "sub_request_error_reason": "no", "error_code": "E3003"},
            ],
            "ads": [{"sub_request_status": "error", "sub_request_error_reason": "bad"}],
            "paging": {"next": "x"},
            "other": [1, 2, {"no_status": true}],
        });
        let f = failed(&spec(), &v);
        assert_eq!(f.total, 3);
        assert_eq!(f.failed.len(), 2);
        let c = f.failed.iter().find(|x| x.list == "campaigns").unwrap();
        assert_eq!((c.index, c.code.as_deref()), (1, Some("E3003")));
        let a = f.failed.iter().find(|x| x.list == "ads").unwrap();
        assert_eq!(
            (a.code.as_deref(), a.message.as_deref()),
            (None, Some("bad"))
        );
    }

    #[test]
    fn nothing_in_odd_shapes() {
        for v in [
            serde_json::json!([1, 2]),
            serde_json::json!("x"),
            serde_json::json!({"a": [{"sub_request_status": null}]}),
        ] {
            assert!(failed(&spec(), &v).failed.is_empty());
        }
    }
}
