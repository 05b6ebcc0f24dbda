"""Tasks belong to the caller that created them: two callers with two API keys, through the
official SDK clients (1.0 and 0.3, JSON-RPC and HTTP+JSON). Neither gets, cancels,
subscribes to, continues or sets push configs on the other's task, nor lists it; every answer
is the answer for a task that does not exist (the SDK raises the same error with the same
message), and on the wire (JSON-RPC code, message and data; HTTP+JSON status and body; a
resumed stream) they are byte for byte the same. An admin sees both callers' tasks."""

from __future__ import annotations

import httpx
import pytest

from a2a.client.auth.credentials import CredentialService
from a2a.client.auth.interceptor import AuthInterceptor
from a2a.types import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)

from conftest import _start_gateway
from e2e_util import HTTP_TIMEOUT_SECONDS, VERSIONS, msg03, msg10, run, sdk_client, send, send_for_task, user_message


ADMIN = 'e2e-owner-admin-token-0123456789'
MISSING = 'no-such-task-anywhere'

pytestmark = pytest.mark.gateway_only


class ApiKey(CredentialService):
    def __init__(self, key: str) -> None:
        self.key = key

    async def get_credentials(self, security_scheme_name, context):
        return self.key if security_scheme_name == 'apiKey' else None


def _rpc(url: str, method: str, params: dict, headers: dict) -> dict:
    body = {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params}
    return httpx.post(url, json=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS).json()


@pytest.fixture(scope='module')
def owners(e2e, tmp_path_factory):
    """A gateway requiring credentials in front of the task agent, and two callers' keys."""
    settings = {'SUPERX_AUTH__MODE': 'required', 'SUPERX_AUTH__ADMIN_TOKEN': ADMIN}
    proc, base = _start_gateway(
        {'tasks': e2e.agent_ports['tasks']}, tmp_path_factory.mktemp('owner-gw'), extra_env=settings
    )
    try:
        admin = {'Authorization': f'Bearer {ADMIN}'}
        keys = [_rpc(f'{base}/rpc', 'keys/create', {'name': n}, admin)['result']['key'] for n in ('alice', 'bob')]
        yield base, keys[0], keys[1]
    finally:
        proc.stop()


def _client(base: str, version: str, binding: str, key: str):
    return sdk_client(f'{base}/agents/tasks', version, binding=binding, interceptors=[AuthInterceptor(ApiKey(key))])


async def _outcome(call, task_id: str) -> tuple[str, str]:
    """What a call about `task_id` raised: the error's type and message, the id replaced."""
    try:
        await call(task_id)
    except Exception as e:  # noqa: BLE001 (any answer but an error fails below)
        return type(e).__name__, str(e).replace(task_id, '<TASK>')
    return 'no error', ''


def _every_call(client):
    """Every SDK call about one task."""

    async def subscribe(t):
        return [e async for e in client.subscribe(SubscribeToTaskRequest(id=t))]

    config = lambda t: TaskPushNotificationConfig(task_id=t, id='hook', url='https://hooks.example/x')  # noqa: E731
    return {
        'get': lambda t: client.get_task(GetTaskRequest(id=t)),
        'cancel': lambda t: client.cancel_task(CancelTaskRequest(id=t)),
        'subscribe': subscribe,
        'continue': lambda t: send(client, user_message('more', task_id=t)),
        'push create': lambda t: client.create_task_push_notification_config(config(t)),
        'push get': lambda t: client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=t, id='hook')),
        'push list': lambda t: client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=t)),
        'push delete': lambda t: client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=t, id='hook')),
    }


@pytest.mark.parametrize('version', VERSIONS)
def test_sdk_clients_see_only_their_own_tasks(owners, version, client_binding):
    base, alice_key, bob_key = owners

    async def body():
        async with await _client(base, version, client_binding, alice_key) as alice, \
                await _client(base, version, client_binding, bob_key) as bob:
            running = await send_for_task(alice, user_message('slow please'), return_immediately=True)
            done = await send_for_task(alice, user_message('done soon'))
            bobs = await send_for_task(bob, user_message('mine'))
            for theirs, caller in ((running.id, bob), (done.id, bob), (bobs.id, alice)):
                for name, call in _every_call(caller).items():
                    missing = await _outcome(call, MISSING)
                    if missing[0] == 'NotImplementedError':
                        continue  # SDK 1.3.0's 0.3 REST client has no push config list
                    hidden = await _outcome(call, theirs)
                    assert hidden == missing, f'{name}: {hidden} != {missing}'
                    assert hidden[0] != 'no error', name
            # Listing: each its own, counted alone.
            if version == '1.0':
                listed = await bob.list_tasks(ListTasksRequest(page_size=100))
                ids = {t.id for t in listed.tasks}
                assert bobs.id in ids and running.id not in ids and done.id not in ids
                assert listed.total_size == len(ids)
            # Nothing Bob did touched Alice's running task; she can cancel it.
            still = await alice.get_task(GetTaskRequest(id=running.id))
            assert still.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING), still
            with pytest.raises(Exception) as no_config:
                await alice.get_task_push_notification_config(
                    GetTaskPushNotificationConfigRequest(task_id=running.id, id='hook'))
            assert 'not found' in str(no_config.value).lower(), no_config.value
            canceled = await alice.cancel_task(CancelTaskRequest(id=running.id))
            assert canceled.status.state == TaskState.TASK_STATE_CANCELED

    run(body())


