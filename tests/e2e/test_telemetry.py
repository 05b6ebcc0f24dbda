"""Telemetry as operators and tracing systems see it: `/metrics` after a scripted workload,
parsed with the Prometheus client library's text-format parser (every documented series
present, values that fit the workload, histogram buckets consistent), `x-request-id` echoed
or made, and W3C `traceparent` continued to the agent as a child span of the client's."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from prometheus_client.parser import text_string_to_metric_families

from e2e_util import HTTP_TIMEOUT_SECONDS, error_of, msg10, post, result_of, rpc


pytestmark = pytest.mark.gateway_only

V1 = '1.0'
WAIT_SECONDS_MAX = 20.0
TASK_STATES = ['submitted', 'working', 'input-required', 'auth-required', 'completed', 'failed', 'canceled', 'rejected']
TRACEPARENT_RE = re.compile(r'^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$')


# --- an agent that records what it is sent -------------------------------------------------

class RecordingAgent(BaseHTTPRequestHandler):
    """A 1.0 JSON-RPC agent: a card, and a completed task for every SendMessage. Keeps the
    headers of every POST in `server.seen`."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        base = f'http://127.0.0.1:{self.server.server_port}'
        card = {
            'name': 'Recording agent',
            'description': 'records request headers',
            'version': '1',
            'supportedInterfaces': [{'url': base, 'protocolBinding': 'JSONRPC', 'protocolVersion': '1.0'}],
            'capabilities': {},
            'defaultInputModes': ['text/plain'],
            'defaultOutputModes': ['text/plain'],
            'skills': [],
        }
        self._reply(json.dumps(card).encode())

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get('Content-Length', '0'))))
        with self.server.lock:
            self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        message = request['params']['message']
        task = {
            'id': str(uuid.uuid4()),
            'contextId': message.get('contextId') or str(uuid.uuid4()),
            'status': {'state': 'TASK_STATE_COMPLETED'},
        }
        self._reply(json.dumps({'jsonrpc': '2.0', 'id': request['id'], 'result': {'task': task}}).encode())

    def _reply(self, body: bytes):
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope='module')
def recording_agent(e2e):
    server = ThreadingHTTPServer(('127.0.0.1', 0), RecordingAgent)
    server.daemon_threads = True
    server.seen = []
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    agent = {'id': 'recorder', 'url': f'http://127.0.0.1:{server.server_port}'}
    result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': agent}))
    yield server
    server.shutdown()


def send_recorded(e2e, server, headers: dict[str, str]) -> tuple[httpx.Response, dict[str, str]]:
    """SendMessage through the gateway; returns the client's response and the headers the
    agent received for it."""
    with server.lock:
        server.seen.clear()
    body = {'jsonrpc': '2.0', 'id': 1, 'method': 'SendMessage', 'params': {'message': msg10('trace me')}}
    r = post(e2e.agent_url('recorder'), body, version=V1, headers=headers)
    assert r.status_code == 200, r.text
    result_of(r.json())
    with server.lock:
        assert len(server.seen) == 1, server.seen
        return r, server.seen[0]


# --- request ids and trace context ---------------------------------------------------------

def test_request_id_is_echoed_when_given_and_made_when_not(e2e):
    url = f'{e2e.gateway}/health'
    given = httpx.get(url, headers={'x-request-id': 'e2e-req/42'}, timeout=HTTP_TIMEOUT_SECONDS)
    assert given.headers['x-request-id'] == 'e2e-req/42'
    made = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS)
    uuid.UUID(made.headers['x-request-id'])
    for bad in ['x' * 129, 'has space']:
        replaced = httpx.get(url, headers={'x-request-id': bad}, timeout=HTTP_TIMEOUT_SECONDS)
        uuid.UUID(replaced.headers['x-request-id'])
    # JSON-RPC answers and unmatched routes carry one too.
    doc = rpc(e2e.agent_url('tasks'), 'GetTask', {'id': 'nope'}, version=V1, headers={'x-request-id': 'rpc-1'})
    error_of(doc, -32001)
    missing = httpx.get(f'{e2e.gateway}/no/such/route', timeout=HTTP_TIMEOUT_SECONDS)
    assert missing.status_code == 404
    uuid.UUID(missing.headers['x-request-id'])


def test_agent_gets_a_child_span_of_the_clients_trace(e2e, recording_agent):
    trace_id = uuid.uuid4().hex
    parent = '00f067aa0ba902b7'
    headers = {'traceparent': f'00-{trace_id}-{parent}-01', 'tracestate': 'congo=t61rcWkgMzE', 'x-request-id': 'traced-1'}
    response, seen = send_recorded(e2e, recording_agent, headers)
    assert response.headers['x-request-id'] == 'traced-1'
    got = TRACEPARENT_RE.match(seen.get('traceparent', ''))
    assert got, seen
    assert got.group(1) == trace_id, 'the agent must be in the client trace'
    assert got.group(2) not in (parent, '0' * 16), 'the agent call is a new span'
    assert got.group(3) == '01', 'the sampled flag is kept'
    assert seen.get('tracestate') == 'congo=t61rcWkgMzE'
    # Two calls in the same trace are two different child spans.
    _, again = send_recorded(e2e, recording_agent, headers)
    again_span = TRACEPARENT_RE.match(again['traceparent']).group(2)
    assert again_span != got.group(2)


