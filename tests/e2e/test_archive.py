"""The Postgres archive with the official SDK clients against a 3-node cluster.

Archive and evict: every node keeps at most `tasks.memory_max` = 40 tasks in memory and at
most 5 archived ones, so once the archive has caught up almost every task exists only in
Postgres. Every task created through the SDK clients (A2A 1.0 and 0.3, spread over the three
nodes) must then still be readable by GetTask and listed by ListTasks (every page, once) on
every node, with the filters and `historyLength` applied to the archived rows too.

Needs SUPERX_TEST_DATABASE_URL (the `database_url` fixture skips without it).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from dataclasses import dataclass
from typing import Iterable

import pytest

from a2a.client import Client
from a2a.types import GetTaskRequest, ListTasksRequest, Role, Task, TaskState

from cluster_util import StaticCluster, wait_for
from e2e_util import (
    artifact_texts,
    message_text,
    run,
    sdk_client,
    send_for_task,
    user_message,
)


NODES = 3
MEMORY_MAX = 40
RETENTION_COUNT = 5
# The SDK clients on every node: (label, A2A version, binding).
CLIENT_KINDS = (
    ('1.0', '1.0', 'JSONRPC'),
    ('0.3', '0.3', 'JSONRPC'),
    ('1.0 rest', '1.0', 'HTTP+JSON'),
    ('0.3 rest', '0.3', 'HTTP+JSON'),
)
KINDS = [label for label, _, _ in CLIENT_KINDS]
TASKS = 156  # 13 per (node, client kind) pair
SHARED_CONTEXT_EVERY = 13  # tasks 0, 13, 26, ... share one context: 12 tasks
SECOND_WAVE = 24
CONCURRENCY = 8
ARCHIVE_SECONDS_MAX = 30.0
PAGE_SIZES = (25, 7)


@dataclass(frozen=True)
class Created:
    index: int
    id: str
    context_id: str
    text: str
    node: int
    version: str
    history_ids: tuple[str, ...]


@pytest.fixture
def archive_cluster(database_url, e2e, tmp_path):
    """Three nodes (static peers) sharing one fresh Postgres database, the SDK task agent
    registered as `tasks` on each, memory small enough that tasks are evicted."""
    cluster = StaticCluster.start(
        tmp_path,
        size=NODES,
        agents={'tasks': e2e.upstream_url('tasks')},
        env={
            'DATABASE_URL': database_url,
            'SUPERX_TASKS__MEMORY_MAX': str(MEMORY_MAX),
            'SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT': str(RETENTION_COUNT),
        },
    )
    try:
        yield cluster
    finally:
        cluster.stop()


# --- helpers -----------------------------------------------------------------------------


async def _clients(cluster: StaticCluster) -> dict[tuple[int, str], Client]:
    """A 1.0 and a 0.3 SDK client on every node over each binding, each from that node's
    card; keyed by node and kind label (the `version` of a Created)."""
    clients: dict[tuple[int, str], Client] = {}
    for node in cluster.ids:
        for label, version, binding in CLIENT_KINDS:
            base = cluster.card_base(node, 'tasks')
            clients[(node, label)] = await sdk_client(base, version, binding=binding)
    return clients


async def _close(clients: dict[tuple[int, str], Client]) -> None:
    for client in clients.values():
        await client.close()


async def _gather_limited(coros: Iterable, limit: int = CONCURRENCY) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def _create(
    clients: dict[tuple[int, str], Client], index: int, shared_context: str = ''
) -> Created:
    """Sends one echo task through the client `index` picks (round robin over node and
    version) and checks the answer."""
    keys = list(clients)
    node, version = keys[index % len(keys)]
    text = f'archive {index:03d} {uuid.uuid4().hex[:8]}'
    context = shared_context if shared_context and index % SHARED_CONTEXT_EVERY == 0 else ''
    task = await send_for_task(clients[(node, version)], user_message(text, context_id=context))
    where = f'task #{index} ({task.id}) sent to node {node} with the {version} client'
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, f'{where}: {task.status}'
    assert task.id and task.context_id, where
    if context:
        assert task.context_id == context, where
    assert artifact_texts(task) == {'echo': text}, where
    return Created(
        index=index,
        id=task.id,
        context_id=task.context_id,
        text=text,
        node=node,
        version=version,
        history_ids=tuple(m.message_id for m in task.history),
    )


def _check_task(got: Task, want: Created, where: str) -> None:
    assert got.id == want.id, f'{where}: got id {got.id!r}'
    assert got.context_id == want.context_id, f'{where}: contextId {got.context_id!r}'
    assert got.status.state == TaskState.TASK_STATE_COMPLETED, f'{where}: {got.status}'
    assert message_text(got.status.message) == 'done', f'{where}: {got.status}'
    assert artifact_texts(got) == {'echo': want.text}, f'{where}: artifacts {got.artifacts}'
    assert tuple(m.message_id for m in got.history) == want.history_ids, (
        f'{where}: history {[m.message_id for m in got.history]} != sent {want.history_ids}'
    )
    assert got.history and got.history[0].role == Role.ROLE_USER, f'{where}: {got.history}'
    assert message_text(got.history[0]) == want.text, f'{where}: {got.history[0]}'


async def _get_task(client: Client, want: Created, where: str) -> None:
    try:
        got = await client.get_task(GetTaskRequest(id=want.id))
    except Exception as e:  # the SDK raises the gateway's JSON-RPC error
        raise AssertionError(f'{where}: GetTask {want.id} failed: {e!r}') from e
    _check_task(got, want, f'{where}: GetTask {want.id}')


async def _list_all(
    client: Client, page_size: int, where: str, **filters
) -> tuple[list[Task], list[int]]:
    """Walks every page of ListTasks; returns the tasks and each page's totalSize."""
    tasks: list[Task] = []
    totals: list[int] = []
    token = ''
    for page_number in range(1000):
        page = await client.list_tasks(
            ListTasksRequest(page_size=page_size, page_token=token, **filters)
        )
        totals.append(page.total_size)
        assert len(page.tasks) <= page_size, f'{where}: page {page_number} has {len(page.tasks)}'
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks, totals
        assert len(page.tasks) == page_size, (
            f'{where}: page {page_number} is short ({len(page.tasks)}) yet has a next page'
        )
    raise AssertionError(f'{where}: ListTasks never ended')


