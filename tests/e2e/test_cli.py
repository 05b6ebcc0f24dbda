"""The `superx` CLI client against a real gateway with the SDK agents behind it.

Every subcommand runs as a process (`superx send|tasks|agents|cluster|completions`) with
`SUPERX_URL` pointing at the session's gateway; the tests check the human output, the
`--json` output and the exit codes (README, "CLI": 0 ok, 1 failed, 3 unreachable,
4 not found, 5 credentials, 6 retry later).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from conftest import E2E, _gateway_bin

pytestmark = pytest.mark.gateway_only

CLI_SECONDS_MAX = 60.0


def cli(e2e: E2E, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUPERX_URL=url or e2e.gateway)
    env.pop('SUPERX_TOKEN', None)
    return subprocess.run(
        [str(_gateway_bin()), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_SECONDS_MAX,
        stdin=subprocess.DEVNULL,
    )


def ok(e2e: E2E, *args: str) -> subprocess.CompletedProcess:
    r = cli(e2e, *args)
    assert r.returncode == 0, f'{args}: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}'
    return r


def test_send_prints_the_reply_and_the_task_line(e2e: E2E) -> None:
    r = ok(e2e, 'send', 'tasks', 'hello', 'from', 'the', 'cli')
    assert r.stdout.strip() == 'hello from the cli'
    assert ' completed (context ' in r.stderr


def test_send_json_is_the_gateways_result(e2e: E2E) -> None:
    r = ok(e2e, 'send', 'tasks', 'json please', '--json')
    result = json.loads(r.stdout)
    assert result['task']['status']['state'] == 'TASK_STATE_COMPLETED'
    assert result['task']['artifacts'][0]['parts'][0]['text'] == 'json please'


def test_send_to_a_message_agent_prints_the_message(e2e: E2E) -> None:
    r = ok(e2e, 'send', 'chat', 'hi')
    assert r.stdout.strip() == 'echo: hi'


def test_send_stream_shows_events_live(e2e: E2E) -> None:
    r = ok(e2e, 'send', 'tasks', 'streamed words', '--stream')
    # The SDK agent's status messages and its artifact, each on a line.
    assert r.stdout.splitlines() == ['echoing...', 'streamed words', 'done'], r.stdout
    assert ' completed ' in r.stderr
    lines = ok(e2e, 'send', 'tasks', 'streamed json', '--stream', '--json').stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) >= 2, events
    assert 'task' in events[0] or 'statusUpdate' in events[0]
    assert events[-1]['statusUpdate']['status']['state'] == 'TASK_STATE_COMPLETED'


def test_a_failed_task_exits_1(e2e: E2E) -> None:
    r = cli(e2e, 'send', 'tasks', 'fail')
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert 'ended failed' in r.stderr


def test_tasks_get_list_cancel_watch(e2e: E2E) -> None:
    sent = json.loads(ok(e2e, 'send', 'tasks', 'listed by the cli', '--json').stdout)
    task_id = sent['task']['id']

    got = ok(e2e, 'tasks', 'get', task_id)
    assert f'task     {task_id}' in got.stdout and 'state    completed' in got.stdout
    assert 'listed by the cli' in got.stdout
    assert json.loads(ok(e2e, 'tasks', 'get', task_id, '--json').stdout)['id'] == task_id

    listed = ok(e2e, 'tasks', 'list', '--agent', 'tasks', '--limit', '500')
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ['TASK', 'STATE', 'UPDATED', 'CONTEXT', 'TEXT']
    assert any(row.startswith(task_id) and 'completed' in row for row in rows), listed.stdout
    as_json = json.loads(ok(e2e, 'tasks', 'list', '--agent', 'tasks', '--state', 'completed', '--json').stdout)
    assert as_json['tasks'] and all(t['status']['state'] == 'TASK_STATE_COMPLETED' for t in as_json['tasks'])

    # A finished task cannot be canceled: the server's error, exit 1.
    r = cli(e2e, 'tasks', 'cancel', task_id)
    assert r.returncode == 1 and 'cannot be canceled' in r.stderr, (r.stdout, r.stderr)
    # Watching a finished task shows where it ended.
    watched = ok(e2e, 'tasks', 'watch', task_id)
    assert 'state    completed' in watched.stdout


def test_cancel_and_watch_a_running_task(e2e: E2E) -> None:
    watch = None
    try:
        sent = subprocess.Popen(
            [str(_gateway_bin()), 'send', 'tasks', 'slow task', '--stream', '--json'],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, SUPERX_URL=e2e.gateway),
        )
        first = json.loads(sent.stdout.readline())
        task_id = first.get('task', {}).get('id') or first['statusUpdate']['taskId']
        watch = subprocess.Popen(
            [str(_gateway_bin()), 'tasks', 'watch', task_id, '--json'],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, SUPERX_URL=e2e.gateway),
        )
        # The watcher is subscribed once it printed the task's current state.
        assert watch.stdout.readline().strip(), 'the watcher printed nothing'
        canceled = ok(e2e, 'tasks', 'cancel', task_id)
        assert 'state    canceled' in canceled.stdout
        out, err = watch.communicate(timeout=CLI_SECONDS_MAX)
        assert watch.returncode == 1, (out, err)  # a canceled task is not a success
        assert json.loads(out.splitlines()[-1])['statusUpdate']['status']['state'] == 'TASK_STATE_CANCELED'
        sent.communicate(timeout=CLI_SECONDS_MAX)
        assert sent.returncode == 1
    finally:
        for p in (sent, watch):
            if p is not None and p.poll() is None:
                p.kill()


def test_agents_list_add_health_remove(e2e: E2E) -> None:
    listed = ok(e2e, 'agents', 'list')
    assert listed.stdout.splitlines()[0].split() == ['AGENT', 'NAME', 'SOURCE', 'BINDING', 'URL']
    assert any(line.split()[0] == 'tasks' for line in listed.stdout.splitlines()[1:])

    url = f'http://127.0.0.1:{e2e.agent_ports["tasks"]}/'
    assert ok(e2e, 'agents', 'add', 'cli-added', url).stdout.strip() == 'agent cli-added registered'
    as_json = json.loads(ok(e2e, 'agents', 'list', '--json').stdout)
    assert any(a['id'] == 'cli-added' and a['url'] == url for a in as_json)
    assert ok(e2e, 'send', 'cli-added', 'through the new agent').stdout.strip() == 'through the new agent'

    health = ok(e2e, 'agents', 'health')
    assert health.stdout.splitlines()[0].split()[:3] == ['AGENT', 'NODE', 'BREAKER']
    assert any(line.split()[0] == 'cli-added' and 'closed' in line for line in health.stdout.splitlines()[1:])

    assert ok(e2e, 'agents', 'remove', 'cli-added').stdout.strip() == 'agent cli-added removed'
    r = cli(e2e, 'send', 'cli-added', 'gone')
    assert r.returncode == 4 and 'agent not found' in r.stderr


def test_cluster_status(e2e: E2E) -> None:
    r = ok(e2e, 'cluster', 'status')
    assert 'role        leader' in r.stdout
    status = json.loads(ok(e2e, 'cluster', 'status', '--json').stdout)
    assert status['role'] == 'leader' and status['voters'] == [status['nodeId']]


def test_exit_codes_say_what_went_wrong(e2e: E2E) -> None:
    r = cli(e2e, 'send', 'no-such-agent', 'hi')
    assert r.returncode == 4 and 'agent not found: no-such-agent' in r.stderr
    r = cli(e2e, 'tasks', 'get', 'no-such-task')
    assert r.returncode == 4 and 'task not found' in r.stderr
    # A port nothing listens on: unreachable, with a hint.
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        dead = f'http://127.0.0.1:{s.getsockname()[1]}'
    r = cli(e2e, 'agents', 'list', url=dead)
    assert r.returncode == 3 and 'cannot reach the gateway' in r.stderr and 'SUPERX_URL' in r.stderr
    # Usage errors are clap's (2).
    assert cli(e2e, 'tasks', 'list', '--state', 'done').returncode == 2


def test_completions_are_generated() -> None:
    for shell, marker in [('bash', '_superx()'), ('zsh', '#compdef superx'), ('fish', 'complete -c superx')]:
        r = subprocess.run([str(_gateway_bin()), 'completions', shell], capture_output=True, text=True, timeout=CLI_SECONDS_MAX)
        assert r.returncode == 0 and marker in r.stdout and 'watch' in r.stdout, (shell, r.stderr)
