#!/usr/bin/env python3
"""Fetch a fresh token from tokenwarden, then call the platform through tokenwarden's proxy.

    export TOKENWARDEN_URL=http://127.0.0.1:8080
    export TOKENWARDEN_API_KEY=$(cat tokenwarden-data/admin.key)
    python3 examples/python/tokenwarden_example.py snapchat-1 me

Arguments: the connection id (default snapchat-1) and the platform path to call through the proxy
(default me, Snapchat's "who am I"). Needs `requests` (pip install -r requirements.txt).

Exit status: 0 when the call succeeded; 2 when the connection needs a person to re-authorize it
(the link is printed); 3 when the platform asked to wait longer than the budget; 1 otherwise.
"""

import os
import sys

try:
    import requests
except ImportError:
    sys.exit("This example needs requests: pip install -r examples/python/requirements.txt")

BASE = os.environ.get("TOKENWARDEN_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ.get("TOKENWARDEN_API_KEY", "")
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def api_error(resp):
    """The API's error object: {"code", "message", and sometimes "fix", "reauthorize_url"}."""
    try:
        return resp.json().get("error", {})
    except ValueError:
        return {"code": f"http_{resp.status_code}", "message": resp.text[:200]}


def fetch_token(connection):
    """A token that is fresh now: tokenwarden refreshes it first if it is about to expire.

    Ask again for every batch of calls rather than keeping it: a cached token is served from
    tokenwarden's memory, so asking is cheap, and a kept one expires (Snapchat's in an hour).
    """
    resp = requests.get(f"{BASE}/v1/connections/{connection}/token", headers=AUTH, timeout=30)
    if resp.status_code != 200:
        return None, api_error(resp)
    return resp.json(), None


def call_through_proxy(connection, path):
    """The platform call, sent to tokenwarden instead of the platform: it attaches the token the
    way the platform wants it, refreshes and replays on expiry, and waits out throttles within
    the budget (tokenwarden-budget-ms)."""
    return requests.get(
        f"{BASE}/proxy/{connection}/{path.lstrip('/')}",
        headers={**AUTH, "tokenwarden-budget-ms": "10000"},
        timeout=60,
    )


def main():
    if not API_KEY:
        print("Set TOKENWARDEN_API_KEY (e.g. $(cat tokenwarden-data/admin.key)).", file=sys.stderr)
        return 1
    connection = sys.argv[1] if len(sys.argv) > 1 else "snapchat-1"
    path = sys.argv[2] if len(sys.argv) > 2 else "me"

    token, err = fetch_token(connection)
    if token is not None:
        # Never print or log the token itself.
        print(f"token: fresh ({token['token_type']}), expires {token.get('expires_at') or 'never'}"
              f"{', refreshed just now' if token.get('refreshed') else ''}")
    else:
        print(f"token: {err.get('code')}: {err.get('message')}")
        if err.get("reauthorize_url"):
            print(f"re-authorize: {err['reauthorize_url']}")
            return 2
        return 1

    resp = call_through_proxy(connection, path)
    kind = resp.headers.get("tokenwarden-kind", "?")
    action = resp.headers.get("tokenwarden-action", "?")
    print(f"proxy: HTTP {resp.status_code}, kind {kind}, action {action}, "
          f"attempts {resp.headers.get('tokenwarden-attempts', '?')}")
    if resp.ok and kind == "ok":
        print(resp.text[:2000])
        return 0
    link = resp.headers.get("tokenwarden-reauthorize-url") or api_error(resp).get("reauthorize_url")
    if action == "reauthorize" or link:
        print(f"re-authorize: {link}")
        return 2
    if resp.status_code == 503 or action == "backoff_and_retry":
        print(f"wait: retry after {resp.headers.get('retry-after', '?')} s")
        return 3
    print(resp.text[:2000])
    return 1


if __name__ == "__main__":
    sys.exit(main())
