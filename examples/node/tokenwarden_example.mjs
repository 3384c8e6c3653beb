#!/usr/bin/env node
// Fetch a fresh token from tokenwarden, then call the platform through tokenwarden's proxy.
//
//   export TOKENWARDEN_URL=http://127.0.0.1:8080
//   export TOKENWARDEN_API_KEY=$(cat tokenwarden-data/admin.key)
//   node examples/node/tokenwarden_example.mjs snapchat-1 me
//
// Arguments: the connection id (default snapchat-1) and the platform path to call through the
// proxy (default me, Snapchat's "who am I"). Node 20 or later (the built-in fetch); no packages.
//
// Exit status: 0 when the call succeeded; 2 when the connection needs a person to re-authorize it
// (the link is printed); 3 when the platform asked to wait longer than the budget; 1 otherwise.

const BASE = (process.env.TOKENWARDEN_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
const API_KEY = process.env.TOKENWARDEN_API_KEY ?? "";
const AUTH = { Authorization: `Bearer ${API_KEY}` };

// The API's error object: {code, message, and sometimes fix, reauthorize_url}.
function apiError(status, text) {
  try {
    return JSON.parse(text).error ?? {};
  } catch {
    return { code: `http_${status}`, message: text.slice(0, 200) };
  }
}

// A token that is fresh now: tokenwarden refreshes it first if it is about to expire. Ask again
// for every batch of calls rather than keeping it: asking is cheap (served from memory), and a
// kept token expires (Snapchat's in an hour).
async function fetchToken(connection) {
  const resp = await fetch(`${BASE}/v1/connections/${encodeURIComponent(connection)}/token`, {
    headers: AUTH,
    signal: AbortSignal.timeout(30_000),
  });
  if (resp.status !== 200) return { error: apiError(resp.status, await resp.text()) };
  return { token: await resp.json() };
}

// The platform call, sent to tokenwarden instead of the platform: it attaches the token the way
// the platform wants it, refreshes and replays on expiry, and waits out throttles within the
// budget (tokenwarden-budget-ms).
function callThroughProxy(connection, path) {
  return fetch(`${BASE}/proxy/${encodeURIComponent(connection)}/${path.replace(/^\/+/, "")}`, {
    headers: { ...AUTH, "tokenwarden-budget-ms": "10000" },
    redirect: "manual",
    signal: AbortSignal.timeout(60_000),
  });
}

async function main() {
  if (!API_KEY) {
    console.error("Set TOKENWARDEN_API_KEY (e.g. $(cat tokenwarden-data/admin.key)).");
    return 1;
  }
  const connection = process.argv[2] ?? "snapchat-1";
  const path = process.argv[3] ?? "me";

  const { token, error } = await fetchToken(connection);
  if (token) {
    // Never print or log the token itself.
    const refreshed = token.refreshed ? ", refreshed just now" : "";
    console.log(`token: fresh (${token.token_type}), expires ${token.expires_at ?? "never"}${refreshed}`);
  } else {
    console.log(`token: ${error.code}: ${error.message}`);
    if (error.reauthorize_url) {
      console.log(`re-authorize: ${error.reauthorize_url}`);
      return 2;
    }
    return 1;
  }

  const resp = await callThroughProxy(connection, path);
  const body = await resp.text();
  const kind = resp.headers.get("tokenwarden-kind") ?? "?";
  const action = resp.headers.get("tokenwarden-action") ?? "?";
  console.log(
    `proxy: HTTP ${resp.status}, kind ${kind}, action ${action}, attempts ${resp.headers.get("tokenwarden-attempts") ?? "?"}`,
  );
  if (resp.ok && kind === "ok") {
    console.log(body.slice(0, 2000));
    return 0;
  }
  const link = resp.headers.get("tokenwarden-reauthorize-url") ?? apiError(resp.status, body).reauthorize_url;
  if (action === "reauthorize" || link) {
    console.log(`re-authorize: ${link}`);
    return 2;
  }
  if (resp.status === 503 || action === "backoff_and_retry") {
    console.log(`wait: retry after ${resp.headers.get("retry-after") ?? "?"} s`);
    return 3;
  }
  console.log(body.slice(0, 2000));
  return 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`cannot reach tokenwarden at ${BASE}: ${err.cause?.code ?? err.message}`);
    process.exit(1);
  },
);
