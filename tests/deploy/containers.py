"""Container tests: superx in real containers on a real Docker network, under faults.

    python tests/deploy/containers.py [--superx-bin PATH] [--echo-bin PATH]

Builds the image from the binaries given (deploy/rootfs.sh + deploy/Dockerfile's `prebuilt`
target, the path that needs no registry) and a Postgres image from Debian's binaries
(deploy/postgres), creates its own network, and starts 3 nodes that find each other by a
DNS alias they share (Docker's DNS answers it like a Kubernetes headless Service), with the
archive on. Under a steady client load spread over the 3 nodes, recording every
acknowledged write:

  1. `docker kill` the leader, then start it again;
  2. `docker network disconnect` a follower, then connect it again;
  3. restart all 3 at once;
  4. scale 3 -> 5 (the new nodes join as learners and become voters) -> 3 (`superx leave`).

At the end every acknowledged task must be readable on every node (most of them only from
the archive by then: archived tasks leave memory after 2 s) and be in Postgres. It prints
how many writes were acknowledged, failed with a retryable error, and lost (must be 0).
Then deploy/compose.yaml itself is brought up with the same images (its own project,
subnet and host ports), one task is sent through it and read back on every node and in
its Postgres, and it is brought down with its volumes.
Every wait is on a condition with a deadline. Every container, network, volume and image
is named with a unique prefix and removed at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
API_PORT = 4000
CORE_NODES = 3
ALL_NODES = 5
LOAD_WORKERS = 3
# Pause between two writes of one load worker: about 30 writes/s in all, enough to keep
# every phase under load while a debug build shares 2 cores with the rest of CI.
LOAD_PAUSE_S = 0.1
# Writes acknowledged between two checkpoints of a phase: proof that the cluster serves.
PROGRESS_WRITES = 60
CHECK_WORKERS = 8
# The cluster secret of this run's nodes (and of the compose cluster).
CLUSTER_SECRET = secrets.token_urlsafe(32)


class Failed(Exception):
    pass


def log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(*args: str, check: bool = True, quiet: bool = False, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise Failed(f'{" ".join(args)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}')
    if not quiet and proc.returncode != 0:
        log(f'(ignored) {" ".join(args)}: {proc.stderr.strip()}')
    return proc


def wait_for(what: str, cond, timeout: float, interval: float = 0.25):
    """Polls cond() until it returns a truthy value; fails with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except (httpx.HTTPError, Failed, KeyError, ValueError) as e:
            last_error = e
        time.sleep(interval)
    raise Failed(f'timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})')


class Docker:
    """The resources of one run, all named `<prefix>-...`, and their removal."""

    def __init__(self) -> None:
        self.prefix = f'sxct-{os.getpid()}-{uuid.uuid4().hex[:6]}'
        self.network = f'{self.prefix}-net'
        self.alias = f'{self.prefix}-cluster'
        self.subnet: ipaddress.IPv4Network | None = None
        self.images: list[str] = []

    def name(self, what: str) -> str:
        return f'{self.prefix}-{what}'

    def ip(self, host: int) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + host)

    def create_network(self) -> None:
        # A random /24 in 10.0.0.0/8 (only ever used by this run); another one if it overlaps.
        for _ in range(20):
            subnet = ipaddress.IPv4Network(f'10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24')
            proc = run('docker', 'network', 'create', '--driver', 'bridge', '--subnet', str(subnet),
                       '--label', f'sxct={self.prefix}', self.network, check=False, quiet=True)
            if proc.returncode == 0:
                self.subnet = subnet
                log(f'network {self.network} {subnet}')
                return
        raise Failed(f'could not create a network: {proc.stderr.strip()}')

    def cleanup(self) -> None:
        ids = run('docker', 'ps', '-aq', '--filter', f'name={self.prefix}-', check=False, quiet=True).stdout.split()
        if ids:
            run('docker', 'rm', '-f', '-v', *ids, check=False)
        nets = run('docker', 'network', 'ls', '-q', '--filter', f'name={self.prefix}-', check=False, quiet=True)
        if nets.stdout.split():
            run('docker', 'network', 'rm', *nets.stdout.split(), check=False)
        vols = run('docker', 'volume', 'ls', '-q', '--filter', f'name={self.prefix}-', check=False, quiet=True)
        if vols.stdout.split():
            run('docker', 'volume', 'rm', '-f', *vols.stdout.split(), check=False)
        for image in self.images:
            run('docker', 'rmi', '-f', image, check=False, quiet=True)
        left = run('docker', 'ps', '-aq', '--filter', f'name={self.prefix}-', check=False, quiet=True).stdout.split()
        left += run('docker', 'volume', 'ls', '-q', '--filter', f'name={self.prefix}-', check=False,
                    quiet=True).stdout.split()
        left += run('docker', 'network', 'ls', '-q', '--filter', f'name={self.prefix}-', check=False,
                    quiet=True).stdout.split()
        if left:
            log(f'warning: left behind: {left}')
        else:
            log(f'cleaned up every container, network, volume and image of {self.prefix}')


