"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tokenwarden's API test, crates/cli/tests/openapi_fuzz.rs.

1. Every request leaves from an address of its own. The daemon under test believes
   X-Forwarded-For from 127.0.0.1 (TOKENWARDEN_TRUSTED_PROXIES), so its per-address limits
   (refused API keys, the connect flow's rate) count each request apart. Without this the refused
   keys that schemathesis sends on purpose (the ignored_auth check) lock the one test address out
   after 20, and every later request is answered 429 before its operation runs: documented, but
   it would leave the API untested. The limits themselves are tested in crates/server/tests.
   The header is added where requests sends, not to the generated case: a hook that edits a case
   makes schemathesis re-classify it, and a case meant to lack a header would then be sent with it.

2. The run never revokes the API key it authenticates with (TOKENWARDEN_FUZZ_KEY_ID, the key's
   public id): schemathesis reuses the ids it sees in answers, and would otherwise find it in
   GET /v1/api-keys and lock itself out for the rest of the run.
"""

import itertools
import os

import requests
import schemathesis

_next = itertools.count(1)
_send = requests.Session.send


def _send_from_own_address(self, request, **kwargs):
    n = next(_next)
    request.headers["X-Forwarded-For"] = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    return _send(self, request, **kwargs)


requests.Session.send = _send_from_own_address

_OWN_KEY = os.environ.get("TOKENWARDEN_FUZZ_KEY_ID", "")


@schemathesis.hook("filter_case").apply_to(operation_id="revokeApiKey")
def keep_the_runs_own_key(context, case):
    return (case.path_parameters or {}).get("id") != _OWN_KEY
