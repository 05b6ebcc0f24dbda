"""A static superx cluster of real processes for the end-to-end tests.

    cluster = StaticCluster.start(work_dir, size=3, agents={'tasks': url}, env={...})
    try:
        ...  # cluster.base(1), cluster.card_base(2, 'tasks'), cluster.health(3)
    finally:
        cluster.stop()

Every node runs `superx serve --node-id N --listen ... --raft-listen ... --peers ...` (the
static strategy: each node knows every member's raft and API address up front) with its own
data dir and log file under `work_dir`. Nothing sleeps for a guessed time: `/ready` and the
raft membership are polled until a deadline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx


REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_READY_SECONDS_MAX = 40.0
PROCESS_STOP_SECONDS_MAX = 10.0
POLL_INTERVAL_SECONDS = 0.05
LOG_TAIL_LINES = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def gateway_bin() -> Path:
    path = Path(os.environ.get('SUPERX_BIN', 'target/debug/superx'))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def wait_for(
    what: str,
    condition: Callable[[], Any],
    seconds: float,
    describe: Callable[[], str] = lambda: '',
) -> Any:
    """Polls `condition` until it returns something truthy (which is returned), or fails
    with `what` and `describe()` once `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f'{what}: not within {seconds}s. {describe()}')
        # Polling interval, not a guess: the deadline bounds the wait.
        time.sleep(POLL_INTERVAL_SECONDS)


@dataclass
class ClusterNode:
    node_id: int
    api: str  # host:port
    raft: str  # host:port
    data_dir: Path
    log_path: Path
    popen: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f'http://{self.api}'

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors='replace')
        except OSError as e:
            return f'<no log: {e}>'
        return '\n'.join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(PROCESS_STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(PROCESS_STOP_SECONDS_MAX)


class StaticCluster:
    def __init__(self, nodes: list[ClusterNode]) -> None:
        self.nodes = nodes
        self._http = httpx.Client(timeout=5.0)

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        work: Path,
        *,
        size: int,
        agents: dict[str, str],
        env: dict[str, str],
        log_level: str = 'info',
    ) -> 'StaticCluster':
        """Starts `size` nodes, waits until each answers `/ready` and the raft membership
        has `size` voters. `agents` (id -> upstream URL) goes into every node's agents file;
        `env` is added to a clean environment (inherited SUPERX_* and DATABASE_URL are
        dropped, so only what the test asks for configures the nodes)."""
        binary = gateway_bin()
        if not binary.exists():
            raise RuntimeError(f'gateway binary {binary} not found (build it, or set SUPERX_BIN)')
        agents_file = work / 'agents.yaml'
        lines = ['agents:']
        for agent_id, url in agents.items():
            lines += [f'  {agent_id}:', f'    url: {url}']
        agents_file.write_text('\n'.join(lines) + '\n')

        nodes = [
            ClusterNode(
                node_id=i,
                api=f'127.0.0.1:{free_port()}',
                raft=f'127.0.0.1:{free_port()}',
                data_dir=work / f'node{i}',
                log_path=work / f'node{i}.log',
            )
            for i in range(1, size + 1)
        ]
        peers = ','.join(f'{n.node_id}={n.raft}@{n.api}' for n in nodes)
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith('SUPERX_') and k != 'DATABASE_URL'
        }
        node_env = dict(base_env, LOG_LEVEL=log_level, **env)
        cluster = cls(nodes)
        try:
            for n in nodes:
                n.data_dir.mkdir(parents=True, exist_ok=True)
                n.popen = subprocess.Popen(
                    [
                        str(binary), 'serve',
                        '--node-id', str(n.node_id),
                        '--listen', n.api,
                        '--raft-listen', n.raft,
                        '--peers', peers,
                        '--data-dir', str(n.data_dir),
                        '--agents-file', str(agents_file),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=n.log_path.open('wb'),
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    env=node_env,
                )
            cluster.wait_ready(CLUSTER_READY_SECONDS_MAX)
            cluster.wait_voters(size, CLUSTER_READY_SECONDS_MAX)
        except BaseException as e:
            tails = cluster.log_tails()
            cluster.stop()
            raise RuntimeError(f'cluster did not start: {e}\n{tails}') from e
        return cluster

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self._http.close()

    # --- addresses ------------------------------------------------------------------------

    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    def base(self, node_id: int) -> str:
        return self.node(node_id).base

    def card_base(self, node_id: int, agent_id: str) -> str:
        """The base URL the SDK's card resolver appends the well-known path to."""
        return f'{self.base(node_id)}/agents/{agent_id}'

    @property
    def ids(self) -> list[int]:
        return [n.node_id for n in self.nodes]

    # --- probes ---------------------------------------------------------------------------

    def _get_json(self, url: str) -> Any:
        try:
            r = self._http.get(url)
        except httpx.TransportError:
            return None
        if r.status_code != 200:
            return None
        try:
            return r.json()
        except ValueError:
            return None

    def health(self, node_id: int) -> dict:
        """`GET /health` of one node ({} when it does not answer)."""
        return self._get_json(f'{self.base(node_id)}/health') or {}

    def status(self, node_id: int) -> dict:
        """`cluster/status` of one node ({} when it does not answer)."""
        body = {'jsonrpc': '2.0', 'id': 1, 'method': 'cluster/status', 'params': {}}
        try:
            r = self._http.post(
                f'{self.base(node_id)}/rpc', json=body, headers={'A2A-Version': '1.0'}
            )
            return r.json().get('result') or {}
        except (httpx.TransportError, ValueError):
            return {}

    def _check_alive(self) -> None:
        dead = [n for n in self.nodes if not n.alive()]
        if dead:
            raise AssertionError(
                'node(s) exited: '
                + ', '.join(f'{n.node_id} (exit {n.popen and n.popen.poll()})' for n in dead)
            )

    def _is_ready(self, node_id: int) -> bool:
        try:
            return self._http.get(f'{self.base(node_id)}/ready').status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, seconds: float) -> None:
        def ready() -> bool:
            self._check_alive()
            return all(self._is_ready(i) for i in self.ids)

        wait_for(
            '/ready on every node',
            ready,
            seconds,
            lambda: str({i: self._is_ready(i) for i in self.ids}),
        )

    def wait_voters(self, voters: int, seconds: float) -> None:
        def formed() -> bool:
            self._check_alive()
            return any(len(self.status(i).get('voters') or []) == voters for i in self.ids)

        wait_for(
            f'{voters} raft voters',
            formed,
            seconds,
            lambda: str({i: self.status(i) for i in self.ids}),
        )

    # --- diagnostics ----------------------------------------------------------------------

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        for n in self.nodes:
            state = 'running' if n.alive() else f'exited {n.popen.poll() if n.popen else "-"}'
            head = f'----- node {n.node_id} ({n.api}, {state}) log tail -----'
            parts.append(f'{head}\n{n.log_tail(lines)}')
        return '\n'.join(parts)

    @contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Writes every node's log tail to stderr (shown in pytest's failure report) when
        the body raises."""
        try:
            yield
        except BaseException:
            sys.stderr.write(self.log_tails() + '\n')
            raise