def build_images(d: Docker, superx_bin: Path, echo_bin: Path, work: Path) -> tuple[str, str]:
    ctx = work / 'superx-context'
    (ctx / 'deploy').mkdir(parents=True)
    shutil.copy(ROOT / 'deploy' / 'Dockerfile', ctx / 'deploy' / 'Dockerfile')
    run('bash', str(ROOT / 'deploy' / 'rootfs.sh'), '--out', str(ctx / 'deploy' / '.rootfs'), str(superx_bin),
        str(echo_bin))
    superx_image = f'{d.prefix}-superx:test'
    d.images.append(superx_image)
    run('docker', 'build', '-q', '-f', str(ctx / 'deploy' / 'Dockerfile'), '--target', 'prebuilt', '-t', superx_image,
        str(ctx), timeout=600)
    pg_ctx = work / 'postgres-context'
    pg_ctx.mkdir()
    shutil.copy(ROOT / 'deploy' / 'postgres' / 'Dockerfile', pg_ctx / 'Dockerfile')
    run('bash', str(ROOT / 'deploy' / 'postgres' / 'rootfs.sh'), '--out', str(pg_ctx / '.rootfs'))
    pg_image = f'{d.prefix}-postgres:test'
    d.images.append(pg_image)
    run('docker', 'build', '-q', '-f', str(pg_ctx / 'Dockerfile'), '-t', pg_image, str(pg_ctx), timeout=600)
    log(f'built {superx_image} and {pg_image}')
    return superx_image, pg_image


