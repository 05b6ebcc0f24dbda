"""Agent failures as clients see them: an agent that is unreachable, slow past its deadline,
answering HTTP errors or malformed JSON-RPC gives the client -32099 or -32006 with a clear
message, records nothing, and is counted in `agents/health`."""

from __future__ import annotations

import json
import socket
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e_util import error_of, msg10, result_of, rpc


pytestmark = pytest.mark.gateway_only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

SLOW_SECONDS = 3.0


class BadAgent(BaseHTTPRequestHandler):
    """Serves a valid card under any prefix; POSTs to /<mode> misbehave as the mode says."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        prefix = self.path.split('/.well-known/')[0]
        base = f'http://127.0.0.1:{self.server.server_port}{prefix}'
        card = {
            'name': f'Bad agent {prefix}',
            'description': 'misbehaves',
            'version': '1',
            'supportedInterfaces': [{'url': base, 'protocolBinding': 'JSONRPC', 'protocolVersion': '1.0'}],
            'capabilities': {},
            'defaultInputModes': ['text/plain'],
            'defaultOutputModes': ['text/plain'],
            'skills': [],
        }
        self._reply(200, json.dumps(card).encode())

    def do_POST(self):
        length = int(self.headers.get('Content-Length', '0'))
        request = json.loads(self.rfile.read(length))
        mode = self.path.strip('/')
        if mode == 'http500':
            return self._reply(500, b'{"oops": true}')
        if mode == 'garbage':
            return self._reply(200, b'this is not json')
        if mode == 'wrongshape':
            body = {'jsonrpc': '2.0', 'id': request['id'], 'result': {'task': {'id': 'x', 'status': {'state': 'sleeping'}}}}
            return self._reply(200, json.dumps(body).encode())
        if mode == 'slow':
            time.sleep(SLOW_SECONDS)
            return self._reply(200, b'{}')
        self._reply(404, b'')

    def _reply(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope='module')
def bad_agent():
    server = ThreadingHTTPServer(('127.0.0.1', 0), BadAgent)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown()


CASES = [
    ('http500', -32099, 'HTTP 500', {}),
    ('garbage', -32006, 'not JSON', {}),
    ('wrongshape', -32006, 'sleeping', {}),
    ('slow', -32099, 'within 300 ms', {'callTimeoutMs': 300}),
]


@pytest.mark.parametrize(('mode', 'code', 'says', 'knobs'), CASES, ids=[c[0] for c in CASES])
def test_misbehaving_agent(e2e, bad_agent, mode, code, says, knobs):
    agent_id = f'bad-{mode}'
    agent = {'id': agent_id, 'url': f'{bad_agent}/{mode}', **knobs}
    result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': agent}))
    before = result_of(rpc(e2e.rpc_url, 'ListTasks', {'agentId': agent_id}, version='1.0'))['totalSize']
    doc = rpc(e2e.agent_url(agent_id), 'SendMessage', {'message': msg10('hi')}, version='1.0')
    err = error_of(doc, code)
    assert says in err['message'], err
    assert bad_agent not in json.dumps(doc), 'the agent address must not leak'
    after = result_of(rpc(e2e.rpc_url, 'ListTasks', {'agentId': agent_id}, version='1.0'))['totalSize']
    assert (before, after) == (0, 0)
    health = result_of(rpc(e2e.rpc_url, 'agents/health', {'id': agent_id}))
    assert health['failuresTotal'] == 1 and health['inFlight'] == 0, health
    assert says in (health['lastError'] or ''), health


def test_streaming_needs_the_agents_streaming_capability(e2e, bad_agent):
    """An agent whose card does not say `streaming` gets -32004 for streaming methods."""
    result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': {'id': 'nostream', 'url': f'{bad_agent}/http500'}}))
    doc = rpc(e2e.agent_url('nostream'), 'SendStreamingMessage', {'message': msg10('x')}, version='1.0')
    err = error_of(doc, -32004)
    assert err['data'][0]['reason'] == 'UNSUPPORTED_OPERATION', err


def test_unreachable_agent(e2e):
    url = f'http://127.0.0.1:{free_port()}/'
    upsert = result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': {'id': 'gone', 'url': url}}))
    assert upsert.get('cardError'), upsert
    doc = rpc(e2e.agent_url('gone'), 'message/send', {'message': {'kind': 'message', 'messageId': 'm', 'role': 'user', 'parts': [{'kind': 'text', 'text': 'x'}]}})
    err = error_of(doc, -32099)
    assert 'unreachable' in err['message'], err
    assert 'data' not in err or not isinstance(err['data'], list), '0.3 errors carry no ErrorInfo list'


def test_unknown_agent(e2e):
    doc = rpc(e2e.agent_url('no-such-agent'), 'SendMessage', {'message': msg10('x')}, version='1.0')
    error_of(doc, -32010)
    doc = rpc(e2e.rpc_url, 'SendMessage', {'agentId': 'no-such-agent', 'message': msg10('x')}, version='1.0')
    error_of(doc, -32010)
