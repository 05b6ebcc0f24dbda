"""Push notifications through the gateway with the official SDK clients (A2A 1.0 and 0.3).

A webhook receiver runs in the test process (a real HTTP server on loopback) and records
every POST with its `SuperX-Event-Id`, `X-A2A-Notification-Token`, headers and exact bytes
(SuperX's HMAC signature and HS256 JWT are verified over them). The gateway relays
push for agents that never push themselves (the SDK test agents have push off): it follows
the task and delivers every committed update. These tests start their own gateway in front
of the session's agents, with `push.allow_cidrs` opening loopback (refused by default, which
the last test checks on the session's gateway)."""

from __future__ import annotations

import json

from collections import Counter

import pytest

from a2a.types import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
)
from a2a.utils.errors import TaskNotFoundError

from conftest import _start_gateway, loopback_webhooks
from e2e_util import VERSIONS, msg10, result_of, rpc, run, sdk_client, user_message


pytestmark = pytest.mark.gateway_only


@pytest.fixture(scope='module')
def push_gateway(e2e, tmp_path_factory):
    """A gateway whose webhooks may reach loopback, in front of the session's task agent."""
    with loopback_webhooks():
        proc, base = _start_gateway({'tasks': e2e.agent_ports['tasks']}, tmp_path_factory.mktemp('push-gw'))
    try:
        yield base
    finally:
        proc.stop()


def is_canceled(version: str):
    def check(body: dict) -> bool:
        if version == '1.0':
            return body.get('statusUpdate', {}).get('status', {}).get('state') == 'TASK_STATE_CANCELED'
        return body.get('kind') == 'status-update' and body['status']['state'] == 'canceled'
    return check


def event_numbers(hits: list[dict]) -> list[int]:
    return [int(h['event_id'].rsplit(':', 1)[1]) for h in hits]


@pytest.mark.parametrize('version', VERSIONS)
def test_sdk_client_receives_every_update_of_a_long_task(push_gateway, receiver, version, client_binding):
    """A slow task (it works until canceled) with a webhook set in the message: every
    committed update arrives once, numbered 1..n in order, with the config's token, in the
    client's version; a config created mid-task gets the updates after it. The config
    methods run over the client's binding (JSON-RPC, or HTTP+JSON's pushNotificationConfigs
    routes)."""
    token = f'tok-{version}'
    # SDK 1.3.0's 0.3 REST client has no list or delete (NotImplementedError).
    can_list = (version, client_binding) != ('0.3', 'HTTP+JSON')

    async def body():
        async with await sdk_client(f'{push_gateway}/agents/tasks', version, streaming=True, binding=client_binding) as client:
            hook = TaskPushNotificationConfig(id='hook', url=receiver.url, token=token)
            request = SendMessageRequest(
                message=user_message('slow please'),
                configuration=SendMessageConfiguration(task_push_notification_config=hook),
            )
            stream = client.send_message(request)
            first = await anext(stream)
            await stream.aclose()
            task_id = first.task.id
            late = TaskPushNotificationConfig(task_id=task_id, id='late', url=receiver.url, token='late')
            created = await client.create_task_push_notification_config(late)
            assert (created.id, created.task_id, created.url) == ('late', task_id, receiver.url)
            got = await client.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task_id, id='hook'))
            assert (got.url, got.token) == (receiver.url, token)
            if can_list:
                listed = await client.list_task_push_notification_configs(
                    ListTaskPushNotificationConfigsRequest(task_id=task_id))
                assert sorted(c.id for c in listed.configs) == ['hook', 'late']
            with pytest.raises(TaskNotFoundError):
                await client.get_task_push_notification_config(
                    GetTaskPushNotificationConfigRequest(task_id=task_id, id='no-such-config'))
            await client.cancel_task(CancelTaskRequest(id=task_id))
            return client, task_id

    async def delete(task_id: str):
        async with await sdk_client(f'{push_gateway}/agents/tasks', version, binding=client_binding) as client:
            await client.delete_task_push_notification_config(
                DeleteTaskPushNotificationConfigRequest(task_id=task_id, id='late'))
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task_id))
            assert [c.id for c in listed.configs] == ['hook']

    _, task_id = run(body())
    hits = receiver.wait_for(task_id, is_canceled(version), token=token)
    receiver.wait_for(task_id, is_canceled(version), token='late')
    numbers = event_numbers(hits)
    assert Counter(numbers).most_common(1)[0][1] == 1, f'each event once: {numbers}'
    assert numbers == list(range(1, len(numbers) + 1)), f'every event, in order: {numbers}'
    assert len(numbers) >= 3, numbers  # the task, working, canceled
    first = hits[0]['body']
    if version == '1.0':
        assert first['task']['id'] == task_id
        assert all(set(h['body']) & {'task', 'statusUpdate', 'artifactUpdate'} for h in hits), hits
    else:
        assert first['kind'] == 'task' and first['id'] == task_id
        assert all(h['body'].get('kind') in ('task', 'status-update', 'artifact-update') for h in hits), hits
    late = [h for h in receiver.of_task(task_id) if h['token'] == 'late']
    assert late and is_canceled(version)(late[-1]['body']), late
    assert min(event_numbers(late)) > 1, 'a config made mid-task gets the updates after it'
    if can_list:
        run(delete(task_id))