class Cluster:
    PG_HOST = 5
    ECHO_HOST = 20

    def __init__(self, d: Docker, image: str, pg_image: str) -> None:
        self.d = d
        self.image = image
        self.pg_image = pg_image
        self.http = httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0), trust_env=False)

    # --- containers -------------------------------------------------------------------------

    def node_ip(self, i: int) -> str:
        return self.d.ip(10 + i)

    def container(self, i: int) -> str:
        return self.d.name(f'superx-{i}')

    def start_postgres_and_agent(self) -> None:
        d = self.d
        run('docker', 'run', '-d', '--name', d.name('postgres'), '--network', d.network, '--ip',
            d.ip(self.PG_HOST), '-v', f'{d.name("pgdata")}:/var/lib/postgresql/data', self.pg_image)
        run('docker', 'run', '-d', '--name', d.name('echo'), '--network', d.network, '--ip', d.ip(self.ECHO_HOST),
            '--no-healthcheck', '--stop-signal', 'SIGINT', '--entrypoint', '/usr/local/bin/superx-echo-agent', self.image, '--listen',
            f'{d.ip(self.ECHO_HOST)}:9999')
        wait_for('postgres healthy', lambda: self.health_status(d.name('postgres')) == 'healthy', 60)

    def health_status(self, container: str) -> str:
        return run('docker', 'inspect', '-f', '{{.State.Health.Status}}', container).stdout.strip()

    def run_node(self, i: int) -> None:
        d, ip = self.d, self.node_ip(i)
        env = {
            'CLUSTER_STRATEGY': 'dns',
            'CLUSTER_DNS_QUERY': d.alias,
            'CLUSTER_DNS_POLLING_INTERVAL': '1000',
            'SUPERX_CLUSTER__BOOTSTRAP_EXPECT': str(CORE_NODES),
            'SUPERX_RAFT__VOTERS_MAX': str(ALL_NODES),
            'SUPERX_CLUSTER__STABILIZATION_MS': '2000',
            'SUPERX_RAFT__LISTEN': '0.0.0.0:4100',
            'SUPERX_CLUSTER__GOSSIP_LISTEN': '0.0.0.0:4200',
            'SUPERX_AUTH__ALLOW_OPEN': 'true',
            # A closed cluster, as deployed: raft and gossip hear only nodes with this run's secret.
            'SUPERX_CLUSTER__SECRET': CLUSTER_SECRET,
            'SUPERX_RAFT__ADVERTISE': f'{ip}:4100',
            'SUPERX_RAFT__API_ADVERTISE': f'{ip}:{API_PORT}',
            'SUPERX_CLUSTER__GOSSIP_ADVERTISE': f'{ip}:4200',
            'DATABASE_URL': f'postgres://superx:superx@{d.ip(self.PG_HOST)}:5432/superx',
            # Archived tasks leave memory after 2 s, so the final reads go through the archive.
            'SUPERX_ARCHIVE__MEMORY_RETENTION_MS': '2000',
            'A2A_REMOTE_URL': f'http://{d.ip(self.ECHO_HOST)}:9999/',
            'LOG_LEVEL': 'info',
        }
        args = ['docker', 'run', '-d', '--name', self.container(i), '--hostname', f'superx-{i}', '--network',
                d.network, '--ip', ip, '--network-alias', d.alias, '-v', f'{d.name(f"data-{i}")}:/data',
                '--stop-timeout', '25']
        for k, v in env.items():
            args += ['-e', f'{k}={v}']
        run(*args, self.image)

    def probe_inside(self, i: int, path: str) -> bool:
        """`superx probe` in the container: works while the host cannot reach the node."""
        proc = run('docker', 'exec', self.container(i), '/usr/local/bin/superx', 'probe', '--path', path, check=False,
                   quiet=True, timeout=30)
        return proc.returncode == 0

    # --- API --------------------------------------------------------------------------------

    def url(self, i: int) -> str:
        return f'http://{self.node_ip(i)}:{API_PORT}'

    def rpc(self, i: int, method: str, params: dict | None = None, path: str = '/rpc') -> dict:
        body = {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params or {}}
        r = self.http.post(self.url(i) + path, json=body, headers={'A2A-Version': '1.0'})
        r.raise_for_status()
        return r.json()

    def status(self, i: int) -> dict:
        reply = self.rpc(i, 'cluster/status')
        if 'result' not in reply:
            raise Failed(f'cluster/status on node {i}: {reply}')
        return reply['result']

    def ready(self, i: int) -> bool:
        return self.http.get(self.url(i) + '/ready').status_code == 200

    def converged(self, nodes: list[int], voters: set[int], learners: set[int] = frozenset()) -> int | None:
        """The leader's id when every node in `nodes` is ready and sees the same leader,
        exactly these voters and learners (node ids), and has applied what it knows is committed."""
        leaders = set()
        for i in nodes:
            if not self.ready(i):
                return None
            s = self.status(i)
            if set(s['voters']) != voters or set(s['learners']) != set(learners) or s['leader'] is None:
                return None
            leaders.add(s['leader'])
        return leaders.pop() if len(leaders) == 1 else None


