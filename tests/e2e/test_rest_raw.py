"""The gateway's HTTP+JSON (REST) binding for clients, on the wire: every operation's status
and body shape on the A2A 1.0 paths (`/agents/{id}/message:send`, ...), with a `{tenant}/`
prefix, and on the 0.3 `v1/` paths (0.3 ProtoJSON); `google.rpc.Status` error bodies with
their HTTP statuses; SSE streams of bare StreamResponses with `id:` lines and a resumed
subscription (`Last-Event-ID`); and the official SDK clients (1.0 and 0.3) over HTTP+JSON.

Every agent binding sits behind the gateway (`task_agent`), so these run against the gateway
only."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from a2a.client import ClientConfig, ClientFactory, create_client
from a2a.client.transports.rest import RestTransport
from a2a.compat.v0_3.rest_transport import CompatRestTransport
from a2a.types import CancelTaskRequest, GetTaskRequest, ListTasksRequest, TaskState
from a2a.utils.errors import TaskNotFoundError

from e2e_util import (
    ERROR_INFO_TYPE,
    HTTP_TIMEOUT_SECONDS,
    TERMINAL_STATES,
    artifact_texts,
    fetch_card,
    msg10,
    new_id,
    result_of,
    rpc,
    run,
    send,
    send_for_task,
    user_message,
)


pytestmark = pytest.mark.gateway_only

V1 = {'A2A-Version': '1.0'}
STREAM_SECONDS_MAX = 30.0


def base(e2e, agent: str) -> str:
    return f'{e2e.gateway}/agents/{agent}'


def call(method: str, url: str, *, body=None, headers=None, params=None, version: dict | None = V1) -> httpx.Response:
    h = dict(version or {})
    if body is not None:
        h['Content-Type'] = 'application/json'
    h.update(headers or {})
    content = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
    return httpx.request(method, url, content=content, headers=h, params=params, timeout=HTTP_TIMEOUT_SECONDS)


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers['content-type'].startswith('application/'), r.headers
    return r.json()


def status_error(r: httpx.Response, http: int, status: str, reason: str | None) -> dict:
    """A google.rpc.Status body with this HTTP status, code name and ErrorInfo reason."""
    assert r.status_code == http, (r.status_code, r.text)
    assert r.headers['content-type'].startswith('application/'), r.headers
    err = r.json()['error']
    assert (err['code'], err['status']) == (http, status), err
    assert isinstance(err['message'], str) and err['message'], err
    if reason is not None:
        info = err['details'][0]
        assert info['@type'] == ERROR_INFO_TYPE, err
        assert (info['reason'], info['domain']) == (reason, 'a2a-protocol.org'), err
    return err


def send_rest(e2e, agent: str, text: str, prefix: str = '', **config) -> dict:
    body = {'message': msg10(text)}
    if config:
        body['configuration'] = config
    return ok(call('POST', f'{base(e2e, agent)}/{prefix}message:send', body=body))


def sse_events(method: str, url: str, *, body=None, headers=None, on_event=None):
    """A streaming call: (response headers, [(event id or None, event name, data JSON)])."""
    h = {**V1, **(headers or {})}
    events = []
    with httpx.stream(method, url, json=body, headers=h, timeout=STREAM_SECONDS_MAX) as r:
        assert r.status_code == 200, (r.status_code, r.read())
        assert r.headers['content-type'].startswith('text/event-stream'), r.headers
        event_id, name, data = None, None, []
        for line in r.iter_lines():
            if line.startswith('id:'):
                event_id = int(line[3:].strip())
            elif line.startswith('event:'):
                name = line[6:].strip()
            elif line.startswith('data:'):
                data.append(line[5:].strip())
            elif line == '' and data:
                events.append((event_id, name, json.loads('\n'.join(data))))
                if on_event and on_event(events[-1]):
                    break
                event_id, name, data = None, None, []
        return r.headers, events


# --- success, 1.0 -----------------------------------------------------------------------


def test_send_message_answers_a_task_or_a_message(e2e, task_agent):
    task = send_rest(e2e, task_agent, 'hello rest')['task']
    assert task['status']['state'] == 'TASK_STATE_COMPLETED', task
    assert 'hello rest' in json.dumps(task['artifacts'])
    message = send_rest(e2e, 'chat', 'hi there')['message']
    assert message['role'] == 'ROLE_AGENT' and message['parts'][0]['text'] == 'echo: hi there', message


def test_answer_media_type_follows_the_client(e2e):
    body = {'message': msg10('typed')}
    plain = call('POST', f'{base(e2e, "tasks")}/message:send', body=body)
    assert plain.headers['content-type'] == 'application/json', plain.headers
    a2a = call('POST', f'{base(e2e, "tasks")}/message:send', body=body, headers={'Content-Type': 'application/a2a+json'})
    assert a2a.status_code == 200 and a2a.headers['content-type'] == 'application/a2a+json', (a2a.headers, a2a.text)


def test_get_task_with_history_length(e2e, task_agent):
    task_id = send_rest(e2e, task_agent, 'get me')['task']['id']
    full = ok(call('GET', f'{base(e2e, task_agent)}/tasks/{task_id}'))
    assert full['id'] == task_id and full['status']['state'] == 'TASK_STATE_COMPLETED', full
    assert full['history'], full
    none = ok(call('GET', f'{base(e2e, task_agent)}/tasks/{task_id}', params={'historyLength': 0}))
    assert not none.get('history'), none


def test_list_tasks_with_query_parameters(e2e):
    context = new_id('ctx')
    for text in ('one', 'two'):
        ok(call('POST', f'{base(e2e, "tasks")}/message:send', body={'message': msg10(text, contextId=context)}))
    page = ok(call('GET', f'{base(e2e, "tasks")}/tasks',
                   params={'contextId': context, 'pageSize': 1, 'includeArtifacts': 'true', 'historyLength': 0}))
    assert (page['pageSize'], page['totalSize'], len(page['tasks'])) == (1, 2, 1), page
    assert page['nextPageToken'], page
    assert page['tasks'][0]['artifacts'] and not page['tasks'][0].get('history'), page
    rest = ok(call('GET', f'{base(e2e, "tasks")}/tasks', params={'contextId': context, 'pageToken': page['nextPageToken']}))
    assert len(rest['tasks']) == 1 and rest['nextPageToken'] == '', rest
    assert 'artifacts' not in rest['tasks'][0], 'artifacts only when asked for'
    done = ok(call('GET', f'{base(e2e, "tasks")}/tasks', params={'contextId': context, 'status': 'TASK_STATE_WORKING'}))
    assert done['tasks'] == [] and done['totalSize'] == 0, done


def test_cancel_task(e2e, task_agent):
    task = send_rest(e2e, task_agent, 'slow cancel me', returnImmediately=True)['task']
    canceled = ok(call('POST', f'{base(e2e, task_agent)}/tasks/{task["id"]}:cancel'))
    assert canceled['id'] == task['id'] and canceled['status']['state'] == 'TASK_STATE_CANCELED', canceled
    again = call('POST', f'{base(e2e, task_agent)}/tasks/{task["id"]}:cancel')
    status_error(again, 400, 'FAILED_PRECONDITION', 'TASK_NOT_CANCELABLE')


def test_tenant_prefix(e2e):
    task = send_rest(e2e, 'tasks', 'tenant hello', prefix='acme/')['task']
    got = ok(call('GET', f'{base(e2e, "tasks")}/acme/tasks/{task["id"]}'))
    assert got['id'] == task['id'], got
    listed = ok(call('GET', f'{base(e2e, "tasks")}/acme/tasks', params={'contextId': task['contextId']}))
    assert [t['id'] for t in listed['tasks']] == [task['id']], listed


def test_push_config_routes(e2e):
    """The pushNotificationConfigs routes run the config methods: on this gateway (no
    `push.allow_cidrs`) a loopback webhook is refused as a bad argument, nothing is stored,
    and a config that does not exist is not found (test_push.py delivers through them)."""
    task_id = send_rest(e2e, 'tasks', 'push')['task']['id']
    configs = f'{base(e2e, "tasks")}/tasks/{task_id}/pushNotificationConfigs'
    refused = status_error(call('POST', configs, body={'url': 'http://127.0.0.1:9/hook'}), 400, 'INVALID_ARGUMENT',
                           'INVALID_PARAMS')
    assert 'push.allow_cidrs' in refused['message'], refused
    assert ok(call('GET', configs)) == {'configs': [], 'nextPageToken': ''}
    status_error(call('GET', f'{configs}/c1'), 404, 'NOT_FOUND', 'TASK_NOT_FOUND')
    assert ok(call('DELETE', f'{configs}/c1')) == {}, 'deleting a config that is not there is done'
    missing = f'{base(e2e, "tasks")}/tasks/no-such-task/pushNotificationConfigs'
    status_error(call('GET', missing), 404, 'NOT_FOUND', 'TASK_NOT_FOUND')


def test_extended_card(e2e):
    r = call('GET', f'{base(e2e, "tasks")}/extendedAgentCard', headers={'Authorization': 'Bearer vip-token'})
    card = ok(r)
    assert 'vip' in [s['id'] for s in card['skills']], card
    assert 'url' not in card, 'a 1.0 client gets the strict 1.0 card'
    status_error(call('GET', f'{base(e2e, "chat")}/extendedAgentCard'), 400, 'FAILED_PRECONDITION', 'UNSUPPORTED_OPERATION')


# --- errors -----------------------------------------------------------------------------


def test_unknown_task_and_unknown_agent(e2e):
    status_error(call('GET', f'{base(e2e, "tasks")}/tasks/no-such-task'), 404, 'NOT_FOUND', 'TASK_NOT_FOUND')
    status_error(call('POST', f'{base(e2e, "tasks")}/tasks/no-such-task:cancel'), 404, 'NOT_FOUND', 'TASK_NOT_FOUND')
    sent = call('POST', f'{base(e2e, "no-such-agent")}/message:send', body={'message': msg10('x')})
    err = status_error(sent, 404, 'NOT_FOUND', 'AGENT_NOT_FOUND')
    assert err['details'][0]['metadata']['agentId'] == 'no-such-agent', err


def test_unknown_route_and_wrong_method(e2e):
    status_error(call('GET', f'{base(e2e, "tasks")}/no/such/route/here/at/all'), 404, 'NOT_FOUND', 'METHOD_NOT_FOUND')
    wrong = call('GET', f'{base(e2e, "tasks")}/message:send')
    status_error(wrong, 405, 'UNIMPLEMENTED', 'METHOD_NOT_FOUND')
    assert wrong.headers['allow'] == 'POST', wrong.headers
    wrong = call('PUT', f'{base(e2e, "tasks")}/tasks/t1:subscribe')
    assert (wrong.status_code, wrong.headers['allow']) == (405, 'GET, POST'), wrong.headers
    # The JSON-RPC endpoint and the card routes are not HTTP+JSON paths.
    assert call('GET', f'{base(e2e, "tasks")}/.well-known/agent-card.json').status_code == 200
    doc = rpc(f'{base(e2e, "tasks")}/', 'GetTask', {'id': 'no-such-task'}, version='1.0')
    assert doc['error']['code'] == -32001, doc


@pytest.mark.parametrize('query', [{'pageSize': 'abc'}, {'historyLength': '-1'}, {'includeArtifacts': 'maybe'}, {'pageSize': '1000'}])
def test_bad_query_is_invalid_argument(e2e, query):
    status_error(call('GET', f'{base(e2e, "tasks")}/tasks', params=query), 400, 'INVALID_ARGUMENT', 'INVALID_PARAMS')


def test_bad_bodies(e2e):
    url = f'{base(e2e, "tasks")}/message:send'
    wrong_type = call('POST', url, body=json.dumps({'message': msg10('x')}), headers={'Content-Type': 'text/plain'})
    status_error(wrong_type, 415, 'INVALID_ARGUMENT', 'CONTENT_TYPE_NOT_SUPPORTED')
    status_error(call('POST', url, body='{not json'), 400, 'INVALID_ARGUMENT', 'PARSE_ERROR')
    status_error(call('POST', url, body='[1]'), 400, 'INVALID_ARGUMENT', 'INVALID_PARAMS')
    status_error(call('POST', url, body={'message': {'role': 'ROLE_USER'}}), 400, 'INVALID_ARGUMENT', 'INVALID_PARAMS')


def test_version_must_fit_the_path(e2e):
    url = f'{base(e2e, "tasks")}/message:send'
    body = {'message': msg10('x')}
    err = status_error(call('POST', url, body=body, version=None), 400, 'FAILED_PRECONDITION', 'VERSION_NOT_SUPPORTED')
    assert '0.3' in err['message'], err
    status_error(call('POST', url, body=body, version={'A2A-Version': '2.0'}), 400, 'FAILED_PRECONDITION', 'VERSION_NOT_SUPPORTED')
    assert ok(call('POST', url + '?A2A-Version=1.0', body=body, version=None))['task']
    v03 = f'{base(e2e, "tasks")}/v1/message:send'
    status_error(call('POST', v03, body=body, version=V1), 400, 'FAILED_PRECONDITION', 'VERSION_NOT_SUPPORTED')


def test_streaming_needs_a_streaming_agent(e2e):
    upstream = e2e.upstream_url('tasks')
    card = {
        'name': 'No Stream', 'description': 'd', 'version': '1',
        'supportedInterfaces': [{'url': upstream, 'protocolBinding': 'JSONRPC', 'protocolVersion': '1.0'}],
        'capabilities': {'streaming': False},
        'defaultInputModes': ['text/plain'], 'defaultOutputModes': ['text/plain'],
        'skills': [{'id': 's', 'name': 's', 'description': 's', 'tags': ['s']}],
    }
    agent = {'id': 'rest-nostream', 'url': upstream, 'metadata': {'agentCard': card}}
    result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': agent}))
    r = call('POST', f'{base(e2e, "rest-nostream")}/message:stream', body={'message': msg10('x')})
    status_error(r, 400, 'FAILED_PRECONDITION', 'UNSUPPORTED_OPERATION')


# --- streams ----------------------------------------------------------------------------


def test_stream_sends_bare_stream_responses_with_ids(e2e, task_agent):
    headers, events = sse_events('POST', f'{base(e2e, task_agent)}/message:stream', body={'message': msg10('stream it')})
    assert headers['cache-control'] == 'no-store', headers
    kinds = [next(iter(data)) for _, _, data in events]
    assert kinds[0] == 'task' and set(kinds[1:]) <= {'statusUpdate', 'artifactUpdate'}, kinds
    assert all('jsonrpc' not in data for _, _, data in events), 'no JSON-RPC envelope over HTTP+JSON'
    ids = [event_id for event_id, _, _ in events]
    assert all(i is not None for i in ids) and ids == sorted(set(ids)), ids
    assert events[-1][2]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED', events[-1]


def test_subscribe_resumes_after_last_event_id(e2e):
    url = base(e2e, 'tasks')
    # A slow task: read its stream up to the first event, then leave.
    _, first = sse_events('POST', f'{url}/message:stream', body={'message': msg10('slow resume')}, on_event=lambda e: True)
    last_id, _, data = first[0]
    task_id = data['task']['id']
    assert last_id is not None, first
    # A live subscription (GET) follows the task while it is canceled.
    got: dict = {}
    subscribed = threading.Event()

    def follow():
        got['headers'], got['events'] = sse_events(
            'GET', f'{url}/tasks/{task_id}:subscribe', on_event=lambda _: subscribed.set())

    follower = threading.Thread(target=follow)
    follower.start()
    assert subscribed.wait(STREAM_SECONDS_MAX), 'no snapshot on the subscription'
    ok(call('POST', f'{url}/tasks/{task_id}:cancel'))
    follower.join(STREAM_SECONDS_MAX)
    assert not follower.is_alive()
    live = got['events']
    assert 'task' in live[0][2] and live[-1][2]['statusUpdate']['status']['state'] == 'TASK_STATE_CANCELED', live
    # Resuming after the first event replays exactly what came after it, numbered.
    headers, resumed = sse_events('POST', f'{url}/tasks/{task_id}:subscribe', headers={'Last-Event-ID': str(last_id)})
    assert headers.get('superx-resume') == 'replayed', headers
    ids = [event_id for event_id, _, _ in resumed]
    assert ids and all(i > last_id for i in ids) and ids == sorted(ids), ids
    assert resumed[-1][2]['statusUpdate']['status']['state'] == 'TASK_STATE_CANCELED', resumed
    # Subscribing to the terminal task without Last-Event-ID is refused before any stream.
    r = call('POST', f'{url}/tasks/{task_id}:subscribe')
    status_error(r, 400, 'FAILED_PRECONDITION', 'UNSUPPORTED_OPERATION')


# --- 0.3 paths --------------------------------------------------------------------------


def msg03_proto(text: str) -> dict:
    return {'messageId': new_id(), 'role': 'ROLE_USER', 'content': [{'text': text}]}


def test_v03_paths_speak_protojson(e2e, task_agent):
    url = f'{base(e2e, task_agent)}/v1'
    sent = ok(call('POST', f'{url}/message:send', body={'message': msg03_proto('old rest')}, version=None))
    task = sent['task']
    assert task['status']['state'] == 'TASK_STATE_COMPLETED', task
    assert task['history'][0]['content'] == [{'text': 'old rest'}], task
    got = ok(call('GET', f'{url}/tasks/{task["id"]}', version={'A2A-Version': '0.3'}))
    assert got['id'] == task['id'] and 'parts' not in got['history'][0], got
    slow = ok(call('POST', f'{url}/message:send', body={'message': msg03_proto('slow'), 'configuration': {'blocking': False}}, version=None))
    canceled = ok(call('POST', f'{url}/tasks/{slow["task"]["id"]}:cancel', version=None))
    assert canceled['status']['state'] == 'TASK_STATE_CANCELLED', canceled
    missing = call('GET', f'{url}/tasks/nope', version=None)
    status_error(missing, 404, 'NOT_FOUND', 'TASK_NOT_FOUND')
    assert missing.json()['type'] == 'TaskNotFoundError', 'the 0.3 SDK client reads the error class from `type`'

    message = ok(call('POST', f'{base(e2e, "chat")}/v1/message:send', body={'message': msg03_proto('yo')}, version=None))
    assert message['message']['content'] == [{'text': 'echo: yo'}], message


def test_v03_stream_marks_the_last_update_final(e2e):
    _, events = sse_events('POST', f'{base(e2e, "tasks")}/v1/message:stream',
                           body={'message': msg03_proto('old stream')}, headers={'A2A-Version': '0.3'})
    updates = [data['statusUpdate'] for _, _, data in events if 'statusUpdate' in data]
    assert updates[-1]['final'] is True and updates[-1]['status']['state'] == 'TASK_STATE_COMPLETED', updates
    assert not any(u['final'] for u in updates[:-1]), updates


def test_v03_subscribe(e2e):
    url = f'{base(e2e, "tasks")}/v1'
    v03 = {'A2A-Version': '0.3'}
    slow = ok(call('POST', f'{url}/message:send', body={'message': msg03_proto('slow'), 'configuration': {}}, version=None))
    task_id = slow['task']['id']
    _, first = sse_events('GET', f'{url}/tasks/{task_id}:subscribe', headers=v03, on_event=lambda e: True)
    event_id, _, data = first[0]
    assert event_id is not None and data['task']['id'] == task_id, first
    assert data['task']['history'][0]['content'] == [{'text': 'slow'}], data
    ok(call('POST', f'{url}/tasks/{task_id}:cancel', version=None))
    _, resumed = sse_events('POST', f'{url}/tasks/{task_id}:subscribe', headers={**v03, 'Last-Event-ID': str(event_id)})
    last = resumed[-1][2]['statusUpdate']
    assert last['status']['state'] == 'TASK_STATE_CANCELLED' and last['final'] is True, resumed
    refused = call('POST', f'{url}/tasks/{task_id}:subscribe', version=None)
    status_error(refused, 400, 'FAILED_PRECONDITION', 'UNSUPPORTED_OPERATION')
    assert refused.json()['type'] == 'UnsupportedOperationError', refused.json()


def test_v03_card(e2e):
    card = ok(call('GET', f'{base(e2e, "tasks")}/v1/card', version=None, headers={'Authorization': 'Bearer vip-token'}))
    assert 'vip' in [s['id'] for s in card['skills']] and card['url'] == base(e2e, 'tasks'), card


def test_served_card_lists_http_json(e2e):
    card = ok(call('GET', f'{base(e2e, "tasks")}/.well-known/agent-card.json', version=None))
    pairs = [(i['protocolBinding'], i['protocolVersion']) for i in card['supportedInterfaces']]
    assert pairs == [('JSONRPC', '1.0'), ('HTTP+JSON', '1.0'), ('JSONRPC', '0.3'), ('HTTP+JSON', '0.3')], pairs
    assert {i['url'] for i in card['supportedInterfaces']} == {base(e2e, 'tasks')}
    assert card['preferredTransport'] == 'JSONRPC', card
    assert {'url': base(e2e, 'tasks'), 'transport': 'HTTP+JSON'} in card['additionalInterfaces'], card


# --- SDK clients ------------------------------------------------------------------------


async def rest_client(e2e, agent: str, version: str, streaming: bool = False):
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=['HTTP+JSON'])
    if version == '1.0':
        client = await create_client(base(e2e, agent), config)
        assert isinstance(client._transport, RestTransport), type(client._transport)
        return client
    card = await fetch_card(base(e2e, agent))
    keep = [i for i in card.supported_interfaces if i.protocol_binding == 'HTTP+JSON' and i.protocol_version == '0.3']
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(keep)
    client = ClientFactory(config).create(card)
    assert isinstance(client._transport, CompatRestTransport), type(client._transport)
    return client


@pytest.mark.parametrize('version', ['1.0', '0.3'])
def test_sdk_clients_over_http_json(e2e, version):
    async def body():
        client = await rest_client(e2e, 'tasks', version)
        task = await send_for_task(client, user_message('sdk rest'))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
        assert 'sdk rest' in ''.join(artifact_texts(task).values())
        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.id == task.id and got.status.state == TaskState.TASK_STATE_COMPLETED
        slow = await send_for_task(client, user_message('slow sdk'), return_immediately=True)
        canceled = await client.cancel_task(CancelTaskRequest(id=slow.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED, canceled
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id='no-such-task'))
        if version == '1.0':
            listed = await client.list_tasks(ListTasksRequest(context_id=task.context_id))
            assert [t.id for t in listed.tasks] == [task.id], listed
        streamer = await rest_client(e2e, 'tasks', version, streaming=True)
        events = await send(streamer, user_message('sdk stream'))
        assert events[0].HasField('task'), events
        last = events[-1]
        assert last.HasField('status_update') and last.status_update.status.state in TERMINAL_STATES, events

    run(body())
