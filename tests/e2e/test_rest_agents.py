"""Agents that offer only HTTP+JSON, through the gateway: the interface the gateway chose, an
agent's own A2A error arriving as an HTTP status and google.rpc.Status body (an answer for the
client, not a failure for the breaker), and an agent whose card offers only gRPC (refused
with a clear error at registration and on every call, without a request to it).

The SDK-client scenarios run against the REST agents too: see the `task_agent` and
`chat_agent` fixtures in test_sdk_clients.py and test_streaming.py."""

from __future__ import annotations

import json
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from e2e_util import HTTP_TIMEOUT_SECONDS, error_of, msg10, result_of, rpc


pytestmark = pytest.mark.gateway_only

V1 = '1.0'


def health(e2e, agent_id: str) -> dict:
    return result_of(rpc(e2e.rpc_url, 'agents/health', {'id': agent_id}))


@pytest.mark.parametrize('agent_id, version', [('tasks-rest', '1.0'), ('tasks-rest03', '0.3')])
def test_the_gateway_calls_the_rest_interface_in_the_cards_version(e2e, agent_id, version):
    agent = result_of(rpc(e2e.rpc_url, 'agents/get', {'id': agent_id}))
    assert agent['upstream'] == {
        'url': e2e.upstream_url(agent_id),
        'protocolVersion': version,
        'protocolBinding': 'HTTP+JSON',
    }, agent
    tasks = result_of(rpc(e2e.rpc_url, 'agents/get', {'id': 'tasks'}))
    assert tasks['upstream']['protocolBinding'] == 'JSONRPC', tasks


@pytest.mark.parametrize('agent_id', ['tasks-rest', 'tasks-rest03'])
def test_an_agents_own_rest_error_is_an_answer_not_a_failure(e2e, agent_id):
    """The agent cancels a task behind the gateway's back (a REST call straight to it). If the
    gateway has not learned it yet from following the task, it forwards the next cancel: the
    agent answers HTTP 400 with TASK_NOT_CANCELABLE, the client gets -32002 with the agent's
    message, and the breaker counts no failure. If it has, it answers -32002 itself."""
    url = e2e.agent_url(agent_id)
    params = {'message': msg10('slow behind the back'), 'configuration': {'returnImmediately': True}}
    task = result_of(rpc(url, 'SendMessage', params, version=V1))['task']
    prefix = 'v1/' if agent_id == 'tasks-rest03' else ''
    direct = httpx.post(
        f'{e2e.upstream_url(agent_id)}{prefix}tasks/{task["id"]}:cancel',
        json={},
        headers={'A2A-Version': '0.3' if prefix else V1},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert direct.status_code == 200, direct.text
    before = health(e2e, agent_id)
    err = error_of(rpc(url, 'CancelTask', {'id': task['id']}, version=V1), -32002)
    after = health(e2e, agent_id)
    if err['message'] == 'Task cannot be canceled':
        # The SDK agent's own message: the gateway passed the agent's answer on.
        assert after['callsTotal'] >= before['callsTotal'] + 1, (before, after)
    else:
        # The gateway followed the task at the agent and knew it had ended.
        assert 'terminal state' in err['message'], err
    assert after['failuresTotal'] == before['failuresTotal'], after
    assert after['breakerState'] == 'closed', after
    # GetTask refreshes from the agent: the gateway learns the task was canceled.
    got = result_of(rpc(url, 'GetTask', {'id': task['id']}, version=V1))
    assert got['status']['state'] == 'TASK_STATE_CANCELED', got


class GrpcOnlyAgent(BaseHTTPRequestHandler):
    """Serves a card whose only interface is gRPC; counts every other request it gets."""

    calls = 0

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if not self.path.endswith('/.well-known/agent-card.json'):
            return self._count()
        card = {
            'name': 'gRPC only',
            'description': 'speaks gRPC',
            'version': '1',
            'supportedInterfaces': [
                {'url': f'127.0.0.1:{self.server.server_port}', 'protocolBinding': 'GRPC', 'protocolVersion': '1.0'}
            ],
            'capabilities': {'streaming': True},
            'defaultInputModes': ['text/plain'],
            'defaultOutputModes': ['text/plain'],
            'skills': [],
        }
        body = json.dumps(card).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self._count()

    def _count(self):
        type(self).calls += 1
        self.send_response(404)
        self.send_header('Content-Length', '0')
        self.end_headers()


@pytest.fixture
def grpc_agent():
    server = ThreadingHTTPServer(('127.0.0.1', 0), GrpcOnlyAgent)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    GrpcOnlyAgent.calls = 0
    yield f'http://127.0.0.1:{server.server_port}/'
    server.shutdown()


def test_a_grpc_only_agent_is_refused_clearly(e2e, grpc_agent):
    up = result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': {'id': 'grpc-only', 'url': grpc_agent}}))
    assert 'GRPC' in up['cardError'] and 'JSONRPC or HTTP+JSON' in up['cardError'], up
    assert up['upstream']['protocolBinding'] is None, up
    url = e2e.agent_url('grpc-only')
    err = error_of(rpc(url, 'SendMessage', {'message': msg10('hello?')}, version=V1), -32004)
    assert 'grpc-only' in err['message'] and 'JSONRPC' in err['message'], err
    stream = rpc(url, 'SendStreamingMessage', {'message': msg10('hello?')}, version=V1)
    error_of(stream, -32004)
    assert GrpcOnlyAgent.calls == 0, 'the gateway sent a request to a gRPC-only agent'
    after = health(e2e, 'grpc-only')
    assert after['failuresTotal'] == 0 and after['breakerState'] == 'closed', after
    result_of(rpc(e2e.rpc_url, 'agents/delete', {'id': 'grpc-only'}))
