"""Streaming over SSE through the gateway, on the wire: SendStreamingMessage / message/stream
event order and shapes, the client's JSON-RPC id in every event, `final` for 0.3, close on
input-required and continue, SubscribeToTask from the applied log, and GetTask agreeing with
the stream afterwards; against the agents on either binding (`task_agent`, `chat_agent`)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from e2e_util import HTTP_TIMEOUT_SECONDS, error_of, msg03, msg10, result_of, rpc


V1 = '1.0'
STREAM_SECONDS_MAX = 30.0


def sse(url: str, method: str, params: dict, version: str | None, rpc_id='s-1', on_event=None):
    """POSTs a streaming call and returns (response headers, [parsed JSON-RPC events]);
    `on_event` is called with each event as it arrives."""
    headers = {'Content-Type': 'application/json'}
    if version:
        headers['A2A-Version'] = version
    body = {'jsonrpc': '2.0', 'id': rpc_id, 'method': method, 'params': params}
    events = []
    with httpx.stream('POST', url, json=body, headers=headers, timeout=STREAM_SECONDS_MAX) as r:
        assert r.status_code == 200, r.read()
        data = []
        for line in r.iter_lines():
            if line.startswith('data:'):
                data.append(line[5:].strip())
            elif line == '' and data:
                events.append(json.loads('\n'.join(data)))
                data = []
                if on_event:
                    on_event(events[-1])
        return r.headers, events


def results(events, rpc_id='s-1'):
    for e in events:
        assert e.get('jsonrpc') == '2.0' and e.get('id') == rpc_id, e
        assert 'error' not in e, e
    return [e['result'] for e in events]

def subscribe_in_background(url: str, task_id: str):
    """SubscribeToTask on a thread (rpc id `sub`); returns once its first event (the snapshot)
    arrived, with the thread and the dict that gets `headers` and `events` when it ends."""
    got: dict = {}
    subscribed = threading.Event()

    def follow():
        got['headers'], got['events'] = sse(
            url, 'SubscribeToTask', {'id': task_id}, V1, rpc_id='sub', on_event=lambda _: subscribed.set()
        )

    follower = threading.Thread(target=follow)
    follower.start()
    assert subscribed.wait(STREAM_SECONDS_MAX), 'no first event on the subscription'
    return follower, got



def test_v10_stream_order_shapes_and_final_state(e2e, task_agent):
    headers, events = sse(e2e.agent_url(task_agent), 'SendStreamingMessage', {'message': msg10('stream me please')}, V1)
    if not e2e.direct:
        assert headers['content-type'].startswith('text/event-stream')
        assert headers['cache-control'] == 'no-store'
        assert headers['x-accel-buffering'] == 'no'
    rs = results(events)
    assert 'task' in rs[0], rs[0]
    task_id = rs[0]['task']['id']
    kinds = [next(iter(r)) for r in rs]
    assert set(kinds[1:]) <= {'statusUpdate', 'artifactUpdate'}, kinds
    assert rs[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'
    assert all(next(iter(r.values())).get('taskId', task_id) == task_id for r in rs[1:])
    streamed = ''.join(p['text'] for r in rs if 'artifactUpdate' in r for p in r['artifactUpdate']['artifact']['parts'])
    task = result_of(rpc(e2e.agent_url(task_agent), 'GetTask', {'id': task_id}, version=V1))
    assert task['status']['state'] == 'TASK_STATE_COMPLETED'
    stored = ''.join(p['text'] for a in task.get('artifacts', []) for p in a['parts'])
    assert stored == streamed == 'stream me please', (stored, streamed)


def test_v03_stream_has_kinds_and_final_on_the_last_event_only(e2e, task_agent):
    _, events = sse(e2e.agent_url(task_agent), 'message/stream', {'message': msg03('legacy stream')}, None, rpc_id=8)
    rs = results(events, rpc_id=8)
    assert rs[0]['kind'] == 'task'
    assert {r['kind'] for r in rs[1:]} <= {'status-update', 'artifact-update'}
    last = rs[-1]
    assert last['kind'] == 'status-update' and last['status']['state'] == 'completed' and last['final'] is True
    assert all(not r.get('final') for r in rs[:-1] if r['kind'] == 'status-update')


@pytest.mark.parametrize('version', [V1, '0.3'])
def test_stream_closes_on_input_required_then_a_follow_up_continues(e2e, version, task_agent):
    url = e2e.agent_url(task_agent)
    if version == V1:
        _, first = sse(url, 'SendStreamingMessage', {'message': msg10('ask me')}, V1)
        rs = results(first)
        task = rs[0]['task']
        assert rs[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_INPUT_REQUIRED'
        follow = msg10('Ada', taskId=task['id'], contextId=task['contextId'])
        _, second = sse(url, 'SendStreamingMessage', {'message': follow}, V1)
        rs2 = results(second)
        assert rs2[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'
    else:
        _, first = sse(url, 'message/stream', {'message': msg03('ask me')}, None)
        rs = results(first)
        task = rs[0]
        assert rs[-1]['status']['state'] == 'input-required'
        # SDK 1.3.0 itself sends final:false here; the gateway marks the end of the cycle.
        assert rs[-1]['final'] is (not e2e.direct)
        follow = msg03('Ada', taskId=task['id'], contextId=task['contextId'])
        _, second = sse(url, 'message/stream', {'message': follow}, None)
        assert results(second)[-1]['status']['state'] == 'completed'
    got = result_of(rpc(url, 'GetTask', {'id': task['id']}, version=V1))
    assert got['status']['state'] == 'TASK_STATE_COMPLETED'
    assert 'hello Ada' in json.dumps(got['artifacts'])


def test_message_agent_streams_one_message(e2e, chat_agent):
    _, events = sse(e2e.agent_url(chat_agent), 'SendStreamingMessage', {'message': msg10('hi')}, V1)
    rs = results(events)
    assert len(rs) == 1 and 'message' in rs[0], rs


@pytest.mark.gateway_only
def test_subscribe_follows_a_task_until_it_is_canceled(e2e, task_agent):
    url = e2e.agent_url(task_agent)
    sent = result_of(rpc(url, 'SendMessage', {'message': msg10('slow one'), 'configuration': {'returnImmediately': True}}, version=V1))
    task_id = sent['task']['id']
    follower, got = subscribe_in_background(url, task_id)
    canceled = result_of(rpc(url, 'CancelTask', {'id': task_id}, version=V1))
    assert canceled['status']['state'] == 'TASK_STATE_CANCELED'
    follower.join(STREAM_SECONDS_MAX)
    assert not follower.is_alive(), 'the subscription did not close after the cancel'
    rs = results(got['events'], rpc_id='sub')
    assert 'task' in rs[0] and rs[0]['task']['id'] == task_id
    last = rs[-1]
    final_state = last['statusUpdate']['status']['state'] if 'statusUpdate' in last else last['task']['status']['state']
    assert final_state == 'TASK_STATE_CANCELED', rs


@pytest.mark.gateway_only
def test_subscribe_to_a_terminal_task(e2e, task_agent):
    url = e2e.agent_url(task_agent)
    done = result_of(rpc(url, 'SendMessage', {'message': msg10('finish')}, version=V1))['task']
    error_of(rpc(url, 'SubscribeToTask', {'id': done['id']}, version=V1), -32004)
    error_of(rpc(url, 'tasks/resubscribe', {'id': done['id']}), -32004)
    if not e2e.direct:
        _, events = sse(e2e.rpc_url, 'tasks/subscribe', {'taskId': done['id']}, None, rpc_id=3)
        rs = results(events, rpc_id=3)
        assert len(rs) == 1 and rs[0]['id'] == done['id'] and rs[0]['status']['state'] == 'completed', rs


@pytest.mark.gateway_only
def test_v10_client_of_a_v03_agent_gets_wrapped_events(e2e):
    """The task agent registered again with its protocol pinned to 0.3: the gateway speaks 0.3
    upstream and translates every event for a 1.0 client (and back for a 0.3 one)."""
    upstream = e2e.upstream_url('tasks')
    agent = result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': {'id': 'tasks03', 'url': upstream, 'protocolVersion': '0.3'}}))
    assert agent['upstream']['protocolVersion'] == '0.3', agent
    url = e2e.agent_url('tasks03')
    _, events = sse(url, 'SendStreamingMessage', {'message': msg10('old school')}, V1)
    rs = results(events)
    assert 'task' in rs[0] and rs[0]['task']['status']['state'].startswith('TASK_STATE_'), rs[0]
    assert all(set(r) <= {'statusUpdate', 'artifactUpdate'} for r in rs[1:]), rs
    assert all('kind' not in next(iter(r.values())) for r in rs), 'no 0.3 kind in 1.0 events'
    assert rs[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'
    assert 'final' not in rs[-1]['statusUpdate']
    parts = [p for r in rs if 'artifactUpdate' in r for p in r['artifactUpdate']['artifact']['parts']]
    assert parts and all(set(p) <= {'text', 'metadata'} for p in parts), parts
    sent = result_of(rpc(url, 'SendMessage', {'message': msg10('unary old school')}, version=V1))
    assert sent['task']['status']['state'] == 'TASK_STATE_COMPLETED'
    # returnImmediately crosses the translation as blocking:false: a slow task comes back active.
    params = {'message': msg10('slow old school'), 'configuration': {'returnImmediately': True}}
    slow = result_of(rpc(url, 'SendMessage', params, version=V1))['task']
    assert slow['status']['state'] in ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING'), slow
    canceled = result_of(rpc(url, 'CancelTask', {'id': slow['id']}, version=V1))
    assert canceled['status']['state'] == 'TASK_STATE_CANCELED'


@pytest.mark.gateway_only
def test_streaming_at_rpc_with_agent_id(e2e):
    _, events = sse(e2e.rpc_url, 'SendStreamingMessage', {'agentId': 'tasks', 'message': msg10('via rpc')}, V1)
    rs = results(events)
    assert 'task' in rs[0] and rs[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'


@pytest.mark.gateway_only
def test_a_task_answered_active_is_followed_upstream_until_it_ends(e2e):
    """A task sent with returnImmediately comes back active and no client stream reads it: the
    gateway follows it at the agent (its SubscribeToTask), so a subscriber sees it end even
    when it ends behind the gateway's back (canceled at the agent directly)."""
    url = e2e.agent_url('tasks')
    sent = result_of(rpc(url, 'SendMessage', {'message': msg10('slow behind'), 'configuration': {'returnImmediately': True}}, version=V1))
    task_id = sent['task']['id']
    follower, got = subscribe_in_background(url, task_id)
    # Not through the gateway: the agent's own endpoint.
    canceled = result_of(rpc(e2e.upstream_url('tasks'), 'CancelTask', {'id': task_id}, version=V1))
    assert canceled['status']['state'] == 'TASK_STATE_CANCELED'
    follower.join(STREAM_SECONDS_MAX)
    assert not follower.is_alive(), 'the subscription did not end: the task was not followed upstream'
    rs = results(got['events'], rpc_id='sub')
    assert rs[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_CANCELED', rs
    stored = result_of(rpc(url, 'GetTask', {'id': task_id}, version=V1))
    assert stored['status']['state'] == 'TASK_STATE_CANCELED'


@pytest.mark.gateway_only
def test_a_streamed_follow_up_keeps_the_clients_message_in_history(e2e):
    """The agent answers a streamed follow-up with updates only; the gateway still records
    the client's message in the task's history, where the agent's own task has it."""
    url = e2e.agent_url('tasks')
    _, first = sse(url, 'SendStreamingMessage', {'message': msg10('ask me again')}, V1)
    task = results(first)[0]['task']
    follow = msg10('Bob', taskId=task['id'], contextId=task['contextId'])
    _, second = sse(url, 'SendStreamingMessage', {'message': follow}, V1)
    assert results(second)[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'

    def texts(task):
        return [p.get('text') for m in task.get('history', []) for p in m['parts']]

    stored = result_of(rpc(url, 'GetTask', {'id': task['id']}, version=V1))
    agents = result_of(rpc(e2e.upstream_url('tasks'), 'GetTask', {'id': task['id']}, version=V1))
    assert 'Bob' in texts(stored), texts(stored)
    assert texts(stored) == texts(agents)


@pytest.mark.gateway_only
@pytest.mark.parametrize('version', [V1, None])
def test_cards_of_streaming_agents_declare_resumable_streams(e2e, version):
    headers = {'A2A-Version': version} if version else {}
    card = httpx.get(e2e.card_url('tasks'), headers=headers, timeout=HTTP_TIMEOUT_SECONDS).json()
    uris = [e['uri'] for e in card['capabilities'].get('extensions', [])]
    assert 'urn:superx:a2a:extension:resumable-streams:v1' in uris, card['capabilities']
