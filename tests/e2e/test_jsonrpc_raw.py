"""Raw JSON-RPC over httpx against a per-agent endpoint: the exact error codes and shapes of
A2A 1.0 (PascalCase methods, `A2A-Version: 1.0`, `data: [ErrorInfo]`) and 0.3 (slash
methods, no header or `A2A-Version: 0.3`, no ErrorInfo array), and historyLength.

Where the SDK agent itself differs from what the gateway must do, the case says so:
`gateway_only` (the SDK does not implement it at all) or `direct_code` / `direct_any_data`
(the SDK answers with another code, or puts an ErrorInfo array on an error it cannot tell
the version of)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest

from e2e_util import (
    assert_error_info,
    assert_no_error_info,
    error_of,
    msg03,
    msg10,
    post,
    result_of,
    rpc,
)


@pytest.fixture(scope='module')
def tasks(e2e):
    """Task ids in known states on the `tasks` agent."""
    url = e2e.agent_url('tasks')
    done = result_of(rpc(url, 'SendMessage', {'message': msg10('done task')}, version='1.0'))
    asking = result_of(rpc(url, 'SendMessage', {'message': msg10('ask me')}, version='1.0'))
    assert done['task']['status']['state'] == 'TASK_STATE_COMPLETED', done
    assert asking['task']['status']['state'] == 'TASK_STATE_INPUT_REQUIRED', asking
    return {'done': done['task']['id'], 'asking': asking['task']['id']}


@dataclass
class Case:
    name: str
    version: str  # the form of the error: '1.0' or '0.3'
    code: int
    request: Callable[[dict], dict]  # task ids -> kwargs for post()
    reason: str | None = None  # 1.0 ErrorInfo reason; required unless optional_info
    optional_info: bool = False  # 1.0: ErrorInfo checked only if `data` is present
    rpc_id: Any = 1  # the id the response must carry
    gateway_only: bool = False
    direct_code: int | None = None  # the SDK agent's code, when it differs
    direct_any_data: bool = False  # the SDK agent adds ErrorInfo to this 0.3 error


def call(method: str, params: Any, version: str | None, rpc_id: Any = 1, **kw: Any) -> dict:
    body = {'jsonrpc': '2.0', 'id': rpc_id, 'method': method, 'params': params}
    return {'body': body, 'version': version, **kw}


V1 = '1.0'
CASES = [
    # --- 1.0 ------------------------------------------------------------------------
    Case('parse_error', V1, -32700, lambda t: {'raw': '{"jsonrpc": "2.0", "id": 1,', 'version': V1},
         reason='PARSE_ERROR', optional_info=True, rpc_id=None),
    Case('missing_jsonrpc', V1, -32600,
         lambda t: {'body': {'id': 1, 'method': 'GetTask', 'params': {'id': t['done']}}, 'version': V1},
         reason='INVALID_REQUEST'),
    Case('bad_id_type', V1, -32600,
         lambda t: call('GetTask', {'id': t['done']}, V1, rpc_id={'a': 1}),
         reason='INVALID_REQUEST', rpc_id=None),
    Case('unknown_method', V1, -32601, lambda t: call('NoSuchMethod', {}, V1),
         reason='METHOD_NOT_FOUND', optional_info=True),
    Case('send_without_message', V1, -32602, lambda t: call('SendMessage', {}, V1),
         reason='INVALID_PARAMS'),
    Case('wrong_param_type', V1, -32602,
         lambda t: call('GetTask', {'id': t['done'], 'historyLength': 'x'}, V1),
         reason='INVALID_PARAMS'),
    Case('context_mismatch', V1, -32602,
         lambda t: call('SendMessage', {'message': msg10('x', taskId=t['asking'], contextId='other-ctx')}, V1),
         reason='INVALID_PARAMS'),
    Case('text_plain', V1, -32005,
         lambda t: {**call('GetTask', {'id': t['done']}, V1), 'content_type': 'text/plain'},
         reason='CONTENT_TYPE_NOT_SUPPORTED', gateway_only=True),
    Case('version_9_9', V1, -32009, lambda t: call('GetTask', {'id': t['done']}, '9.9'),
         reason='VERSION_NOT_SUPPORTED'),
    Case('pascal_without_version', V1, -32009, lambda t: call('GetTask', {'id': t['done']}, None),
         reason='VERSION_NOT_SUPPORTED'),
    Case('pascal_with_0_3', V1, -32009, lambda t: call('GetTask', {'id': t['done']}, '0.3'),
         reason='VERSION_NOT_SUPPORTED'),
    Case('get_unknown_task', V1, -32001, lambda t: call('GetTask', {'id': 'no-such-task'}, V1),
         reason='TASK_NOT_FOUND'),
    Case('cancel_unknown_task', V1, -32001, lambda t: call('CancelTask', {'id': 'no-such-task'}, V1),
         reason='TASK_NOT_FOUND'),
    Case('send_unknown_task', V1, -32001,
         lambda t: call('SendMessage', {'message': msg10('x', taskId='no-such-task')}, V1),
         reason='TASK_NOT_FOUND'),
    Case('cancel_terminal', V1, -32002, lambda t: call('CancelTask', {'id': t['done']}, V1),
         reason='TASK_NOT_CANCELABLE'),
    Case('send_to_terminal', V1, -32004,
         lambda t: call('SendMessage', {'message': msg10('x', taskId=t['done'])}, V1),
         reason='UNSUPPORTED_OPERATION'),
    # The gateway relays push for every agent (the SDK agents have it off: -32003 there).
    Case('push_create_unknown_task', V1, -32001,
         lambda t: call('CreateTaskPushNotificationConfig',
                        {'taskId': 'no-such-task', 'url': 'https://example.com/hook'}, V1),
         reason='TASK_NOT_FOUND', gateway_only=True),
    Case('push_list_unknown_task', V1, -32001,
         lambda t: call('ListTaskPushNotificationConfigs', {'taskId': 'no-such-task'}, V1),
         reason='TASK_NOT_FOUND', gateway_only=True),
    Case('push_get_unknown_config', V1, -32001,
         lambda t: call('GetTaskPushNotificationConfig', {'taskId': t['done'], 'id': 'no-such-config'}, V1),
         reason='TASK_NOT_FOUND', gateway_only=True),
    Case('push_create_without_url', V1, -32602,
         lambda t: call('CreateTaskPushNotificationConfig', {'taskId': t['done']}, V1),
         reason='INVALID_PARAMS', gateway_only=True),
    Case('push_create_private_target', V1, -32602,
         lambda t: call('CreateTaskPushNotificationConfig',
                        {'taskId': t['done'], 'url': 'http://169.254.169.254/latest'}, V1),
         reason='INVALID_PARAMS', gateway_only=True),
    # --- 0.3 ------------------------------------------------------------------------
    Case('parse_error', '0.3', -32700, lambda t: {'raw': '{"jsonrpc": "2.0", "id": 1,'},
         rpc_id=None, direct_any_data=True),
    Case('missing_jsonrpc', '0.3', -32600,
         lambda t: {'body': {'id': 1, 'method': 'tasks/get', 'params': {'id': t['done']}}},
         direct_any_data=True),
    Case('bad_id_type', '0.3', -32600,
         lambda t: call('tasks/get', {'id': t['done']}, None, rpc_id=[1]),
         rpc_id=None, direct_any_data=True),
    Case('unknown_method', '0.3', -32601, lambda t: call('tasks/nope', {}, None)),
    Case('send_without_message', '0.3', -32602, lambda t: call('message/send', {}, None),
         direct_code=-32600),
    Case('wrong_param_type', '0.3', -32602, lambda t: call('tasks/get', {'id': 5}, '0.3'),
         direct_code=-32600),
    Case('context_mismatch', '0.3', -32602,
         lambda t: call('message/send', {'message': msg03('x', taskId=t['asking'], contextId='other-ctx')}, None)),
    Case('text_plain', '0.3', -32005,
         lambda t: {**call('tasks/get', {'id': t['done']}, None), 'content_type': 'text/plain'},
         gateway_only=True),
    Case('slash_with_version_9_9', '0.3', -32009, lambda t: call('tasks/get', {'id': t['done']}, '9.9'),
         gateway_only=True),
    Case('slash_with_version_1_0', '0.3', -32009, lambda t: call('tasks/get', {'id': t['done']}, V1),
         gateway_only=True),
    Case('get_unknown_task', '0.3', -32001, lambda t: call('tasks/get', {'id': 'no-such-task'}, '0.3')),
    Case('cancel_unknown_task', '0.3', -32001, lambda t: call('tasks/cancel', {'id': 'no-such-task'}, None)),
    Case('send_unknown_task', '0.3', -32001,
         lambda t: call('message/send', {'message': msg03('x', taskId='no-such-task')}, None)),
    Case('cancel_terminal', '0.3', -32002, lambda t: call('tasks/cancel', {'id': t['done']}, None)),
    Case('send_to_terminal', '0.3', -32004,
         lambda t: call('message/send', {'message': msg03('x', taskId=t['done'])}, '0.3')),
    Case('push_set_unknown_task', '0.3', -32001,
         lambda t: call('tasks/pushNotificationConfig/set',
                        {'taskId': 'no-such-task', 'pushNotificationConfig': {'url': 'https://example.com/hook'}},
                        None), gateway_only=True),
    Case('push_get_unknown_config', '0.3', -32001,
         lambda t: call('tasks/pushNotificationConfig/get',
                        {'id': t['done'], 'pushNotificationConfigId': 'no-such-config'}, None),
         gateway_only=True),
]


def _param(case: Case):
    marks = [pytest.mark.gateway_only] if case.gateway_only else []
    return pytest.param(case, id=f'{case.version}-{case.name}', marks=marks)


@pytest.mark.parametrize('case', [_param(c) for c in CASES])
def test_error(e2e, tasks, case: Case):
    r = post(e2e.agent_url('tasks'), **case.request(tasks))
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers['content-type'].startswith('application/json'), r.headers
    doc = r.json()
    assert doc.get('jsonrpc') == '2.0', doc
    assert 'result' not in doc, doc
    assert doc.get('id') == case.rpc_id, doc
    code = case.direct_code if (e2e.direct and case.direct_code) else case.code
    err = error_of(doc, code)
    if case.version == '1.0':
        if case.optional_info and 'data' not in err:
            return
        assert_error_info(err, case.reason)
    elif not (e2e.direct and case.direct_any_data):
        assert_no_error_info(err)


def test_success_carries_request_id_of_any_type(e2e, tasks):
    url = e2e.agent_url('tasks')
    for rpc_id in ['abc', 7, 0]:
        doc = rpc(url, 'GetTask', {'id': tasks['done']}, version='1.0', rpc_id=rpc_id)
        assert result_of(doc)['id'] == tasks['done']
        doc = rpc(url, 'tasks/get', {'id': tasks['done']}, rpc_id=rpc_id)
        assert result_of(doc)['kind'] == 'task'


def test_get_task_history_length_1_0(e2e):
    url = e2e.agent_url('tasks')
    sent = result_of(rpc(url, 'SendMessage', {'message': msg10('history please')}, version='1.0'))
    task_id = sent['task']['id']
    full = result_of(rpc(url, 'GetTask', {'id': task_id}, version='1.0'))
    assert len(full['history']) >= 2, full
    assert full['history'][0]['parts'] == [{'text': 'history please'}]
    none = result_of(rpc(url, 'GetTask', {'id': task_id, 'historyLength': 0}, version='1.0'))
    assert none.get('history', []) == []
    assert none['status']['state'] == 'TASK_STATE_COMPLETED'
    assert none['artifacts'] == full['artifacts']
    one = result_of(rpc(url, 'GetTask', {'id': task_id, 'historyLength': 1}, version='1.0'))
    assert one['history'] == full['history'][-1:]
    many = result_of(rpc(url, 'GetTask', {'id': task_id, 'historyLength': 100}, version='1.0'))
    assert many['history'] == full['history']


def test_get_task_0_3_shape(e2e):
    url = e2e.agent_url('tasks')
    sent = result_of(rpc(url, 'message/send', {'message': msg03('legacy hello')}))
    assert sent['kind'] == 'task'
    assert sent['status']['state'] == 'completed'
    assert sent['artifacts'][0]['parts'] == [{'kind': 'text', 'text': 'legacy hello'}]
    got = result_of(rpc(url, 'tasks/get', {'id': sent['id']}, version='0.3'))
    assert got['kind'] == 'task'
    assert got['id'] == sent['id'] and got['contextId'] == sent['contextId']
    assert got['status']['state'] == 'completed'
    assert got['artifacts'] == sent['artifacts']
    assert all(m['kind'] == 'message' and m['role'] in ('user', 'agent') for m in got['history'])


@pytest.mark.gateway_only
def test_get_task_history_length_0_3(e2e):
    """The SDK ignores historyLength 0 on 0.3 tasks/get; the gateway honours it."""
    url = e2e.agent_url('tasks')
    sent = result_of(rpc(url, 'message/send', {'message': msg03('legacy history')}))
    none = result_of(rpc(url, 'tasks/get', {'id': sent['id'], 'historyLength': 0}))
    assert none.get('history', []) == []
    one = result_of(rpc(url, 'tasks/get', {'id': sent['id'], 'historyLength': 1}))
    full = result_of(rpc(url, 'tasks/get', {'id': sent['id']}))
    assert one['history'] == full['history'][-1:]


def test_list_tasks_raw_shape(e2e):
    url = e2e.agent_url('tasks')
    first = result_of(rpc(url, 'SendMessage', {'message': msg10('raw list')}, version='1.0'))['task']
    ctx = first['contextId']
    rpc(url, 'SendMessage', {'message': msg10('raw list 2', contextId=ctx)}, version='1.0')
    page = result_of(rpc(url, 'ListTasks', {'contextId': ctx, 'pageSize': 1}, version='1.0'))
    assert set(page) >= {'tasks', 'nextPageToken', 'pageSize', 'totalSize'}, page
    assert len(page['tasks']) == 1 and page['pageSize'] == 1 and page['totalSize'] == 2
    assert page['nextPageToken'] != ''
    last = result_of(rpc(url, 'ListTasks', {'contextId': ctx, 'pageSize': 1,
                                            'pageToken': page['nextPageToken']}, version='1.0'))
    assert len(last['tasks']) == 1 and last['nextPageToken'] == ''
    assert {page['tasks'][0]['id'], last['tasks'][0]['id']} >= {first['id']}
    assert page['tasks'][0]['id'] != last['tasks'][0]['id']

    plain = result_of(rpc(url, 'ListTasks', {'contextId': ctx}, version='1.0'))
    assert all('artifacts' not in t for t in plain['tasks']), plain
    with_art = result_of(rpc(url, 'ListTasks', {'contextId': ctx, 'includeArtifacts': True,
                                                'historyLength': 0}, version='1.0'))
    assert sorted(t['artifacts'][0]['parts'][0]['text'] for t in with_art['tasks']) == [
        'raw list', 'raw list 2']
    assert all(not t.get('history') for t in with_art['tasks']), with_art
    failed = result_of(rpc(url, 'ListTasks', {'contextId': ctx, 'status': 'TASK_STATE_FAILED'},
                           version='1.0'))
    assert failed['tasks'] == [] and failed['totalSize'] == 0 and failed['nextPageToken'] == ''