def _assert_exactly_once(ids: list[str], want: Iterable[str], where: str) -> None:
    want = set(want)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    missing = sorted(want - set(ids))
    extra = sorted(set(ids) - want)
    assert not dupes and not missing and not extra, (
        f'{where}: listed twice {dupes}, missing {missing}, unexpected {extra}'
    )
    assert len(ids) == len(want), where


def _archive_caught_up(cluster: StaticCluster) -> dict[int, dict] | None:
    """Every node's `/health` archive section once each shows no backlog and at most
    memory_max tasks in memory; None before."""
    archives = {i: cluster.health(i).get('archive') or {} for i in cluster.ids}
    for a in archives.values():
        if not (a.get('enabled') and a.get('backlog') == 0):
            return None
        if a.get('tasksInMemory', MEMORY_MAX + 1) > MEMORY_MAX:
            return None
    return archives


def _wait_archive_caught_up(cluster: StaticCluster) -> dict[int, dict]:
    return wait_for(
        'archive backlog 0 and tasksInMemory <= memory_max on every node',
        lambda: _archive_caught_up(cluster),
        ARCHIVE_SECONDS_MAX,
        lambda: str({i: cluster.health(i).get('archive') for i in cluster.ids}),
    )


class _Phases:
    """Prints how long each phase took (visible with `-s`, and in a failure's output)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        print(f'[archive e2e] {name}: {now - self.last:.2f}s')
        self.last = now


# --- tests -------------------------------------------------------------------------------


@pytest.mark.gateway_only
def test_archive_and_evict_every_task_readable_and_listed_on_every_node(archive_cluster):
    cluster = archive_cluster
    phase = _Phases()

    async def body():
        clients = await _clients(cluster)
        try:
            await check(clients)
        finally:
            await _close(clients)

    async def check(clients: dict[tuple[int, str], Client]) -> None:
        # --- create the tasks: both client versions on every node -----------------------
        shared_context = f'ctx-archive-{uuid.uuid4()}'
        created: list[Created] = await _gather_limited(
            _create(clients, i, shared_context) for i in range(TASKS)
        )
        by_id = {c.id: c for c in created}
        assert len(by_id) == TASKS, 'the gateway returned the same task id twice'
        assert {(c.node, c.version) for c in created} == set(clients)
        shared = {c.id for c in created if c.index % SHARED_CONTEXT_EVERY == 0}
        phase(f'created {TASKS} tasks')

        # --- the archive catches up and memory shrinks on every node ----------------------
        archives = _wait_archive_caught_up(cluster)
        for node, a in archives.items():
            # Eviction happened: far fewer tasks in memory than were created.
            assert a['tasksInMemory'] < TASKS, f'node {node}: {a}'
        archived_total = sum(a.get('archivedTotal', 0) for a in archives.values())
        assert archived_total >= TASKS, f'archivedTotal over the nodes: {archives}'
        phase(f'archive caught up: {archives}')

        orders: dict[int, list[str]] = {}
        for node in cluster.ids:
            client10 = clients[(node, '1.0')]

            # --- GetTask, every id, both client versions ------------------------------------
            await _gather_limited(
                _get_task(clients[(node, version)], c, f'node {node} ({version} client)')
                for version in KINDS
                for c in created
            )

            # --- ListTasks, all pages, two page sizes ---------------------------------------
            for page_size in PAGE_SIZES:
                where = f'node {node}, ListTasks pageSize {page_size}'
                listed, totals = await _list_all(client10, page_size, where)
                ids = [t.id for t in listed]
                _assert_exactly_once(ids, by_id, where)
                assert set(totals) == {TASKS}, f'{where}: totalSize per page {totals}'
                for t in listed:
                    assert t.context_id == by_id[t.id].context_id, f'{where}: {t.id}'
                    assert t.status.state == TaskState.TASK_STATE_COMPLETED, f'{where}: {t.id}'
                # One order (newest first) whatever the page size, and the same on every node.
                if node in orders:
                    assert ids == orders[node], (
                        f'{where}: order differs from pageSize {PAGE_SIZES[0]}'
                    )
                orders[node] = ids
            if node > 1:
                assert orders[node] == orders[1], f'node {node}: list order differs from node 1'

            # --- filters on archived rows ----------------------------------------------------
            # The oldest tasks in list order were archived and evicted long ago (5 stay).
            oldest = [by_id[i] for i in orders[node][-3:] if i not in shared]
            assert oldest, 'no evicted single-context task to filter on'
            for c in oldest:
                where = f'node {node}, ListTasks contextId={c.context_id} (task {c.id})'
                page = await client10.list_tasks(ListTasksRequest(context_id=c.context_id))
                assert [t.id for t in page.tasks] == [c.id], f'{where}: {page}'
                assert page.total_size == 1 and page.next_page_token == '', f'{where}: {page}'
            where = f'node {node}, ListTasks contextId={shared_context} pageSize 5'
            in_context, totals = await _list_all(client10, 5, where, context_id=shared_context)
            got_shared = [t.id for t in in_context]
            _assert_exactly_once(got_shared, shared, where)
            assert set(totals) == {len(shared)}, f'{where}: totalSize per page {totals}'
            # The context's tasks keep the global order.
            assert got_shared == [i for i in orders[node] if i in shared], where
            where = f'node {node}, ListTasks status=COMPLETED'
            completed = await client10.list_tasks(
                ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED, page_size=1)
            )
            assert completed.total_size == TASKS, f'{where}: totalSize {completed.total_size}'
            assert [t.id for t in completed.tasks] == orders[node][:1], where
            failed = await client10.list_tasks(ListTasksRequest(status=TaskState.TASK_STATE_FAILED))
            where = f'node {node}, ListTasks status=FAILED'
            assert failed.total_size == 0 and not failed.tasks, f'{where}: {failed}'

            # --- historyLength on archived tasks ---------------------------------------------
            for c in oldest:
                assert len(c.history_ids) >= 2, f'task {c.id} history too short to test: {c}'
                for version in KINDS:
                    where = f'node {node} ({version} client), GetTask {c.id} historyLength=1'
                    got = await clients[(node, version)].get_task(
                        GetTaskRequest(id=c.id, history_length=1)
                    )
                    assert got.id == c.id, where
                    assert len(got.history) <= 1, f'{where}: {len(got.history)} messages'
                    if got.history:
                        # The most recent message, not the first.
                        last = c.history_ids[-1]
                        assert got.history[0].message_id == last, f'{where}: {got.history}'
                    assert artifact_texts(got) == {'echo': c.text}, where
            phase(f'node {node}: GetTask x{2 * TASKS}, ListTasks, filters, historyLength')

        # --- a second wave, listed at once: memory (archived or not) merged with the archive
        # Right after these are acknowledged some typically still wait for the archiver, so
        # the pages mix unarchived tasks in memory, archived ones still in memory and
        # archive-only rows; every task must still appear exactly once, in one order.
        # (totalSize is not checked here: see the test below.)
        more: list[Created] = await _gather_limited(
            _create(clients, i) for i in range(TASKS, TASKS + SECOND_WAVE)
        )
        by_id.update((c.id, c) for c in more)
        for node in cluster.ids:
            for page_size in PAGE_SIZES:
                where = f'node {node}, ListTasks pageSize {page_size} right after the second wave'
                listed, _ = await _list_all(clients[(node, '1.0')], page_size, where)
                ids = [t.id for t in listed]
                _assert_exactly_once(ids, by_id, where)
                # The newest tasks lead the list; the first wave keeps its order below them.
                assert set(ids[:SECOND_WAVE]) == {c.id for c in more}, where
                assert ids[SECOND_WAVE:] == orders[1], where
            await _gather_limited(
                _get_task(clients[(node, version)], c, f'node {node} ({version}), second wave')
                for version in KINDS
                for c in more
            )
        phase('second wave listed and read on every node')
        _wait_archive_caught_up(cluster)
        for node in cluster.ids:
            where = f'node {node}, ListTasks pageSize 25 after the second wave was archived'
            listed, totals = await _list_all(clients[(node, '1.0')], 25, where)
            _assert_exactly_once([t.id for t in listed], by_id, where)
            assert set(totals) == {TASKS + SECOND_WAVE}, f'{where}: totalSize per page {totals}'
        phase('second wave archived and listed')

    with cluster.logs_on_failure():
        run(body())


@pytest.mark.gateway_only
def test_list_total_size_is_exact_while_archiving(archive_cluster):
    """No task is written while the lists run, so every page's totalSize must equal the
    number of tasks, whatever the archiver is doing in the meantime."""
    cluster = archive_cluster

    async def body():
        clients = await _clients(cluster)
        try:
            await check(clients)
        finally:
            await _close(clients)

    async def check(clients: dict[tuple[int, str], Client]) -> None:
        made = 0
        wrong: list[str] = []
        for round_number in range(4):
            batch = await _gather_limited(
                _create(clients, i) for i in range(made, made + 30)
            )
            made += len(batch)
            # Right away, while the archiver works through the batch, on every node.
            for node in cluster.ids:
                for page_size in (1, 7):
                    where = f'round {round_number}, node {node}, pageSize {page_size}'
                    page = await clients[(node, '1.0')].list_tasks(
                        ListTasksRequest(page_size=page_size)
                    )
                    if page.total_size != made:
                        backlog = (cluster.health(node).get('archive') or {}).get('backlog')
                        wrong.append(
                            f'{where}: totalSize {page.total_size}, want {made} '
                            f'(backlog now {backlog})'
                        )
            _wait_archive_caught_up(cluster)
        assert not wrong, '\n'.join(wrong)

    with cluster.logs_on_failure():
        run(body())
