"""Authenticated callers through the SDK clients (1.0 and 0.3, JSON-RPC and HTTP+JSON): a
gateway with `auth.mode = "required"` declares its schemes in the cards, the SDK's
`AuthInterceptor` sends an API key (`X-API-Key`, from the card's `apiKey` scheme) or a JWT
(`Authorization: Bearer`, from the `bearer` scheme), and a client without credentials is
refused with HTTP 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import httpx
import pytest

from a2a.client.auth.credentials import CredentialService
from a2a.client.auth.interceptor import AuthInterceptor
from a2a.client.errors import A2AClientError
from a2a.types import TaskState

from conftest import _start_gateway
from e2e_util import HTTP_TIMEOUT_SECONDS, VERSIONS, run, sdk_client, send_for_task, user_message


ADMIN = 'e2e-admin-token-0123456789'
HS_SECRET = 'e2e-hs256-secret-0123456789abcdef0123'
ISSUER = 'https://idp.e2e'
AUDIENCE = 'superx-e2e'

pytestmark = pytest.mark.gateway_only


class Credentials(CredentialService):
    """One credential per security scheme name of the card."""

    def __init__(self, by_scheme: dict[str, str]) -> None:
        self.by_scheme = by_scheme

    async def get_credentials(self, security_scheme_name, context):
        return self.by_scheme.get(security_scheme_name)


def hs256(claims: dict) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()

    signed = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(HS_SECRET.encode(), signed.encode(), hashlib.sha256).digest()
    return f'{signed}.{b64(signature)}'


@pytest.fixture(scope='module')
def auth_gateway(e2e, tmp_path_factory):
    """A gateway requiring credentials, in front of the session's task agent, and a client key."""
    settings = {
        'SUPERX_AUTH__MODE': 'required',
        'SUPERX_AUTH__ADMIN_TOKEN': ADMIN,
        'SUPERX_AUTH__JWT_HS256_SECRET': HS_SECRET,
        'SUPERX_AUTH__JWT_ISSUER': ISSUER,
        'SUPERX_AUTH__JWT_AUDIENCES': AUDIENCE,
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        proc, base = _start_gateway({'tasks': e2e.agent_ports['tasks']}, tmp_path_factory.mktemp('auth-gw'))
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    try:
        body = {'jsonrpc': '2.0', 'id': 1, 'method': 'keys/create', 'params': {'name': 'e2e'}}
        answer = httpx.post(
            f'{base}/rpc', json=body, headers={'Authorization': f'Bearer {ADMIN}'}, timeout=HTTP_TIMEOUT_SECONDS
        ).json()
        yield base, answer['result']['key']
    finally:
        proc.stop()


def test_cards_declare_the_schemes(auth_gateway):
    base, _ = auth_gateway
    card = httpx.get(f'{base}/agents/tasks/.well-known/agent-card.json', timeout=HTTP_TIMEOUT_SECONDS).json()
    assert card['securitySchemes']['apiKey'] == {
        'type': 'apiKey', 'in': 'header', 'name': 'X-API-Key', 'description': 'a superx API key (sx_...)'
    }
    assert card['security'] == [{'apiKey': []}, {'bearer': []}]


@pytest.mark.parametrize('credential', ['api-key', 'jwt'])
@pytest.mark.parametrize('version', VERSIONS)
def test_sdk_clients_with_a_credential_are_served(auth_gateway, version, client_binding, credential):
    base, key = auth_gateway
    now = int(time.time())
    jwt = hs256({'iss': ISSUER, 'aud': AUDIENCE, 'sub': 'e2e', 'iat': now, 'exp': now + 300})
    by_scheme = {'apiKey': key} if credential == 'api-key' else {'bearer': jwt}
    interceptor = AuthInterceptor(Credentials(by_scheme))

    async def body():
        card_base = f'{base}/agents/tasks'
        async with await sdk_client(card_base, version, binding=client_binding, interceptors=[interceptor]) as client:
            task = await send_for_task(client, user_message('with a credential'))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_sdk_clients_without_a_credential_are_refused(auth_gateway, version, client_binding):
    base, _ = auth_gateway

    async def body():
        async with await sdk_client(f'{base}/agents/tasks', version, binding=client_binding) as client:
            with pytest.raises(A2AClientError) as refused:
                await send_for_task(client, user_message('no credential'))
        assert '401' in str(refused.value), refused.value

    run(body())


def test_raw_refusals_name_no_secret(auth_gateway):
    base, key = auth_gateway
    body = {'jsonrpc': '2.0', 'id': 3, 'method': 'SendMessage', 'params': {}}
    r = httpx.post(f'{base}/agents/tasks', json=body, headers={'A2A-Version': '1.0'}, timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 401 and r.headers['www-authenticate'].startswith('Bearer')
    assert r.json()['error']['code'] == -32030
    listed = httpx.post(
        f'{base}/rpc',
        json={'jsonrpc': '2.0', 'id': 4, 'method': 'keys/list', 'params': {}},
        headers={'X-API-Key': ADMIN},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert listed.status_code == 200 and key not in listed.text and ADMIN not in listed.text
    forbidden = httpx.post(
        f'{base}/rpc',
        json={'jsonrpc': '2.0', 'id': 5, 'method': 'agents/list', 'params': {}},
        headers={'X-API-Key': key},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert forbidden.status_code == 403 and forbidden.json()['error']['code'] == -32031
