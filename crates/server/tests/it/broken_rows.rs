//! One row whose secret does not decrypt (tampered, or under a key that is gone) concerns that
//! row only: the API lists it as broken, answers `decrypt_failed` naming it where its token is
//! needed, deletes it locally (saying it could not revoke), and the dashboard keeps its pages up.

use crate::support;

use serde_json::Value;
use support::*;

async fn raw(w: &World) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&w.db_url)
        .await
        .unwrap()
}

/// Flips the last byte of a stored ciphertext, behind the daemon's back.
async fn tamper(w: &World, table: &str, column: &str, pk: &str, row: &str) -> Vec<u8> {
    use sqlx::Row;
    let raw = raw(w).await;
    let ct: Vec<u8> = sqlx::query(&format!("SELECT {column} FROM {table} WHERE {pk} = $1"))
        .bind(row)
        .fetch_one(&raw)
        .await
        .unwrap()
        .get(0);
    let mut bad = ct.clone();
    let n = bad.len() - 1;
    bad[n] ^= 0x01;
    let done = sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE {pk} = $2"))
        .bind(bad.clone())
        .bind(row)
        .execute(&raw)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    bad
}

async fn session(w: &World) -> String {
    let r = w
        .http
        .post(format!("{}login", w.d.base))
        .form(&[("secret", w.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn page(w: &World, cookie: &str, path: &str) -> (u16, String) {
    let r = w
        .http
        .get(format!("{}{path}", w.d.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn delete(w: &World, path: &str) -> (u16, Value) {
    let r = w
        .http
        .delete(format!("{}{path}", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} is listed: {list}"))
}

#[tokio::test]
async fn a_token_set_that_does_not_decrypt_is_listed_broken_and_can_be_deleted() {
    let w = world().await;
    for id in ["good", "bad"] {
        let flow = w.start_and_approve("tiktok", id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    let altered = tamper(&w, "token_sets", "access_token_ct", "connection_id", "bad").await;
    let hex: String = altered.iter().map(|b| format!("{b:02x}")).collect();

    let (status, list) = w.api(&w.admin, "v1/connections").await;
    assert_eq!(status, 200, "{list}");
    let bad = entry(&list, "bad");
    assert_eq!(bad["token"], Value::Null, "{bad}");
    assert_eq!(bad["broken"]["code"], "decrypt_failed", "{bad}");
    let said = bad["broken"]["message"].as_str().unwrap();
    assert!(
        said.contains("bad") && said.contains("cannot be decrypted"),
        "{said}"
    );
    let good = entry(&list, "good");
    assert!(good["token"]["hint"].is_string(), "{good}");
    assert!(good.get("broken").is_none_or(Value::is_null), "{good}");
    assert!(!list.to_string().contains(&hex));

    let (status, one) = w.api(&w.admin, "v1/connections/bad").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["broken"]["code"], "decrypt_failed", "{one}");
    assert_eq!(one["token"], Value::Null);

    // Where the token itself is needed: a clear error naming the connection, not "unavailable".
    let (status, e) = w
        .post(
            &w.admin,
            "v1/connections/bad/refresh",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "decrypt_failed", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("connection bad"), "{msg}");
    assert!(e["error"]["fix"].is_string(), "{e}");
    assert!(!e.to_string().contains(&hex));

    let cookie = session(&w).await;
    let (status, html) = page(&w, &cookie, "connections").await;
    assert_eq!(status, 200);
    assert!(html.contains("cannot be decrypted"), "{html}");
    assert!(html.contains("data-connection=\"good\""));
    let (status, _) = page(&w, &cookie, "").await;
    assert_eq!(status, 200);

    // Re-authorizing replaces the broken token set (nothing old needs to be decrypted for that).
    let flow = w.start_and_approve("tiktok", "bad").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (_, healed) = w.api(&w.admin, "v1/connections/bad").await;
    assert!(healed["token"]["hint"].is_string(), "{healed}");
    assert!(healed.get("broken").is_none_or(Value::is_null), "{healed}");
    tamper(&w, "token_sets", "access_token_ct", "connection_id", "bad").await;

    // Deleted here; the platform cannot be told without the token, and the answer says so.
    let (status, v) = delete(&w, "v1/connections/bad").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deleted"], true);
    assert_eq!(v["revoked_at_platform"], false);
    let why = v["not_revoked"].as_str().unwrap_or_default();
    assert!(why.contains("cannot be decrypted"), "{v}");
    assert_eq!(w.api(&w.admin, "v1/connections/bad").await.0, 404);
    let (_, events) = w.api(&w.admin, "v1/events?limit=1000").await;
    let deleted = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["kind"] == "connection_deleted")
        .expect("a connection_deleted event");
    assert_eq!(
        deleted["details"]["revoked_at_platform"], false,
        "{deleted}"
    );
    assert!(
        deleted["message"]
            .as_str()
            .unwrap()
            .contains("cannot be decrypted"),
        "{deleted}"
    );
    assert_eq!(w.api(&w.admin, "v1/connections/good").await.0, 200);
    w.d.stop().await;
}

#[tokio::test]
async fn an_app_secret_that_does_not_decrypt_keeps_the_overview_up_and_deletes_locally() {
    let w = world().await;
    let flow = w.start_and_approve("tiktok", "of-broken-app").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    tamper(&w, "apps", "client_secret_ct", "row_key", "tiktok/demo").await;

    let cookie = session(&w).await;
    let (status, html) = page(&w, &cookie, "").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("cannot be decrypted"), "{html}");

    let (status, v) = delete(&w, "v1/connections/of-broken-app").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revoked_at_platform"], false);
    assert!(
        v["not_revoked"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be decrypted"),
        "{v}"
    );
    assert_eq!(w.api(&w.admin, "v1/connections/of-broken-app").await.0, 404);
    w.d.stop().await;
}