class Load:
    """Writers spread over the core nodes, recording every acknowledged task."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, str] = {}  # task id -> the text sent
        self.retryable = 0
        self.other: list[str] = []
        self.started = False
        self.threads = [threading.Thread(target=self.worker, args=(w,), daemon=True) for w in range(LOAD_WORKERS)]

    def start(self) -> None:
        self.started = True
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_progress(self, what: str, writes: int = PROGRESS_WRITES, timeout: float = 90) -> None:
        target = self.count() + writes
        wait_for(f'{writes} more acknowledged writes ({what})', lambda: self.count() >= target, timeout)

    def worker(self, w: int) -> None:
        http = httpx.Client(timeout=httpx.Timeout(8.0, connect=1.0), trust_env=False)
        n = 0
        while not self.stop.is_set():
            node = (w + n) % CORE_NODES
            n += 1
            text = f'w{w}-{n}-{uuid.uuid4().hex[:8]}'
            self.send(http, node, text)
            self.stop.wait(LOAD_PAUSE_S)

    def send(self, http: httpx.Client, node: int, text: str) -> None:
        body = {'jsonrpc': '2.0', 'id': 1, 'method': 'SendMessage', 'params': {'message': {
            'messageId': str(uuid.uuid4()), 'role': 'ROLE_USER', 'parts': [{'text': text}]}}}
        try:
            r = http.post(f'{self.cluster.url(node)}/agents/default', json=body, headers={'A2A-Version': '1.0'})
            reply = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            reply = None  # unreachable, timed out, restarting: the client would retry
        with self.lock:
            if reply is None:
                self.retryable += 1
            elif 'result' in reply and 'task' in reply['result']:
                self.acked[reply['result']['task']['id']] = text
            elif 'error' in reply and retryable(reply['error']):
                self.retryable += 1
            else:
                self.other.append(json.dumps(reply)[:300])


def retryable(error: dict) -> bool:
    reasons = {d.get('reason') for d in error.get('data') or [] if isinstance(d, dict)}
    return bool(reasons & {'UNAVAILABLE', 'OVERLOADED'})


def get_task(cluster: Cluster, node: int, task_id: str) -> dict | None:
    """The task as `node` answers it, retrying retryable answers for a while; None if not found."""
    deadline = time.monotonic() + 60
    http = cluster.http
    while True:
        body = {'jsonrpc': '2.0', 'id': 1, 'method': 'GetTask', 'params': {'id': task_id}}
        try:
            r = http.post(f'{cluster.url(node)}/agents/default', json=body, headers={'A2A-Version': '1.0'})
            reply = r.json()
            if 'result' in reply:
                return reply['result']
            if not retryable(reply['error']):
                return None
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise Failed(f'GetTask {task_id} on node {node} kept failing')
        time.sleep(0.2)


def archived_ids(d: Docker) -> set[str]:
    proc = run('docker', 'exec', '-e', 'PGPASSWORD=superx', d.name('postgres'), 'psql', '-h', '127.0.0.1', '-U',
               'superx', '-d', 'superx', '-At', '-c', 'SELECT task_id FROM archived_tasks')
    return set(proc.stdout.split())


def scenario(d: Docker, cluster: Cluster, load: Load) -> dict:
    core = list(range(CORE_NODES))
    ids = {i: i + 1 for i in range(ALL_NODES)}  # container superx-i is node i+1 (its ordinal)
    core_ids = {ids[i] for i in core}

    log('starting postgres, the echo agent and 3 nodes at once')
    cluster.start_postgres_and_agent()
    for i in core:
        cluster.run_node(i)
    leader = wait_for('3 nodes to form one cluster by DNS', lambda: cluster.converged(core, core_ids), 120)
    log(f'cluster formed: voters {sorted(core_ids)}, leader {leader}')
    wait_for('the agent registered', lambda: 'result' in cluster.rpc(0, 'agents/get', {'id': 'default'}), 30)

    load.start()
    load.wait_progress('steady load')

    log(f'1. docker kill the leader (node {leader})')
    victim = leader - 1
    run('docker', 'kill', cluster.container(victim))
    others = [i for i in core if i != victim]
    wait_for('a new leader among the others',
             lambda: (s := cluster.status(others[0]))['leader'] not in (None, leader) and s['role'] in (
                 'leader', 'follower'), 60)
    load.wait_progress('writes with the old leader dead')
    run('docker', 'start', cluster.container(victim))
    leader = wait_for('the killed node back in the cluster', lambda: cluster.converged(core, core_ids), 120)
    load.wait_progress('after the killed leader came back')

    follower = next(i for i in core if ids[i] != leader)
    log(f'2. docker network disconnect a follower (node {ids[follower]})')
    run('docker', 'network', 'disconnect', d.network, cluster.container(follower))
    load.wait_progress('writes with a follower cut off')
    wait_for('the cut-off follower to lose its leader', lambda: not cluster.probe_inside(follower, '/ready'), 60)
    run('docker', 'network', 'connect', '--ip', cluster.node_ip(follower), '--alias', d.alias, d.network,
        cluster.container(follower))
    leader = wait_for('the follower back in the cluster', lambda: cluster.converged(core, core_ids), 120)
    load.wait_progress('after the follower came back')

    log('3. restart all 3 nodes at once')
    with concurrent.futures.ThreadPoolExecutor(CORE_NODES) as pool:
        list(pool.map(lambda i: run('docker', 'restart', '-t', '25', cluster.container(i)), core))
    leader = wait_for('the cluster after a full restart', lambda: cluster.converged(core, core_ids), 120)
    load.wait_progress('after the full restart')

    log('4. scale 3 -> 5')
    for i in range(CORE_NODES, ALL_NODES):
        cluster.run_node(i)
    all_ids = set(ids.values())
    wait_for('5 voters', lambda: cluster.converged(list(range(ALL_NODES)), all_ids), 120)
    load.wait_progress('with 5 voters')
    log('   scale 5 -> 3 (superx leave)')
    for i in reversed(range(CORE_NODES, ALL_NODES)):
        run('docker', 'exec', cluster.container(i), '/usr/local/bin/superx', 'leave', '--url',
            f'http://127.0.0.1:{API_PORT}', timeout=60)
        wait_for(f'node {ids[i]} stopped after leaving',
                 lambda: run('docker', 'inspect', '-f', '{{.State.Running}}', cluster.container(i)).stdout.strip()
                 == 'false', 60)
        run('docker', 'rm', '-v', cluster.container(i))
    leader = wait_for('3 voters again', lambda: cluster.converged(core, core_ids), 120)
    load.wait_progress('after scaling back to 3')
    load.finish()
    return verify(d, cluster, load)


def verify(d: Docker, cluster: Cluster, load: Load) -> dict:
    acked = dict(load.acked)
    log(f'verifying {len(acked)} acknowledged tasks on every node and in Postgres')
    want = set(acked)
    in_pg = wait_for('every acknowledged task archived in Postgres',
                     lambda: (got := archived_ids(d)) >= want and got, 120, interval=1)
    lost: list[str] = []

    def check(job: tuple[int, str]) -> str | None:
        node, task_id = job
        task = get_task(cluster, node, task_id)
        if task is None or task.get('id') != task_id:
            return f'node {node + 1}: {task_id} not found'
        if task['status']['state'] != 'TASK_STATE_COMPLETED':
            return f'node {node + 1}: {task_id} is {task["status"]["state"]}'
        texts = [p.get('text') for m in task.get('history') or [] for p in m.get('parts', [])]
        if acked[task_id] not in texts:
            return f'node {node + 1}: {task_id} lacks the text sent ({acked[task_id]})'
        return None

    jobs = [(node, t) for t in acked for node in range(CORE_NODES)]
    lost_ids: set[str] = set()
    with concurrent.futures.ThreadPoolExecutor(CHECK_WORKERS) as pool:
        for (_, task_id), problem in zip(jobs, pool.map(check, jobs)):
            if problem:
                lost.append(problem)
                lost_ids.add(task_id)
    # A write is lost when any node cannot show it as acknowledged.
    return {'acknowledged': len(acked), 'retryable_failed': load.retryable, 'other_failed': len(load.other),
            'lost': len(lost_ids), 'lost_examples': lost[:10], 'other_examples': load.other[:5],
            'archived_in_postgres': len(want & in_pg), 'reads': len(jobs)}


def compose_command() -> list[str]:
    if shutil.which('docker-compose'):
        return ['docker-compose']
    return ['docker', 'compose']


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def compose_smoke(d: Docker, image: str, pg_image: str) -> None:
    """deploy/compose.yaml as README runs it, with this run's images, subnet and ports."""
    project = d.name('compose')
    ports = [free_port() for _ in range(3)]
    base = compose_command() + ['-p', project, '-f', str(ROOT / 'deploy' / 'compose.yaml')]
    env = dict(os.environ, SUPERX_IMAGE=image, POSTGRES_IMAGE=pg_image, SUPERX_CLUSTER_SECRET=CLUSTER_SECRET,
               **{f'SUPERX_PORT_{i}': str(p) for i, p in enumerate(ports)})
    log(f'5. deploy/compose.yaml up (project {project}, API on 127.0.0.1:{ports})')
    for _ in range(20):
        env['SUPERX_SUBNET'] = f'10.{random.randint(100, 250)}.{random.randint(0, 255)}'
        proc = subprocess.run(base + ['up', '-d'], env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            break
        if 'overlap' not in proc.stderr and 'Pool' not in proc.stderr:
            raise Failed(f'compose up failed: {proc.stderr.strip()}')
        subprocess.run(base + ['down', '-v'], env=env, capture_output=True, timeout=120)
    else:
        raise Failed(f'compose up: no free subnet: {proc.stderr.strip()}')
    http = httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0), trust_env=False)
    urls = [f'http://127.0.0.1:{p}' for p in ports]
    wait_for('the compose cluster ready on every node',
             lambda: all(http.get(u + '/ready').status_code == 200 for u in urls), 120)
    send = {'jsonrpc': '2.0', 'id': 1, 'method': 'SendMessage', 'params': {'message': {
        'messageId': str(uuid.uuid4()), 'role': 'ROLE_USER', 'parts': [{'text': 'hello compose'}]}}}
    a2a = {'A2A-Version': '1.0'}
    reply = wait_for('a task through compose node 2',
                     lambda: (r := http.post(urls[1] + '/agents/echo', json=send, headers=a2a).json()).get('result')
                     and r, 60)
    task_id = reply['result']['task']['id']
    for u in urls:
        got = http.post(u + '/agents/echo', headers=a2a,
                        json={'jsonrpc': '2.0', 'id': 2, 'method': 'GetTask', 'params': {'id': task_id}}).json()
        if got.get('result', {}).get('status', {}).get('state') != 'TASK_STATE_COMPLETED':
            raise Failed(f'compose: GetTask {task_id} on {u}: {got}')
    pg = run(*base, 'ps', '-q', 'postgres', env=env).stdout.strip()
    wait_for(f'compose: task {task_id} archived in its Postgres', lambda: task_id in run(
        'docker', 'exec', '-e', 'PGPASSWORD=superx', pg, 'psql', '-h', '127.0.0.1', '-U', 'superx', '-d', 'superx',
        '-At', '-c', 'SELECT task_id FROM archived_tasks').stdout.split(), 60, interval=0.5)
    wait_for('compose: every superx container healthy (the image HEALTHCHECK)', lambda: all(
        run('docker', 'inspect', '-f', '{{.State.Health.Status}}', c).stdout.strip() == 'healthy'
        for c in run(*base, 'ps', '-q', 'superx-0', 'superx-1', 'superx-2', env=env).stdout.split()), 60, interval=1)
    subprocess.run(base + ['down', '-v'], env=env, capture_output=True, text=True, timeout=120, check=True)
    log(f'   compose: 3 nodes ready and healthy, task {task_id} read on every node and archived; down -v')


