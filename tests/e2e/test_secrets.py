"""No secret leaks: a gateway with every kind of secret configured or given to it is driven
through its API (answers to good and bad credentials, the control plane, tasks, push
configs, cards, /health, /cluster, /metrics), logging at `debug`; then every answer (status
line, headers, body) and every log line is searched for each secret. The webhook receiver is
the one place a push credential may go, so it is not searched. Two answers show a secret to
the caller it belongs to, on purpose: `keys/create` shows the new key once (only its hash is
kept), and a push config's methods give the config back to its creator with its token and
credentials, as A2A specifies and the SDK does (another caller's task answers "not found":
test_owner.py); those answers are searched for every other secret.

Secrets: the admin token, the HS256 JWT secret, a JWT, an API key (and a forged one), an
agent's bearer, an agent's OAuth2 client secret and the access token fetched with it, a push
config's token and its `Authorization` credentials, the cluster secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import _start_gateway, loopback_webhooks
from e2e_util import HTTP_TIMEOUT_SECONDS

pytestmark = pytest.mark.gateway_only

ADMIN = 'secret-admin-token-5b1f0c2e9d'
HS_SECRET = 'secret-hs256-key-8e2d7a41c6b9f0e3d5a7'
AGENT_BEARER = 'secret-agent-bearer-3c9e1f7a'
PUSH_TOKEN = 'secret-push-token-7d2b4e6f'
PUSH_CREDENTIALS = 'secret-push-credentials-1a8c5e0b'
CLUSTER_SECRET = 'secret-cluster-secret-of-32-bytes-6f0d2a9c'
OAUTH_CLIENT_SECRET = 'secret-oauth-client-secret-4e7a1d93'
OAUTH_ACCESS_TOKEN = 'secret-oauth-access-token-b62f08c5'
ISSUER = 'https://idp.secrets'
AUDIENCE = 'superx-secrets'
A2A = {'A2A-Version': '1.0'}


def hs256(claims: dict) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()

    signed = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f'{signed}.{b64(hmac.new(HS_SECRET.encode(), signed.encode(), hashlib.sha256).digest())}'


class Recorder:
    """An HTTP client that keeps every answer it got, as text."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS)
        # (answer as text, the secrets it may show its caller)
        self.seen: list[tuple[str, set[str]]] = []

    def request(self, method: str, path: str, shows: frozenset = frozenset(), **kw) -> httpx.Response:
        r = self.http.request(method, f'{self.base}{path}', **kw)
        headers = '\n'.join(f'{k}: {v}' for k, v in r.headers.items())
        self.seen.append((f'{method} {path} -> {r.status_code}\n{headers}\n{r.text}', set(shows)))
        return r

    def rpc(self, path: str, method: str, params: dict, headers: dict, shows: frozenset = frozenset()) -> dict:
        body = {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params}
        return self.request('POST', path, shows, json=body, headers={**A2A, **headers}).json()


class TokenServer:
    """An OAuth2 token endpoint (client credentials): answers the access token to a client
    that authenticates with the client secret (HTTP basic), 401 to anyone else, and counts
    the tokens it gave."""

    def __init__(self) -> None:
        self.issued = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get('Content-Length') or 0))
                basic = base64.b64encode(f'superx:{OAUTH_CLIENT_SECRET}'.encode()).decode()
                if self.headers.get('Authorization') != f'Basic {basic}':
                    self.send_response(401)
                    self.end_headers()
                    return
                server.issued += 1
                body = json.dumps({'access_token': OAUTH_ACCESS_TOKEN, 'token_type': 'Bearer',
                                   'expires_in': 3600}).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/token'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope='module')
def token_server():
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture(scope='module')
def gateway(e2e, tmp_path_factory):
    work = tmp_path_factory.mktemp('secrets-gw')
    env = {
        'LOG_LEVEL': 'debug',
        'SUPERX_AUTH__MODE': 'required',
        'SUPERX_AUTH__ADMIN_TOKEN': ADMIN,
        'SUPERX_AUTH__JWT_HS256_SECRET': HS_SECRET,
        'SUPERX_AUTH__JWT_ISSUER': ISSUER,
        'SUPERX_AUTH__JWT_AUDIENCES': AUDIENCE,
        'SUPERX_CLUSTER__SECRET': CLUSTER_SECRET,
    }
    with loopback_webhooks():
        proc, base = _start_gateway({'tasks': e2e.agent_ports['tasks']}, work, extra_env=env)
    try:
        yield proc, base
    finally:
        proc.stop()


