//! `/metrics` as a scenario runs: connect, refresh, probe, revoke. The figures move with it, and
//! no label carries a token or a connection id.

mod support;

use support::{World, world};

async fn scrape(w: &World) -> String {
    let r = w
        .http
        .get(format!("{}metrics", w.d.base))
        .bearer_auth(&w.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    r.text().await.unwrap()
}

/// The value of the series `name` whose labels include every pair in `labels` (0 when absent).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))))
            .then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

async fn refresh(w: &World, id: &str) -> u16 {
    w.http
        .post(format!("{}v1/connections/{id}/refresh", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_figures_follow_connects_refreshes_probes_and_revocations() {
    let w = world().await;
    let r = w
        .http
        .get(format!("{}metrics", w.d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an API key is needed");

    let m0 = scrape(&w).await;
    let active = [("provider", "snapchat"), ("state", "active")];
    assert_eq!(value(&m0, "tokenwarden_connections", &active), 0.0);
    assert!(m0.contains("tokenwarden_store_up 1"));

    for id in ["met-1", "met-2"] {
        let flow = w.start_and_approve("snapchat", id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
    }
    let m1 = scrape(&w).await;
    assert_eq!(value(&m1, "tokenwarden_connections", &active), 2.0);
    assert_eq!(
        value(
            &m1,
            "tokenwarden_token_expiry_seconds_count",
            &[("provider", "snapchat")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m1,
            "tokenwarden_token_expiry_seconds_bucket",
            &[("provider", "snapchat"), ("le", "3600")]
        ),
        2.0,
        "Snapchat tokens live an hour: {m1}"
    );

    let ok = [("provider", "snapchat"), ("outcome", "ok")];
    let before = value(&m1, "tokenwarden_refreshes_total", &ok);
    assert_eq!(refresh(&w, "met-1").await, 200);
    assert_eq!(refresh(&w, "met-1").await, 200);
    let m2 = scrape(&w).await;
    assert_eq!(value(&m2, "tokenwarden_refreshes_total", &ok), before + 2.0);

    let probes = [("provider", "snapchat"), ("kind", "ok")];
    let before = value(&m2, "tokenwarden_probes_total", &probes);
    let http = tokenwarden_server::probe::client();
    let id = tokenwarden_core::id::ConnectionId::parse("met-2").unwrap();
    tokenwarden_server::monitor::probe(&w.d.state, &http, &id).await;
    let m3 = scrape(&w).await;
    assert_eq!(
        value(&m3, "tokenwarden_probes_total", &probes),
        before + 1.0
    );

    // The platform revokes the grants (both: the sandbox lists them in no promised order), and
    // met-1's next refresh is refused: the refusal is counted and the gauges move.
    let sb = w.d.sandbox_base.clone().unwrap();
    let grants: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/grants?provider=snapchat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for g in grants["grants"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        let r = w
            .http
            .post(format!("{sb}/_sandbox/grants/{id}/revoke"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let refused = [("provider", "snapchat"), ("outcome", "refused")];
    let before = value(&m3, "tokenwarden_refreshes_total", &refused);
    assert_eq!(refresh(&w, "met-1").await, 409);
    let m4 = scrape(&w).await;
    assert_eq!(
        value(&m4, "tokenwarden_refreshes_total", &refused),
        before + 1.0
    );
    assert_eq!(value(&m4, "tokenwarden_connections", &active), 1.0);
    assert_eq!(
        value(
            &m4,
            "tokenwarden_connections",
            &[("provider", "snapchat"), ("state", "reauth_required")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m4,
            "tokenwarden_open_problems",
            &[("provider", "snapchat"), ("code", "grant_refused")]
        ),
        1.0
    );

    // Nothing secret or unbounded in a label.
    let (_, t) = w.api(&w.reader, "v1/connections/met-2/token").await;
    let token = t["access_token"].as_str().unwrap();
    for text in [&m1, &m2, &m3, &m4] {
        assert!(!text.contains(token));
        assert!(!text.contains("met-1") && !text.contains("met-2"));
        assert!(!text.contains("demo-snapchat-secret"));
        assert!(!text.contains(&w.reader));
    }
    w.d.stop().await;
}