def _raw_answers(base: str, key: str, task_id: str) -> dict[str, tuple[int, str, str]]:
    """Every binding's and version's wire answer about one task: status, content type, body
    (the id replaced)."""
    agent = f'{base}/agents/tasks'
    v10 = {'A2A-Version': '1.0', 'X-API-Key': key}
    v03 = {'A2A-Version': '0.3', 'X-API-Key': key}
    requests = {
        'jsonrpc 1.0 GetTask': ('POST', agent, v10, {'method': 'GetTask', 'params': {'id': task_id}}),
        'jsonrpc 1.0 CancelTask': ('POST', agent, v10, {'method': 'CancelTask', 'params': {'id': task_id}}),
        'jsonrpc 1.0 SubscribeToTask': ('POST', agent, v10, {'method': 'SubscribeToTask', 'params': {'id': task_id}}),
        'jsonrpc 1.0 resume': (
            'POST', agent, {**v10, 'Last-Event-ID': '1'}, {'method': 'SubscribeToTask', 'params': {'id': task_id}}),
        'jsonrpc 1.0 SendMessage': (
            'POST', agent, v10, {'method': 'SendMessage', 'params': {'message': msg10('more', taskId=task_id)}}),
        'jsonrpc 1.0 push': ('POST', agent, v10, {'method': 'CreateTaskPushNotificationConfig',
                                                  'params': {'taskId': task_id, 'url': 'https://hooks.example/x'}}),
        'jsonrpc 0.3 tasks/get': ('POST', agent, v03, {'method': 'tasks/get', 'params': {'id': task_id}}),
        'jsonrpc 0.3 tasks/cancel': ('POST', agent, v03, {'method': 'tasks/cancel', 'params': {'id': task_id}}),
        'jsonrpc 0.3 tasks/resubscribe': ('POST', agent, v03, {'method': 'tasks/resubscribe', 'params': {'id': task_id}}),
        'jsonrpc 0.3 message/send': (
            'POST', agent, v03, {'method': 'message/send', 'params': {'message': msg03('more', taskId=task_id)}}),
        'jsonrpc 0.3 push get': ('POST', agent, v03, {'method': 'tasks/pushNotificationConfig/get',
                                                      'params': {'id': task_id}}),
        'rest 1.0 get': ('GET', f'{agent}/tasks/{task_id}', v10, None),
        'rest 1.0 cancel': ('POST', f'{agent}/tasks/{task_id}:cancel', v10, {}),
        'rest 1.0 subscribe': ('POST', f'{agent}/tasks/{task_id}:subscribe', v10, {}),
        'rest 1.0 resume': ('GET', f'{agent}/tasks/{task_id}:subscribe', {**v10, 'Last-Event-ID': '1'}, None),
        'rest 1.0 push list': ('GET', f'{agent}/tasks/{task_id}/pushNotificationConfigs', v10, None),
        'rest 1.0 send': ('POST', f'{agent}/message:send', v10, {'message': msg10('more', taskId=task_id)}),
        'rest 0.3 get': ('GET', f'{agent}/v1/tasks/{task_id}', v03, None),
        'rest 0.3 cancel': ('POST', f'{agent}/v1/tasks/{task_id}:cancel', v03, {}),
        'rest 0.3 push get': ('GET', f'{agent}/v1/tasks/{task_id}/pushNotificationConfigs/hook', v03, None),
    }
    answers = {}
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
        for name, (verb, url, headers, body) in requests.items():
            if name.startswith('jsonrpc'):
                body = {'jsonrpc': '2.0', 'id': 9, **body}
            r = http.request(verb, url, headers=headers, json=body)
            answers[name] = (r.status_code, r.headers.get('content-type', ''), r.text.replace(task_id, '<TASK>'))
    return answers


def test_wire_answers_are_byte_identical_to_a_missing_task(owners):
    base, alice_key, bob_key = owners

    async def make():
        async with await _client(base, '1.0', 'JSONRPC', alice_key) as alice:
            return await send_for_task(alice, user_message('hidden'))

    theirs = run(make()).id
    hidden = _raw_answers(base, bob_key, theirs)
    missing = _raw_answers(base, bob_key, MISSING)
    for name in hidden:
        assert hidden[name] == missing[name], name
        status, _, text = hidden[name]
        assert status == 404 or '-32001' in text or 'TaskNotFound' in text, (name, hidden[name])
    # Alice reads it; the admin too; the admin lists both callers' tasks.
    assert _rpc(f'{base}/agents/tasks', 'GetTask', {'id': theirs}, {'A2A-Version': '1.0', 'X-API-Key': alice_key})[
        'result']['id'] == theirs
    admin = {'A2A-Version': '1.0', 'Authorization': f'Bearer {ADMIN}'}
    assert _rpc(f'{base}/agents/tasks', 'GetTask', {'id': theirs}, admin)['result']['id'] == theirs
    listed = _rpc(f'{base}/agents/tasks', 'ListTasks', {'pageSize': 100}, admin)['result']
    bobs = _rpc(f'{base}/agents/tasks', 'ListTasks', {'pageSize': 100}, {'A2A-Version': '1.0', 'X-API-Key': bob_key})
    assert listed['totalSize'] > bobs['result']['totalSize']
    assert theirs in {t['id'] for t in listed['tasks']}
    assert theirs not in {t['id'] for t in bobs['result']['tasks']}