def test_a_task_answered_at_once_is_followed_and_pushed(push_gateway, receiver):
    """returnImmediately: the agent answers the task still running, and no stream reads it;
    the gateway follows it upstream and pushes its updates to the end."""
    url = f'{push_gateway}/agents/tasks'
    params = {'message': msg10('slow and unwatched'),
              'configuration': {'returnImmediately': True,
                                'taskPushNotificationConfig': {'url': receiver.url, 'token': 't'}}}
    task = result_of(rpc(url, 'SendMessage', params, version='1.0'))['task']
    result_of(rpc(url, 'CancelTask', {'id': task['id']}, version='1.0'))
    hits = receiver.wait_for(task['id'], is_canceled('1.0'))
    numbers = event_numbers(hits)
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert all(h['token'] == 't' for h in hits)


def test_private_webhooks_are_refused_by_default(e2e, tasks_done):
    """The session's gateway has no allow-list: loopback, private and metadata targets are
    refused with a clear error, before anything is stored."""
    url = e2e.agent_url('tasks')
    for target in ['http://127.0.0.1:9/hook', 'http://localhost:9/hook', 'http://169.254.169.254/latest',
                   'http://10.1.2.3/hook']:
        doc = rpc(url, 'CreateTaskPushNotificationConfig', {'taskId': tasks_done, 'url': target}, version='1.0')
        assert doc['error']['code'] == -32602, doc
        assert 'push.allow_cidrs' in doc['error']['message'], doc
    listed = result_of(rpc(url, 'ListTaskPushNotificationConfigs', {'taskId': tasks_done}, version='1.0'))
    assert listed == {'configs': [], 'nextPageToken': ''}


@pytest.fixture(scope='module')
def tasks_done(e2e) -> str:
    url = e2e.agent_url('tasks')
    return result_of(rpc(url, 'SendMessage', {'message': msg10('done task')}, version='1.0'))['task']['id']


def test_superx_signed_webhook_verifies(push_gateway, receiver):
    """SuperX's `message.send` on /rpc with `metadata.webhook` carrying an HMAC secret and an
    HS256 JWT secret: the receiver checks both over the exact bytes it got."""
    import base64
    import hashlib
    import hmac

    webhook = {'url': receiver.url, 'hmacSecret': 'h-secret', 'jwtSecret': 'j-secret', 'jwtIssuer': 'superx'}
    params = {'agentId': 'tasks', 'message': msg10('signed please'), 'metadata': {'webhook': webhook}}
    task = result_of(rpc(f'{push_gateway}/rpc', 'message.send', params, version='1.0'))['task']
    hits = receiver.wait_for(task['id'], lambda body: 'task' in body)
    hit = hits[0]
    headers, raw = hit['headers'], hit['raw']
    timestamp = headers['x-a2a-timestamp']
    expected = hmac.new(b'h-secret', f'{timestamp}.'.encode() + raw, hashlib.sha256).hexdigest()
    assert headers['x-a2a-signature'] == expected

    def b64(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + '=' * (-len(segment) % 4))

    head, payload, signature = headers['authorization'].removeprefix('Bearer ').split('.')
    assert b64(signature) == hmac.new(b'j-secret', f'{head}.{payload}'.encode(), hashlib.sha256).digest()
    assert json.loads(b64(head)) == {'alg': 'HS256', 'typ': 'JWT'}
    claims = json.loads(b64(payload))
    assert claims['taskId'] == task['id'] and claims['iss'] == 'superx'
    assert claims['hash'] == hashlib.sha256(raw).hexdigest()
    assert claims['nbf'] < claims['iat'] < claims['exp']


def test_gateway_signed_jwt_verifies_with_its_jwks(push_gateway, receiver):
    """A config asking for `Bearer` without credentials: the gateway signs an ES256 JWT with
    the cluster's key, which verifies with the JWKS at /.well-known/jwks.json."""
    import base64
    import hashlib

    import httpx

    crypto = pytest.importorskip('cryptography.hazmat.primitives.asymmetric.ec')
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    def b64(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + '=' * (-len(segment) % 4))

    params = {'message': msg10('jwks please'),
              'configuration': {'taskPushNotificationConfig': {'url': receiver.url,
                                                               'authentication': {'scheme': 'Bearer'}}}}
    task = result_of(rpc(f'{push_gateway}/agents/tasks', 'SendMessage', params, version='1.0'))['task']
    hit = receiver.wait_for(task['id'], lambda body: 'task' in body)[0]
    head, payload, signature = hit['headers']['authorization'].removeprefix('Bearer ').split('.')
    header = json.loads(b64(head))
    jwks = httpx.get(f'{push_gateway}/.well-known/jwks.json', timeout=10).json()
    jwk = next(k for k in jwks['keys'] if k['kid'] == header['kid'])
    assert (header['alg'], jwk['kty'], jwk['crv']) == ('ES256', 'EC', 'P-256')
    public = crypto.EllipticCurvePublicNumbers(
        int.from_bytes(b64(jwk['x']), 'big'), int.from_bytes(b64(jwk['y']), 'big'), crypto.SECP256R1()
    ).public_key()
    raw_signature = b64(signature)
    der = encode_dss_signature(int.from_bytes(raw_signature[:32], 'big'), int.from_bytes(raw_signature[32:], 'big'))
    public.verify(der, f'{head}.{payload}'.encode(), crypto.ECDSA(hashes.SHA256()))  # raises if it does not verify
    claims = json.loads(b64(payload))
    assert claims['taskId'] == task['id']
    assert claims['hash'] == hashlib.sha256(hit['raw']).hexdigest()
