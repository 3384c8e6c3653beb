//! The daemon's face to the internet (issue 13): failed sign-ins and refused API keys are limited
//! per client address (one attacker cannot lock out another address), `/connect/` and
//! `/callback/` are rate limited per address, every response carries the no-sniff and
//! no-referrer headers (HSTS on https), and dashboard sessions end when left idle.
//!
//! Two client addresses are two loopback sources: `127.0.0.1` (the world's client) and
//! `127.0.0.2` (a client bound to it). Time moves only on the world's fake clock.

mod support;

use chrono::TimeDelta;
use support::{World, world, world_at};
use tokenwarden_testkit::logs::logs;

fn logged() -> String {
    logs().text()
}

/// A client whose connections come from `127.0.0.2`, another address than the world's client.
fn from_other_address() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
}

async fn sign_in(w: &World, http: &reqwest::Client, secret: &str) -> reqwest::Response {
    http.post(format!("{}login", w.d.base))
        .form(&[("secret", secret)])
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failed_sign_ins_lock_out_their_address_only() {
    logged();
    let w = world().await;
    w.d.state
        .dashboard
        .set_password(Some("correct horse battery"));
    let attacker = &w.http;
    let admin = from_other_address();
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(
            sign_in(&w, attacker, &format!("guess-{i}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401; 10]);
    let r = sign_in(&w, attacker, "guess-10").await;
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r);
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        r.text().await.unwrap().contains("Too many failed sign-ins"),
        "the page says why"
    );
    assert_eq!(
        sign_in(&w, attacker, "correct horse battery")
            .await
            .status(),
        429,
        "the locked address waits, even with the right password"
    );

    // Another address signs in, with the password and with the admin key.
    assert_eq!(
        sign_in(&w, &admin, "correct horse battery").await.status(),
        303
    );
    assert_eq!(sign_in(&w, &admin, &w.admin).await.status(), 303);
    // Its own wrong try is its own failure, not a lockout.
    assert_eq!(sign_in(&w, &admin, "typo").await.status(), 401);
    assert_eq!(sign_in(&w, &admin, &w.admin).await.status(), 303);

    // The window passes on the daemon's clock: the first address may try again.
    w.clock.advance(TimeDelta::seconds(61));
    assert_eq!(
        sign_in(&w, attacker, "correct horse battery")
            .await
            .status(),
        303
    );

    let text = logged();
    assert!(
        text.contains("dashboard: a sign-in was refused") && text.contains("client=127.0.0.1"),
        "each failure is logged with its client address"
    );
    assert!(text.contains("client=127.0.0.2"));
    assert!(
        !text.contains("guess-3") && !text.contains("correct horse battery"),
        "never the presented secret"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn guessing_one_keys_secret_is_limited_across_addresses() {
    let w = world().await;
    let id = w.admin.split('_').nth(1).unwrap().to_string();
    let other = from_other_address();
    // Ten wrong secrets for the admin key's id, spread over two addresses.
    for i in 0..10 {
        let http = if i % 2 == 0 { &w.http } else { &other };
        let r = sign_in(&w, http, &format!("tw_{id}_wrong{i}")).await;
        assert_eq!(r.status(), 401, "try {i}");
    }
    let r = sign_in(&w, &other, &format!("tw_{id}_wrong-again")).await;
    assert_eq!(r.status(), 429, "that key id is locked for a while");
    assert!(retry_after(&r) >= 1);
    // Other keys, and the password, are not.
    w.d.state.dashboard.set_password(Some("pw for the day"));
    let third = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    assert_eq!(sign_in(&w, &third, "pw for the day").await.status(), 303);
    w.d.stop().await;
}

#[tokio::test]
async fn refused_api_keys_are_limited_per_address() {
    logged();
    let w = world().await;
    let attacker = &w.http;
    let other = from_other_address();
    let call = |http: &reqwest::Client, path: &str, key: &str| {
        http.get(format!("{}{path}", w.d.base))
            .bearer_auth(key)
            .send()
    };
    // No key at all is not a guess: it does not count.
    for _ in 0..30 {
        let r = attacker
            .get(format!("{}v1/connections", w.d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    for i in 0..20 {
        let path = ["v1/connections", "metrics", "proxy/c1/x", "v1/webhooks"][i % 4];
        let r = call(attacker, path, &format!("tw_0000{i:08}_nope"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    for path in [
        "v1/connections",
        "v1/connections/x/token",
        "metrics",
        "proxy/c1/x",
    ] {
        let r = call(attacker, path, "tw_00000000_nope").await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let wait = retry_after(&r);
        assert!((1..=60).contains(&wait), "{wait}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_failures", "{path}: {body}");
    }
    // The locked address waits even with a good key (so it cannot tell good keys from bad).
    assert_eq!(
        call(attacker, "v1/connections", &w.admin)
            .await
            .unwrap()
            .status(),
        429
    );
    // Another address is not affected.
    assert_eq!(
        call(&other, "v1/connections", &w.admin)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(&other, "metrics", &w.reader).await.unwrap().status(),
        200
    );
    w.clock.advance(TimeDelta::seconds(61));
    assert_eq!(
        call(attacker, "v1/connections", &w.admin)
            .await
            .unwrap()
            .status(),
        200
    );
    let text = logged();
    assert!(
        text.contains("an API key was refused") && text.contains("client=127.0.0.1"),
        "refusals are logged with the address"
    );
    assert!(!text.contains("tw_000000000007_nope"), "never the key");
    w.d.stop().await;
}

/// Every answer carries `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
fn assert_common_headers(r: &reqwest::Response, what: &str, hsts: bool) {
    let h = r.headers();
    assert_eq!(
        h.get("x-content-type-options").map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        h.get("referrer-policy").map(|v| v.to_str().unwrap()),
        Some("no-referrer"),
        "{what}"
    );
    match h.get("strict-transport-security") {
        Some(v) if hsts => assert!(v.to_str().unwrap().starts_with("max-age="), "{what}"),
        None if !hsts => {}
        other => panic!("{what}: Strict-Transport-Security {other:?}, expected it: {hsts}"),
    }
}

#[tokio::test]
async fn every_response_carries_the_common_headers() {
    let w = world().await;
    let flow = w.start_and_approve("snapchat", "hdr").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let base = w.d.base.clone();
    let probe =
        w.d.state
            .providers
            .get("snapchat")
            .unwrap()
            .spec
            .api
            .probe
            .path
            .clone();
    let proxied = format!("proxy/hdr/{}", probe.trim_start_matches('/'));
    let get = |path: &str, key: Option<&str>| {
        let mut r = w.http.get(format!("{base}{path}"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    for (path, key, status) in [
        ("healthz", None, 200),
        ("readyz", None, 200),
        ("openapi.json", None, 200),
        ("metrics", Some(w.admin.as_str()), 200),
        ("metrics", None, 401),
        ("v1/connections", None, 401),
        ("v1/connections/nope!", Some(w.admin.as_str()), 400),
        ("v1/connections/hdr", Some(w.admin.as_str()), 200),
        ("no/such/route", None, 404),
        (proxied.as_str(), Some(w.reader.as_str()), 200),
        ("assets/app.css", None, 200),
        ("login", None, 200),
        ("", None, 303),
    ] {
        let r = get(path, key).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_common_headers(&r, path, false);
    }
    let r = w.http.post(format!("{base}healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_common_headers(&r, "405", false);

    // A token answer is not cached, by HTTP/1.0 caches either.
    let r = get("v1/connections/hdr/token", Some(w.reader.as_str()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_common_headers(&r, "token", false);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let r = w
        .http
        .post(format!("{base}v1/connections/hdr/refresh"))
        .bearer_auth(&w.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["pragma"], "no-cache");
    let r = get("login", None).await.unwrap();
    assert_eq!(r.headers()["pragma"], "no-cache", "pages too");
    w.d.stop().await;
}

#[tokio::test]
async fn on_https_every_response_asks_for_https_from_now_on() {
    let w = world_at(Some(url::Url::parse("https://tokens.example.com").unwrap())).await;
    for (path, status) in [
        ("healthz", 200),
        ("v1/connections", 401),
        ("no/such/route", 404),
        ("login", 200),
    ] {
        let r = w
            .http
            .get(format!("http://{}/{path}", w.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_common_headers(&r, path, true);
    }
    w.d.stop().await;
}

#[tokio::test]
async fn connect_and_callback_are_rate_limited_per_address() {
    let w = world().await;
    let other = from_other_address();
    let connect = |http: &reqwest::Client, i: usize| {
        http.get(format!(
            "{}connect/snapchat?connection_id=burst-{i}",
            w.d.base
        ))
        .send()
    };
    // Whatever the route answers (a redirect to the platform today), it is not the limit's 429.
    let answered = |status: u16| status != 429;
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(connect(&w.http, i).await.unwrap().status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| answered(*s)),
        "a burst of 30 is allowed: {statuses:?}"
    );
    let r = connect(&w.http, 30).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r) >= 1);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_common_headers(&r, "429", false);
    // The callback, and any later route under /connect/, are covered by the same limit.
    for path in [
        "callback/snapchat?code=x&state=y",
        "connect/s/some-token",
        "connect/tiktok?connection_id=z",
    ] {
        let r = w
            .http
            .get(format!("{}{path}", w.d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
    }
    // Not the rest of the daemon.
    assert_eq!(
        w.http
            .get(format!("{}healthz", w.d.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Another address has its own bucket.
    assert!(answered(
        connect(&other, 100).await.unwrap().status().as_u16()
    ));
    // The bucket refills on the daemon's clock: 30 a minute, one every 2 s.
    w.clock.advance(TimeDelta::seconds(2));
    assert!(answered(
        connect(&w.http, 31).await.unwrap().status().as_u16()
    ));
    assert_eq!(connect(&w.http, 32).await.unwrap().status(), 429);
    w.d.stop().await;
}

#[tokio::test]
async fn an_idle_dashboard_session_ends_and_use_keeps_it_alive() {
    let w = world().await;
    let r = sign_in(&w, &w.http, &w.admin).await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let overview = || async {
        w.http
            .get(&w.d.base)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(overview().await, 200);
    // Used every 25 minutes: it stays, though more than 30 minutes pass in all.
    for _ in 0..3 {
        w.clock.advance(TimeDelta::minutes(25));
        assert_eq!(overview().await, 200);
    }
    // Left alone for longer than the idle timeout (30 minutes by default): gone.
    w.clock.advance(TimeDelta::minutes(31));
    assert_eq!(overview().await, 303, "to the sign-in page");
    w.clock.advance(TimeDelta::minutes(-10));
    assert_eq!(overview().await, 303, "and it does not come back");
    w.d.stop().await;
}

#[tokio::test]
async fn a_shorter_idle_timeout_is_honoured() {
    let w = world().await;
    w.d.state
        .dashboard
        .set_idle_timeout(std::time::Duration::from_secs(5 * 60));
    let r = sign_in(&w, &w.http, &w.admin).await;
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let overview = || async {
        w.http
            .get(&w.d.base)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    w.clock.advance(TimeDelta::minutes(4));
    assert_eq!(overview().await, 200);
    w.clock.advance(TimeDelta::minutes(6));
    assert_eq!(overview().await, 303);
    w.d.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_configured_proxy() {
    let w = world().await;
    let other = from_other_address();
    let refused = |http: &reqwest::Client, forwarded: &str| {
        http.get(format!("{}v1/connections", w.d.base))
            .bearer_auth("tw_000000000000_nope")
            .header("x-forwarded-for", forwarded)
            .send()
    };
    let good = |http: &reqwest::Client, forwarded: &str| {
        http.get(format!("{}v1/connections", w.d.base))
            .bearer_auth(&w.admin)
            .header("x-forwarded-for", forwarded)
            .send()
    };
    // By default nobody's X-Forwarded-For is believed: a new value per guess evades nothing.
    for i in 0..20 {
        let r = refused(&other, &format!("198.51.100.{i}")).await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        good(&other, "198.51.100.200").await.unwrap().status(),
        429,
        "127.0.0.2 itself is locked"
    );

    // Behind a configured proxy (here 127.0.0.1), the address it forwards for is the client.
    w.d.state.limits.set_trusted_proxies(
        tokenwarden_server::limits::TrustedProxies::parse(["127.0.0.1/32"]).unwrap(),
    );
    for _ in 0..20 {
        let r = refused(&w.http, "203.0.113.7").await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(refused(&w.http, "203.0.113.7").await.unwrap().status(), 429);
    // A client that prepends its own X-Forwarded-For value is still the address the proxy saw.
    assert_eq!(
        refused(&w.http, "192.0.2.1, 203.0.113.7")
            .await
            .unwrap()
            .status(),
        429
    );
    // Another client behind the same proxy is not locked out.
    assert_eq!(good(&w.http, "203.0.113.8").await.unwrap().status(), 200);
    // The proxy's own requests without the header are its own address.
    let r = w
        .http
        .get(format!("{}v1/connections", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    w.d.stop().await;
}