@pytest.mark.parametrize('traceparent', [
    None,
    'garbage',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',  # all-zero trace id
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',  # uppercase
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',  # forbidden version
])
def test_without_a_valid_traceparent_a_new_trace_starts(e2e, recording_agent, traceparent):
    headers = {'tracestate': 'congo=t61rcWkgMzE'}
    if traceparent:
        headers['traceparent'] = traceparent
    _, seen = send_recorded(e2e, recording_agent, headers)
    got = TRACEPARENT_RE.match(seen.get('traceparent', ''))
    assert got, seen
    assert got.group(1) != '0' * 32 and got.group(1) != '4bf92f3577b34da6a3ce929d0e0e4736'
    assert 'tracestate' not in seen, 'tracestate belongs to the trace that was not continued'


# --- metrics -------------------------------------------------------------------------------

def scrape(e2e) -> dict:
    """Every family on /metrics, parsed by prometheus_client: {name: Metric}."""
    r = httpx.get(f'{e2e.gateway}/metrics', timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 200, r.text
    assert r.headers['content-type'].startswith('text/plain')
    return {family.name: family for family in text_string_to_metric_families(r.text)}


def samples(families: dict, family: str, sample: str | None = None, **labels) -> list:
    """The samples of a family (named `sample`, default the family's own name) whose labels
    include `labels`."""
    assert family in families, f'{family} missing; have {sorted(families)}'
    name = sample or family
    return [s for s in families[family].samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    found = samples(families, family, sample, **labels)
    assert len(found) == 1, (family, labels, found)
    return found[0].value


def check_histogram(families: dict, family: str, **labels) -> float:
    """Asserts the histogram's series with `labels` is well formed; returns its count."""
    assert families[family].type == 'histogram', families[family].type
    buckets = samples(families, family, f'{family}_bucket', **labels)
    assert buckets, (family, labels)
    bounds = [float(b.labels['le']) for b in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float('inf'), bounds
    counts = [b.value for b in buckets]
    assert all(a <= b for a, b in zip(counts, counts[1:])), counts
    count = value(families, family, f'{family}_count', **labels)
    assert counts[-1] == count
    assert value(families, family, f'{family}_sum', **labels) >= 0
    return count


def follow_stream(url: str, method: str, params: dict, opened: threading.Event, box: dict) -> None:
    """Reads a stream to its end, setting `opened` at the first event."""
    body = {'jsonrpc': '2.0', 'id': 's', 'method': method, 'params': params}
    headers = {'Content-Type': 'application/json', 'A2A-Version': V1}
    events = []
    with httpx.stream('POST', url, json=body, headers=headers, timeout=WAIT_SECONDS_MAX * 2) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith('data:'):
                events.append(json.loads(line[5:]))
                opened.set()
    box['events'] = events


def wait_for_metrics(e2e, what: str, ok) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while True:
        families = scrape(e2e)
        if ok(families):
            return families
        shown = {n: [(s.labels, s.value) for s in f.samples] for n, f in families.items()
                 if n.startswith(('superx_streams', 'superx_task'))}
        assert time.monotonic() < deadline, f'metrics never showed {what}: {shown}'
        time.sleep(0.05)  # polling interval; the deadline bounds the wait


def test_metrics_after_a_scripted_workload(e2e):
    url = e2e.agent_url('tasks')
    # A unary task, a stream to its end, reads, and errors.
    done = result_of(rpc(url, 'SendMessage', {'message': msg10('count me')}, version=V1))['task']
    with httpx.stream('POST', url, json={'jsonrpc': '2.0', 'id': 2, 'method': 'SendStreamingMessage',
                                         'params': {'message': msg10('stream me')}},
                      headers={'A2A-Version': V1}, timeout=WAIT_SECONDS_MAX) as r:
        assert r.status_code == 200 and r.headers['content-type'].startswith('text/event-stream')
        assert any(line.startswith('data:') for line in r.iter_lines())
    result_of(rpc(url, 'GetTask', {'id': done['id']}, version=V1))
    result_of(rpc(url, 'tasks/get', {'id': done['id']}))
    error_of(rpc(url, 'GetTask', {'id': 'no-such-task'}, version=V1), -32001)
    error_of(rpc(url, 'NoSuchMethod', {}, version=V1), -32601)

    # A slow task with a subscriber: an open stream, until the task is canceled.
    subscribed, sub_box = threading.Event(), {}
    slow = result_of(rpc(url, 'SendMessage', {'message': msg10('slow telemetry'),
                                              'configuration': {'returnImmediately': True}}, version=V1))['task']
    subscriber = threading.Thread(target=follow_stream, args=(url, 'SubscribeToTask', {'id': slow['id']}, subscribed, sub_box))
    subscriber.start()
    assert subscribed.wait(WAIT_SECONDS_MAX), 'no first event on the subscription'
    during = wait_for_metrics(e2e, 'the open stream and its subscriber', lambda f: (
        value(f, 'superx_streams_open') >= 1 and value(f, 'superx_task_subscribers') >= 1))
    assert sum(value(during, 'superx_tasks', state=s) for s in ['submitted', 'working']) >= 1
    result_of(rpc(url, 'CancelTask', {'id': slow['id']}, version=V1))
    subscriber.join(WAIT_SECONDS_MAX)
    assert not subscriber.is_alive(), 'the subscription did not end after the cancel'
    assert sub_box['events'], 'the subscription saw no event'

    families = wait_for_metrics(e2e, 'the subscriber gone', lambda f: value(f, 'superx_task_subscribers') == 0)

    # HTTP: by route template, method and status; latency histograms per route and method.
    agent_posts = value(families, 'superx_http_requests', 'superx_http_requests_total',
                        route='/agents/{id}', method='POST', status='200')
    assert agent_posts >= 7, agent_posts
    assert value(families, 'superx_http_requests', 'superx_http_requests_total',
                 route='/metrics', method='GET', status='200') >= 1
    assert check_histogram(families, 'superx_http_request_duration_seconds', route='/agents/{id}', method='POST') >= agent_posts

    # JSON-RPC: every spelling under its canonical method, by result code.
    def rpc_count(method, code):
        return value(families, 'superx_rpc_requests', 'superx_rpc_requests_total', method=method, code=code)
    assert rpc_count('SendMessage', 'ok') >= 2
    assert rpc_count('SendStreamingMessage', 'ok') >= 1
    assert rpc_count('GetTask', 'ok') >= 2
    assert rpc_count('GetTask', '-32001') >= 1
    assert rpc_count('unknown', '-32601') >= 1
    assert rpc_count('CancelTask', 'ok') >= 1
    assert rpc_count('SubscribeToTask', 'ok') >= 1

    # Raft.
    assert value(families, 'superx_raft_term') >= 1
    assert value(families, 'superx_raft_leader_changes', 'superx_raft_leader_changes_total') >= 1
    assert value(families, 'superx_raft_is_leader') == 1, 'a single node leads itself'
    assert value(families, 'superx_raft_leader_id') >= 1
    applied = value(families, 'superx_raft_applied_index')
    assert applied >= 5 and value(families, 'superx_raft_committed_index') >= applied
    last = value(families, 'superx_raft_last_log_index')
    assert value(families, 'superx_raft_apply_lag_entries') == max(0, last - applied)
    assert value(families, 'superx_raft_log_entries') >= 1
    assert value(families, 'superx_raft_log_bytes') > 0
    assert value(families, 'superx_raft_snapshot_bytes') >= 0
    assert value(families, 'superx_raft_snapshot_index') >= 0
    assert check_histogram(families, 'superx_raft_commit_duration_seconds') >= 5

    # Tasks by state; open streams and subscribers.
    by_state = {s: value(families, 'superx_tasks', state=s) for s in TASK_STATES}
    assert by_state['completed'] >= 2 and by_state['canceled'] >= 1, by_state
    assert sum(by_state.values()) == value(families, 'superx_tasks_in_memory')
    assert value(families, 'superx_streams_open') >= 0
    assert value(families, 'superx_tasks_followed') >= 0

    # The series that were there before the exporter keep their names and meaning.
    assert value(families, 'superx_commands_applied', 'superx_commands_applied_total') >= 5
    assert value(families, 'superx_tasks_evicted', 'superx_tasks_evicted_total') >= 0
    assert value(families, 'superx_agents') >= 2
    # Agent calls, recorded where they happen (agent protection), by method and outcome.
    calls = samples(families, 'superx_agent_calls', 'superx_agent_calls_total', agent='tasks')
    assert sum(c.value for c in calls) >= 3, calls
    assert {c.labels['outcome'] for c in calls} >= {'ok'}, calls
    assert all(c.labels.get('method') for c in calls), calls
    assert samples(families, 'superx_agent_in_flight', agent='tasks')


def test_metrics_text_keeps_unlabelled_series_on_plain_lines(e2e):
    """bench/*.py read unlabelled series as `name value` lines; the exporter must keep that."""
    text = httpx.get(f'{e2e.gateway}/metrics', timeout=HTTP_TIMEOUT_SECONDS).text
    for name in ['superx_tasks_in_memory', 'superx_tasks_evicted_total', 'superx_raft_term']:
        lines = [line for line in text.splitlines() if line.startswith(name + ' ')]
        assert len(lines) == 1, (name, lines)
        float(lines[0].split()[1])
