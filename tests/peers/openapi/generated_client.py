"""Run by crates/cli/tests/openapi_fuzz.rs with the client that openapi-python-client generated from
the daemon's /openapi.json on PYTHONPATH (as `tokenwarden_client`): list the connections, fetch a
token, and read a refusal, all through the generated code and models. An answer the document does
not list raises (raise_on_unexpected_status), so this also checks the document's statuses.

usage: generated_client.py CONNECTION_ID  (TOKENWARDEN_URL and TOKENWARDEN_API_KEY set)
"""

import os
import sys

from tokenwarden_client import AuthenticatedClient
from tokenwarden_client.api.default import get_token, list_connections
from tokenwarden_client.models import Error, ListConnectionsResponse200, ProviderId, State, Token

connection = sys.argv[1]
client = AuthenticatedClient(
    base_url=os.environ["TOKENWARDEN_URL"],
    token=os.environ["TOKENWARDEN_API_KEY"],
    raise_on_unexpected_status=True,
)

listed = list_connections.sync(client=client)
assert isinstance(listed, ListConnectionsResponse200), listed
print("connections:", ", ".join(sorted(c.id for c in listed.connections)))

active = list_connections.sync(client=client, provider=ProviderId.SNAPCHAT, state=State.ACTIVE)
assert isinstance(active, ListConnectionsResponse200), active
print("snapchat active:", ", ".join(sorted(c.id for c in active.connections)))

token = get_token.sync(client=client, id=connection)
assert isinstance(token, Token), token
assert token.access_token, "a token"
# Never the token itself: the hint the connection listing shows, to compare.
print(f"token: {token.connection}, {token.token_type}, version {token.version}, …{token.access_token[-4:]}")

missing = get_token.sync_detailed(client=client, id="no-such-connection")
assert isinstance(missing.parsed, Error), missing
print(f"unknown connection: {missing.status_code.value} {missing.parsed.error.code}")
