"""How agents' updates reach the gateway, for push: an agent with push and one without, both
deliver every update to the client's webhook.

SDK agents started with `--push` (the SDK's push config store and sender) take the gateway's
own webhook: when the gateway follows a task of theirs (a send answered while the task still
works, `returnImmediately`), it registers `/push/inbound/<agent>/<task>` with them
(CreateTaskPushNotificationConfig on JSON-RPC or HTTP+JSON, 0.3 `tasks/pushNotificationConfig/set`
or its REST route) and commits what they POST there. The session's `tasks` agent has push
off: the gateway follows it by its stream. The agents' `long N` task waits until someone
follows it (a webhook registered, or a stream open), so every one of its updates has somewhere
to go, then sends N status updates over time, an artifact and COMPLETED. The client's own
webhook (a receiver in the test) must get each of them exactly once, in order, from both
agents; `superx_push_inbound_total` shows the push agents' updates came in by the webhook
(their stream is not followed, and the safety-net poll waits `streams.follow_poll_max_ms`)."""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import _start_agent, _start_gateway, loopback_webhooks
from e2e_util import msg10, result_of, rpc


pytestmark = pytest.mark.gateway_only

STEPS = 4
"""Status updates of a `long` task between its start and its end."""

# Push agent id -> (binding of sdk_agent.py, version pinned in the agents file, if any).
PUSH_AGENTS = {
    'push': ('jsonrpc', None),
    'push03': ('jsonrpc', '0.3'),
    'push-rest': ('rest', None),
    'push-rest03': ('rest', '0.3'),
}


@pytest.fixture(scope='module')
def inbound_gateway(e2e, tmp_path_factory):
    """A gateway in front of the push agents and the session's `tasks` agent (push off),
    whose client webhooks may reach loopback."""
    work = tmp_path_factory.mktemp('push-inbound')
    procs = []
    try:
        ports = {'tasks': e2e.agent_ports['tasks']}
        for agent_id, (binding, _) in PUSH_AGENTS.items():
            proc, ports[agent_id] = _start_agent(agent_id, 'task', work, ('--push',), binding=binding)
            procs.append(proc)
        pinned = {agent_id: version for agent_id, (_, version) in PUSH_AGENTS.items() if version}
        with loopback_webhooks():
            gateway, base = _start_gateway(ports, work, pinned)
        procs.append(gateway)
        yield base
    finally:
        for proc in reversed(procs):
            proc.stop()


def inbound_committed(base: str) -> int:
    """`superx_push_inbound_total{outcome="committed"}` on the gateway (0 before the first)."""
    text = httpx.get(f'{base}/metrics', timeout=10).text
    found = re.search(r'^superx_push_inbound_total\{outcome="committed"\} (\d+)', text, re.M)
    return int(found.group(1)) if found else 0


def is_completed(body: dict) -> bool:
    return body.get('statusUpdate', {}).get('status', {}).get('state') == 'TASK_STATE_COMPLETED'


def status_texts(hits: list[dict]) -> list[str]:
    return [h['body']['statusUpdate']['status']['message']['parts'][0]['text']
            for h in hits if 'statusUpdate' in h['body']]


def start_long_task(base: str, agent_id: str, hook_url: str) -> str:
    """Sends `long` to an agent, answered at once while the task works, with the client's
    webhook in the message; answers the task id."""
    params = {'message': msg10(f'long {STEPS}'),
              'configuration': {'returnImmediately': True,
                                'taskPushNotificationConfig': {'url': hook_url, 'token': agent_id}}}
    task = result_of(rpc(f'{base}/agents/{agent_id}', 'SendMessage', params, version='1.0'))['task']
    assert task['status']['state'] in ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING'), task
    return task['id']


@pytest.mark.parametrize('push_agent', list(PUSH_AGENTS))
def test_an_agent_with_push_and_one_without_both_deliver_every_update(inbound_gateway, receiver, push_agent):
    committed_before = inbound_committed(inbound_gateway)
    tasks = {agent_id: start_long_task(inbound_gateway, agent_id, receiver.url) for agent_id in (push_agent, 'tasks')}
    for agent_id, task_id in tasks.items():
        hits = receiver.wait_for(task_id, is_completed, token=agent_id)
        numbers = [int(h['event_id'].rsplit(':', 1)[1]) for h in hits]
        assert numbers == list(range(1, len(numbers) + 1)), f'{agent_id}: every event once, in order: {numbers}'
        assert hits[0]['body']['task']['id'] == task_id
        expected = [f'step {n}' for n in range(1, STEPS + 1)] + ['done']
        assert status_texts(hits) == expected, f'{agent_id}: {status_texts(hits)}'
        artifacts = [h['body']['artifactUpdate']['artifact'] for h in hits if 'artifactUpdate' in h['body']]
        assert [a['artifactId'] for a in artifacts] == ['long'], artifacts
        task = result_of(rpc(f'{inbound_gateway}/agents/{agent_id}', 'GetTask', {'id': task_id}, version='1.0'))
        assert task['status']['state'] == 'TASK_STATE_COMPLETED', task
    # The push agent's steps, artifact and end came in by the gateway's webhook.
    assert inbound_committed(inbound_gateway) - committed_before >= STEPS + 2


def test_the_inbound_webhook_refuses_a_delivery_without_its_token(inbound_gateway):
    """Anyone can reach the route; only the agent holding the task's token is heard."""
    body = {'statusUpdate': {'taskId': 't', 'contextId': 'c', 'status': {'state': 'TASK_STATE_COMPLETED'}}}
    url = f'{inbound_gateway}/push/inbound/push/t'
    for headers in ({}, {'X-A2A-Notification-Token': 'guess'}):
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 401