def dump_logs(d: Docker) -> None:
    names = run('docker', 'ps', '-a', '--format', '{{.Names}}', '--filter', f'name={d.prefix}-', check=False,
                quiet=True).stdout.split()
    for name in sorted(names):
        logs = run('docker', 'logs', '--tail', '40', name, check=False, quiet=True)
        print(f'--- last log lines of {name} ---\n{logs.stdout}{logs.stderr}', flush=True)


def main() -> int:
    target = Path(os.environ.get('CARGO_TARGET_DIR', ROOT / 'target'))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--superx-bin', type=Path, default=Path(os.environ.get('SUPERX_BIN', target / 'debug/superx')))
    p.add_argument('--echo-bin', type=Path, default=target / 'debug/superx-echo-agent')
    args = p.parse_args()
    for b in (args.superx_bin, args.echo_bin):
        if not b.is_file():
            print(f'error: {b} not found (cargo build --workspace first)', file=sys.stderr)
            return 2

    started = time.monotonic()
    d = Docker()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix=f'{d.prefix}-'))
    load = None
    ok = False
    try:
        image, pg_image = build_images(d, args.superx_bin, args.echo_bin, work)
        d.create_network()
        cluster = Cluster(d, image, pg_image)
        load = Load(cluster)
        result = scenario(d, cluster, load)
        compose_smoke(d, image, pg_image)
        print(json.dumps(result, indent=2), flush=True)
        log(f'acknowledged {result["acknowledged"]}, failed with a retryable error {result["retryable_failed"]}, '
            f'lost {result["lost"]} (other failures {result["other_failed"]}); '
            f'{result["archived_in_postgres"]} archived in Postgres; {result["reads"]} reads checked')
        ok = result['lost'] == 0 and result['other_failed'] == 0 and result['acknowledged'] > 0
        if not ok:
            log('FAILED: writes were lost or failed with a non-retryable error')
    except (Failed, subprocess.TimeoutExpired) as e:
        log(f'FAILED: {e}')
    except Exception as e:  # a bug in this script: still clean up, and say what happened
        log(f'FAILED with an unexpected error: {e!r}')
        raise
    finally:
        try:
            if load is not None and load.started:
                load.finish()
            if not ok:
                dump_logs(d)
        finally:
            d.cleanup()
            shutil.rmtree(work, ignore_errors=True)
            log(f'wall time {time.monotonic() - started:.0f}s')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
