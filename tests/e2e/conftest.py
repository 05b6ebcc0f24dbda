"""Session fixtures for the superx end-to-end tests.

Real A2A agents built on the official Python SDK (tests/agents/sdk_agent.py) run as
processes: `tasks` (the task agent) and `chat` (the message agent) on JSON-RPC, and the same
agents serving only HTTP+JSON: `tasks-rest` and `chat-rest` (the gateway calls them in 1.0),
and `tasks-rest03` (registered with `protocolVersion: 0.3`, so the gateway calls the SDK's
0.3 REST routes). The `task_agent` and `chat_agent` fixtures run a test once per agent
binding, `client_binding` once per binding the SDK client speaks. By default the gateway
binary runs in front of them and every test talks to the gateway:

    SUPERX_BIN=target/debug/superx .venv/bin/pytest tests/e2e

With SUPERX_E2E_DIRECT=1 the same client tests talk to the SDK agents directly and the
gateway is not started; tests marked `gateway_only` are skipped. That mode checks the tests
themselves against the reference implementation.

Nothing here sleeps for a guessed time: agents announce `READY <port>` on stdout, and the
gateway is polled on `/ready` until a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import time

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from e2e_util import Receiver, direct_mode


REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_SCRIPT = REPO_ROOT / 'tests' / 'agents' / 'sdk_agent.py'
AGENT_READY_SECONDS_MAX = 30.0
GATEWAY_READY_SECONDS_MAX = 30.0
PROCESS_STOP_SECONDS_MAX = 10.0
PSQL_SECONDS_MAX = 60.0

# The running session's E2E, for the report hook.
_SESSION: dict[str, 'E2E'] = {}

# The agent ids the gateway is configured with, and the kind of SDK agent behind each.
AGENTS = {'tasks': 'task', 'chat': 'message', 'tasks-rest': 'task', 'chat-rest': 'message', 'tasks-rest03': 'task'}
# The agents that serve only the HTTP+JSON binding (`sdk_agent.py --binding rest`).
REST_AGENTS = {'tasks-rest', 'chat-rest', 'tasks-rest03'}
# The version the agents file pins for an agent (`protocolVersion`), when not the card's best.
PINNED_VERSIONS = {'tasks-rest03': '0.3'}
# Task-agent and message-agent ids, one per agent binding (and version) the gateway calls.
TASK_AGENTS = ['tasks', 'tasks-rest', 'tasks-rest03']
CHAT_AGENTS = ['chat', 'chat-rest']
# The bindings SDK clients speak (`client_binding`).
CLIENT_BINDINGS = ['JSONRPC', 'HTTP+JSON']

# The `tasks` agent offers the extended card to this bearer (sdk_agent.py --extended-token).
EXTENDED_CARD_TOKEN = 'vip-token'



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'gateway_only: needs the superx gateway; skipped with SUPERX_E2E_DIRECT=1'
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not direct_mode():
        return
    skip = pytest.mark.skip(reason='gateway-only test (SUPERX_E2E_DIRECT=1)')
    for item in items:
        if 'gateway_only' in item.keywords:
            item.add_marker(skip)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors='replace')
        except OSError as e:
            return f'<no log: {e}>'
        return '\n'.join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(PROCESS_STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(PROCESS_STOP_SECONDS_MAX)


@dataclass
class E2E:
    """Where the tests send their requests, in either mode."""

    direct: bool
    agent_ports: dict[str, int]
    gateway: str | None = None  # e.g. http://127.0.0.1:4000
    procs: dict[str, Proc] = field(default_factory=dict)

    def upstream_url(self, agent_id: str) -> str:
        return f'http://127.0.0.1:{self.agent_ports[agent_id]}/'

    def agent_url(self, agent_id: str) -> str:
        """The JSON-RPC endpoint a client uses for this agent. A REST-only agent has none of
        its own: a raw JSON-RPC test skips it in direct mode."""
        if self.direct:
            if agent_id in REST_AGENTS:
                pytest.skip(f'{agent_id} serves only HTTP+JSON (SUPERX_E2E_DIRECT=1)')
            return self.upstream_url(agent_id)
        return f'{self.gateway}/agents/{agent_id}'

    def card_base(self, agent_id: str) -> str:
        """The base URL the SDK's card resolver appends the well-known path to."""
        if self.direct:
            return self.upstream_url(agent_id).rstrip('/')
        return f'{self.gateway}/agents/{agent_id}'

    def card_url(self, agent_id: str) -> str:
        return f'{self.card_base(agent_id)}/.well-known/agent-card.json'

    @property
    def rpc_url(self) -> str:
        assert self.gateway, 'the /rpc endpoint exists only in gateway mode'
        return f'{self.gateway}/rpc'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _read_ready_line(proc: Proc, deadline: float) -> int:
    """Waits for the agent's `READY <port>` line and returns the port."""
    out = proc.popen.stdout
    assert out is not None
    buf = b''
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        chunk = os.read(out.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        for line in buf.decode(errors='replace').splitlines():
            if line.startswith('READY '):
                return int(line.split()[1])
    raise RuntimeError(
        f'agent {proc.name} did not print READY in time (exit={proc.popen.poll()})\n'
        f'stdout: {buf.decode(errors="replace")}\nstderr:\n{proc.log_tail()}'
    )


def _start_agent(
    agent_id: str, kind: str, log_dir: Path, extra_args: tuple[str, ...] = (), binding: str | None = None
) -> tuple[Proc, int]:
    log_path = log_dir / f'agent-{agent_id}.log'
    binding = binding or ('rest' if agent_id in REST_AGENTS else 'jsonrpc')
    popen = subprocess.Popen(
        [sys.executable, str(AGENT_SCRIPT), '--port', '0', '--kind', kind, '--binding', binding, *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_path.open('wb'),
        cwd=REPO_ROOT,
    )
    proc = Proc(agent_id, popen, log_path)
    try:
        port = _read_ready_line(proc, time.monotonic() + AGENT_READY_SECONDS_MAX)
    except Exception:
        proc.stop()
        raise
    return proc, port


def _abort(message: str) -> None:
    """Stops the whole session: without a gateway no test can run, and one clear message
    beats the same error repeated on every test."""
    pytest.exit(message, returncode=1)


def _gateway_bin() -> Path:
    path = Path(os.environ.get('SUPERX_BIN', 'target/debug/superx'))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def _start_gateway(
    agent_ports: dict[str, int],
    work: Path,
    pinned: dict[str, str] = PINNED_VERSIONS,
    extra_env: dict[str, str] | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> tuple[Proc, str]:
    """A gateway in front of these agents; `extra_env` adds to its environment (settings);
    with `tls` (certificate, key, the CA that signed it) it serves HTTPS and the returned base
    is https."""
    binary = _gateway_bin()
    if not binary.exists():
        _abort(f'gateway binary {binary} not found (build it, or set SUPERX_BIN)')
    agents_file = work / 'agents.yaml'
    lines = ['agents:']
    for agent_id, port in agent_ports.items():
        lines += [f'  {agent_id}:', f'    url: http://127.0.0.1:{port}/']
        if agent_id in pinned:
            lines.append(f'    protocolVersion: "{pinned[agent_id]}"')
    agents_file.write_text('\n'.join(lines) + '\n')
    data_dir = work / 'data'
    data_dir.mkdir()
    port = _free_port()
    log_path = work / 'gateway.log'
    env = {**os.environ, 'LOG_LEVEL': 'info', **(extra_env or {})}
    if tls:
        env.update(SUPERX_SERVER__TLS_CERT_FILE=str(tls[0]), SUPERX_SERVER__TLS_KEY_FILE=str(tls[1]))
    popen = subprocess.Popen(
        [
            str(binary), 'serve',
            '--listen', f'127.0.0.1:{port}',
            '--raft-listen', f'127.0.0.1:{_free_port()}',
            '--data-dir', str(data_dir),
            '--agents-file', str(agents_file),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_path.open('wb'),
        stderr=subprocess.STDOUT,
        cwd=work,
        env=env,
    )
    proc = Proc('gateway', popen, log_path)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(tls[2])) if tls else True
    try:
        _wait_ready(proc, f'{base}/ready', time.monotonic() + GATEWAY_READY_SECONDS_MAX, verify)
    except BaseException:
        proc.stop()
        raise
    return proc, base


def _wait_ready(proc: Proc, url: str, deadline: float, verify: ssl.SSLContext | bool = True) -> None:
    last = 'no answer'
    with httpx.Client(timeout=2.0, verify=verify) as http:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                _abort(
                    f'gateway exited with {proc.popen.returncode} before it was ready\n'
                    f'{proc.log_tail()}'
                )
            try:
                r = http.get(url)
                if r.status_code == 200:
                    return
                last = f'HTTP {r.status_code}: {r.text[:200]}'
            except httpx.TransportError as e:
                last = repr(e)
            # Polling interval, not a guess at readiness: the deadline bounds the wait.
            time.sleep(0.05)
    _abort(
        f'gateway not ready at {url} within {GATEWAY_READY_SECONDS_MAX}s (last: {last})\n'
        f'{proc.log_tail()}'
    )


@pytest.fixture(scope='session')
def e2e(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp('superx-e2e')
    procs: dict[str, Proc] = {}
    try:
        ports: dict[str, int] = {}
        for agent_id, kind in AGENTS.items():
            extra = ('--extended-token', EXTENDED_CARD_TOKEN) if agent_id == 'tasks' else ()
            procs[agent_id], ports[agent_id] = _start_agent(agent_id, kind, work, extra)
        env = E2E(direct=direct_mode(), agent_ports=ports, procs=procs)
        if not env.direct:
            procs['gateway'], env.gateway = _start_gateway(ports, work)
        _SESSION['env'] = env
        yield env
    finally:
        _SESSION.pop('env', None)
        for proc in reversed(list(procs.values())):
            proc.stop()


@pytest.fixture(params=TASK_AGENTS)
def task_agent(request: pytest.FixtureRequest) -> str:
    """The id of a task agent, once per binding the gateway calls it on."""
    return request.param


@pytest.fixture(params=CHAT_AGENTS)
def chat_agent(request: pytest.FixtureRequest) -> str:
    """The id of a message agent, once per binding the gateway calls it on."""
    return request.param


@pytest.fixture(params=CLIENT_BINDINGS, ids=['jsonrpc', 'rest'])
def client_binding(request: pytest.FixtureRequest) -> str:
    """The binding an SDK client speaks to the gateway (or, directly, to an agent that
    serves it): every SDK-client scenario runs over both."""
    return request.param


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attaches the gateway's log tail to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != 'call' or not report.failed:
        return
    env = _SESSION.get('env')
    if env is not None and 'gateway' in env.procs:
        report.sections.append(('gateway log (tail)', env.procs['gateway'].log_tail()))


@pytest.fixture(scope='session')
def extra_agent(e2e: E2E, tmp_path_factory: pytest.TempPathFactory):
    """A third task agent, not in the agents file, for `agents/upsert`. Yields its URL."""
    proc, port = _start_agent('extra', 'task', tmp_path_factory.mktemp('extra-agent'))
    try:
        yield f'http://127.0.0.1:{port}/'
    finally:
        proc.stop()


# --- PostgreSQL ------------------------------------------------------------------------------
# SUPERX_TEST_DATABASE_URL is the admin URL of a server the tests may create databases on;
# tests/run.sh starts a throwaway one (tests/postgres.sh) or passes DATABASE_URL through.

_DB_COUNTER = itertools.count()


def _psql_program() -> str:
    """psql from SUPERX_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin, else PATH."""
    dirs = []
    if os.environ.get('SUPERX_PG_BIN'):
        dirs.append(Path(os.environ['SUPERX_PG_BIN']))

    def version(path: Path) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in path.parent.name.split('.'))
        except ValueError:
            return ()

    dirs += sorted(Path('/usr/lib/postgresql').glob('*/bin'), key=version, reverse=True)
    for d in dirs:
        if (d / 'psql').is_file():
            return str(d / 'psql')
    found = shutil.which('psql')
    if found is None:
        pytest.fail('psql not found in SUPERX_PG_BIN, /usr/lib/postgresql/*/bin or PATH')
    return found


def _psql(url: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_psql_program(), url, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PSQL_SECONDS_MAX,
        env=dict(os.environ, PGCONNECT_TIMEOUT='10'),
    )


def _with_database(url: str, name: str) -> str:
    """`url` with its database (the path) replaced by `name`; the query string is kept."""
    base, sep, query = url.partition('?')
    scheme_end = base.find('://')
    authority = scheme_end + 3 if scheme_end >= 0 else 0
    slash = base.find('/', authority)
    if slash >= 0:
        base = base[:slash]
    return f'{base}/{name}{sep}{query}'


@contextlib.contextmanager
def loopback_webhooks():
    """While a gateway starts inside it, its webhooks may reach loopback (`push.allow_cidrs`,
    refused by default); the environment is as it was afterwards."""
    saved = os.environ.get('SUPERX_PUSH__ALLOW_CIDRS')
    os.environ['SUPERX_PUSH__ALLOW_CIDRS'] = '127.0.0.0/8'
    try:
        yield
    finally:
        if saved is None:
            del os.environ['SUPERX_PUSH__ALLOW_CIDRS']
        else:
            os.environ['SUPERX_PUSH__ALLOW_CIDRS'] = saved


@pytest.fixture
def receiver():
    """A webhook receiver in the test process (`e2e_util.Receiver`)."""
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def database_url():
    """A fresh database on SUPERX_TEST_DATABASE_URL's server, for one test; yields its URL and
    drops it afterwards. Skips the test when SUPERX_TEST_DATABASE_URL is unset."""
    admin_url = os.environ.get('SUPERX_TEST_DATABASE_URL', '')
    if not admin_url:
        pytest.skip(
            'SUPERX_TEST_DATABASE_URL is unset (tests/run.sh sets it: it starts a throwaway '
            'PostgreSQL, or uses DATABASE_URL)'
        )
    name = f'superx_e2e_{os.getpid()}_{next(_DB_COUNTER)}_{time.time_ns()}'
    created = _psql(admin_url, f'CREATE DATABASE "{name}"')
    if created.returncode != 0:
        pytest.fail(f'could not create database {name} on {admin_url}: {created.stderr.strip()}')
    try:
        yield _with_database(admin_url, name)
    finally:
        try:
            _psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (OSError, subprocess.SubprocessError):
            pass  # the server is gone or hangs; the database goes with the server
