"""The gateway's own endpoint `POST /rpc`: A2A methods addressed with `params.agentId`,
the control plane (`agents/*`, `cluster/status`), the SuperX dotted aliases, and the rule
that a bearer token never appears in any response."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from e2e_util import (
    HTTP_TIMEOUT_SECONDS,
    error_of,
    msg03,
    msg10,
    post,
    result_of,
    rpc,
    task_state_name,
)


pytestmark = pytest.mark.gateway_only

SECRET = 'tok-e2e-SECRET-4711-do-not-leak'
REFRESH_SECONDS_MAX = 10.0


def _same_url(a: str, b: str) -> bool:
    return a.rstrip('/') == b.rstrip('/')


def agents_of(result) -> list[dict]:
    """`agents/list` result: an array of agents, or `{"agents": [...]}`."""
    agents = result['agents'] if isinstance(result, dict) else result
    assert isinstance(agents, list), result
    return agents


def agent_of(result) -> dict:
    """`agents/get` / `agents/upsert` result: the agent, or `{"agent": {...}}`."""
    agent = result['agent'] if isinstance(result, dict) and 'agent' in result else result
    assert isinstance(agent, dict) and 'id' in agent, result
    return agent


def task_of(result) -> dict:
    """A task result in either form: 1.0 `{"task": {...}}` or a bare (0.3) task."""
    return result['task'] if 'task' in result else result


def test_agents_list_and_get(e2e):
    agents = {a['id']: a for a in agents_of(result_of(rpc(e2e.rpc_url, 'agents/list', {})))}
    assert {'tasks', 'chat'} <= set(agents), agents
    for agent_id in ('tasks', 'chat'):
        assert _same_url(agents[agent_id]['url'], e2e.upstream_url(agent_id)), agents[agent_id]
        got = agent_of(result_of(rpc(e2e.rpc_url, 'agents/get', {'id': agent_id})))
        assert got['id'] == agent_id
        assert _same_url(got['url'], e2e.upstream_url(agent_id))
    dotted = agents_of(result_of(rpc(e2e.rpc_url, 'agents.list', {})))
    assert {a['id'] for a in dotted} == set(agents)
    missing = rpc(e2e.rpc_url, 'agents/get', {'id': 'no-such-agent'})
    assert 'error' in missing, missing


def test_health_and_cluster_status(e2e):
    one = result_of(rpc(e2e.rpc_url, 'agents/health', {'id': 'tasks'}))
    assert 'tasks' in json.dumps(one)
    every = result_of(rpc(e2e.rpc_url, 'agents/health', {}))
    assert 'tasks' in json.dumps(every) and 'chat' in json.dumps(every)
    status = result_of(rpc(e2e.rpc_url, 'cluster/status', {}))
    assert isinstance(status, dict) and status, status


def test_a2a_methods_at_rpc_with_agent_id(e2e):
    url = e2e.rpc_url
    sent = result_of(rpc(url, 'SendMessage', {'agentId': 'tasks', 'message': msg10('via rpc')},
                         version='1.0'))
    task = sent['task']
    assert task['status']['state'] == 'TASK_STATE_COMPLETED'
    assert task['artifacts'][0]['parts'] == [{'text': 'via rpc'}]
    got = result_of(rpc(url, 'GetTask', {'agentId': 'tasks', 'id': task['id']}, version='1.0'))
    assert got['id'] == task['id'] and got['status']['state'] == 'TASK_STATE_COMPLETED'
    legacy = result_of(rpc(url, 'tasks/get', {'agentId': 'tasks', 'id': task['id']}))
    assert legacy['kind'] == 'task' and legacy['status']['state'] == 'completed'

    chat = result_of(rpc(url, 'message/send', {'agentId': 'chat', 'message': msg03('rpc chat')}))
    assert chat['kind'] == 'message' and chat['role'] == 'agent'
    assert chat['parts'] == [{'kind': 'text', 'text': 'echo: rpc chat'}]

    err = error_of(rpc(url, 'CancelTask', {'agentId': 'tasks', 'id': 'no-such-task'}, version='1.0'),
                   -32001)
    assert err
    error_of(rpc(url, 'SendMessage', {'message': msg10('no agent')}, version='1.0'), -32602)
    assert 'error' in rpc(url, 'SendMessage', {'agentId': 'no-such-agent', 'message': msg10('x')},
                          version='1.0')
    error_of(rpc(url, 'agents/nope', {}), -32601)


def test_dotted_aliases(e2e):
    url = e2e.rpc_url
    sent = result_of(rpc(url, 'message.send', {'agentId': 'tasks', 'message': msg03('dotted')}))
    task = task_of(sent)
    assert task_state_name(task) == 'TASK_STATE_COMPLETED', sent
    got = task_of(result_of(rpc(url, 'tasks.get', {'taskId': task['id']})))
    assert got['id'] == task['id']
    assert task_state_name(got) == 'TASK_STATE_COMPLETED'


def test_upsert_refresh_delete_and_bearer_never_leaks(e2e, extra_agent):
    url = e2e.rpc_url
    seen: list[str] = []  # every response body, checked for the secret at the end

    def call(method, params, **kw):
        doc = rpc(url, method, params, **kw)
        seen.append(json.dumps(doc))
        return doc

    error_of(call('agents/upsert', {'agent': {'id': 'broken'}}), -32602)
    up = agent_of(result_of(call('agents/upsert', {
        'agent': {'id': 'extra', 'url': extra_agent, 'bearer': SECRET}})))
    assert up['id'] == 'extra' and _same_url(up['url'], extra_agent)

    got = agent_of(result_of(call('agents/get', {'id': 'extra'})))
    assert _same_url(got['url'], extra_agent)
    listed = agents_of(result_of(call('agents/list', {})))
    assert 'extra' in {a['id'] for a in listed}
    agents_of(result_of(call('agents.list', {})))
    result_of(call('agents/refreshCard', {'id': 'extra'}))
    result_of(call('agents/health', {'id': 'extra'}))
    result_of(call('agents/health', {}))
    result_of(call('cluster/status', {}))

    # The new agent is served like the configured ones.
    per_agent = f'{e2e.gateway}/agents/extra'
    sent = rpc(per_agent, 'SendMessage', {'message': msg10('to extra')}, version='1.0')
    seen.append(json.dumps(sent))
    assert result_of(sent)['task']['status']['state'] == 'TASK_STATE_COMPLETED'
    card = _wait_card(f'{per_agent}/.well-known/agent-card.json')
    seen.append(card.text)
    assert all(_same_url(i['url'], per_agent) for i in card.json()['supportedInterfaces'])
    gw_card = _wait_gateway_skill(e2e, 'extra', present=True)
    seen.append(gw_card)

    deleted = call('agents/delete', {'id': 'extra'})
    assert 'error' not in deleted, deleted
    assert 'error' in call('agents/get', {'id': 'extra'})
    assert 'extra' not in {a['id'] for a in agents_of(result_of(call('agents/list', {})))}
    gone = post(per_agent, {'jsonrpc': '2.0', 'id': 1, 'method': 'GetTask',
                            'params': {'id': 'x'}}, version='1.0')
    seen.append(gone.text)
    assert gone.status_code != 200 or 'error' in gone.json(), gone.text
    gone_card = httpx.get(f'{per_agent}/.well-known/agent-card.json', timeout=HTTP_TIMEOUT_SECONDS)
    seen.append(gone_card.text)
    assert gone_card.status_code == 404, gone_card.text
    seen.append(_wait_gateway_skill(e2e, 'extra', present=False))

    leaks = [s for s in seen if SECRET in s]
    assert not leaks, leaks


def _wait_card(url: str) -> httpx.Response:
    deadline = time.monotonic() + REFRESH_SECONDS_MAX
    while True:
        r = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS)
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r
        time.sleep(0.05)  # poll interval; the deadline bounds the wait


def _wait_gateway_skill(e2e, agent_id: str, present: bool) -> str:
    """The gateway card's skills follow the registry (maybe after a card fetch)."""
    deadline = time.monotonic() + REFRESH_SECONDS_MAX
    while True:
        r = httpx.get(f'{e2e.gateway}/.well-known/agent-card.json', timeout=HTTP_TIMEOUT_SECONDS)
        assert r.status_code == 200, r.text
        ids = {s['id'] for s in r.json()['skills']}
        if (agent_id in ids) == present:
            return r.text
        assert time.monotonic() < deadline, f'skill {agent_id} present={not present}: {ids}'
        time.sleep(0.05)  # poll interval; the deadline bounds the wait