def test_no_answer_log_or_metric_contains_a_secret(e2e, gateway, receiver, token_server) -> None:
    proc, base = gateway
    r = Recorder(base)
    admin = {'Authorization': f'Bearer {ADMIN}'}

    created = r.rpc('/rpc', 'keys/create', {'name': 'secrets-test', 'role': 'client'}, admin,
                    shows=frozenset({'API key', "API key's secret part"}))
    api_key = created['result']['key']
    jwt = hs256({'iss': ISSUER, 'aud': AUDIENCE, 'sub': 'alice', 'exp': int(time.time()) + 600})
    forged_key = api_key[:-4] + 'AAAA'
    secrets = {
        'admin token': ADMIN,
        'HS256 secret': HS_SECRET,
        'JWT': jwt,
        'API key': api_key,
        "API key's secret part": api_key.rsplit('_', 1)[-1],
        'forged API key': forged_key,
        'agent bearer': AGENT_BEARER,
        'push token': PUSH_TOKEN,
        'push credentials': PUSH_CREDENTIALS,
        'cluster secret': CLUSTER_SECRET,
        'OAuth2 client secret': OAUTH_CLIENT_SECRET,
        'OAuth2 access token': OAUTH_ACCESS_TOKEN,
    }

    # The control plane, with an agent that has a bearer.
    agent_url = f'http://127.0.0.1:{e2e.agent_ports["tasks"]}/'
    upserted = r.rpc('/rpc', 'agents/upsert', {'id': 'guarded', 'url': agent_url, 'bearer': AGENT_BEARER}, admin)
    assert 'result' in upserted, upserted
    oauth2 = {'tokenUrl': token_server.url, 'clientId': 'superx', 'clientSecret': OAUTH_CLIENT_SECRET}
    upserted = r.rpc('/rpc', 'agents/upsert', {'id': 'oauthed', 'url': agent_url, 'oauth2': oauth2}, admin)
    assert 'result' in upserted, upserted
    for method, params in [('agents/list', {}), ('agents/get', {'id': 'guarded'}), ('agents/get', {'id': 'oauthed'}),
                           ('agents/health', {}), ('keys/list', {}), ('cluster/status', {})]:
        assert 'result' in r.rpc('/rpc', method, params, admin), method

    # A call through the OAuth2 agent: the gateway fetches a token with the client secret.
    sent = r.rpc('/agents/oauthed', 'SendMessage', {
        'message': {'role': 'ROLE_USER', 'messageId': 'm-oauth', 'parts': [{'text': 'through oauth'}]}}, admin)
    assert 'result' in sent, sent
    assert token_server.issued >= 1, 'the gateway never fetched a token: the OAuth2 secrets were not exercised'

    # A task through the agent with the bearer, with a webhook that has credentials.
    hook = {'url': receiver.url, 'token': PUSH_TOKEN,
            'authentication': {'scheme': 'Bearer', 'credentials': PUSH_CREDENTIALS}}
    for who in ({'X-API-Key': api_key}, {'Authorization': f'Bearer {jwt}'}):
        sent = r.rpc('/agents/guarded', 'SendMessage', {
            'message': {'role': 'ROLE_USER', 'messageId': f'm-{len(r.seen)}', 'parts': [{'text': 'keep it secret'}]},
            'configuration': {'taskPushNotificationConfig': hook},
        }, who)
        task_id = sent['result']['task']['id']
        receiver.wait_for(task_id, lambda body: 'statusUpdate' in body or 'task' in body)
        own = frozenset({'push token', 'push credentials'})
        made = r.rpc('/agents/guarded', 'CreateTaskPushNotificationConfig',
                     {'taskId': task_id, 'id': 'second', **hook}, who, shows=own)
        assert 'result' in made, made
        r.rpc('/agents/guarded', 'GetTaskPushNotificationConfig', {'taskId': task_id, 'id': 'second'}, who, shows=own)
        r.rpc('/agents/guarded', 'ListTaskPushNotificationConfigs', {'taskId': task_id}, who, shows=own)
        r.rpc('/agents/guarded', 'GetTask', {'id': task_id}, who)
        r.rpc('/agents/guarded', 'ListTasks', {}, who)
        r.request('GET', f'/agents/guarded/tasks/{task_id}/pushNotificationConfigs', own, headers={**A2A, **who})
    # The deliveries carried the credentials to the receiver, the one place they may go.
    assert any(h['token'] == PUSH_TOKEN for h in receiver.hits)
    assert any(h['headers'].get('authorization') == f'Bearer {PUSH_CREDENTIALS}' for h in receiver.hits)

    # Refusals: wrong, forged and revoked credentials; a client on the control plane.
    r.rpc('/agents/guarded', 'GetTask', {'id': 'x'}, {'X-API-Key': forged_key})
    r.rpc('/agents/guarded', 'GetTask', {'id': 'x'}, {'Authorization': f'Bearer {jwt}x'})
    r.rpc('/rpc', 'agents/list', {}, {'X-API-Key': api_key})
    r.rpc('/rpc', 'agents/list', {}, {'Authorization': f'Bearer {ADMIN}x'})
    key_id = created['result']['id']
    r.rpc('/rpc', 'keys/revoke', {'id': key_id}, admin)
    r.rpc('/agents/guarded', 'GetTask', {'id': 'x'}, {'X-API-Key': api_key})

    # Operator views.
    for path in ['/health', '/ready', '/metrics', '/agents/guarded/.well-known/agent-card.json',
                 '/agents/oauthed/.well-known/agent-card.json', '/.well-known/agent-card.json',
                 '/.well-known/jwks.json', '/ui', '/ui/config.json', f'/ui/tasks/{task_id}']:
        r.request('GET', path, headers=admin)
    r.request('GET', '/cluster', headers=admin)

    log = proc.log_path.read_text(errors='replace')
    assert 'DEBUG' in log, 'the gateway did not log at debug: the log check would prove little'
    leaks = []
    for name, secret in secrets.items():
        for answer, shows in r.seen:
            if secret in answer and name not in shows:
                leaks.append(f'{name} in an answer: {answer[:300]}')
        for line in log.splitlines():
            if secret in line:
                leaks.append(f'{name} in a log line: {line[:300]}')
    assert not leaks, '\n'.join(leaks[:20])
