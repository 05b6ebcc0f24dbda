"""The README's demo command and the dashboard at `/ui`, in a real browser.

`superx serve --demo` runs as a process (with its own ports and data dir); the CLI sends
through it and gets the echo; `/ui` and its files load with their security headers. Then
headless Chromium (Debian's package, driven over the DevTools protocol, `chromium.py`) opens
the dashboard: the agents and the cluster member are rendered, a task streamed during the
test appears working and turns completed without a reload, its detail shows its history and
artifact, no agent bearer is anywhere in the page, and the page logged no error (a CSP
violation would be one). A screenshot is saved as a test artifact
(`$SUPERX_TEST_ARTIFACTS`, default `<cargo target dir>/test-artifacts/ui.png`).
With auth on, the files load without a credential, the feed needs an admin one, and the
page asks for it and then works with it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chromium import Chromium, chromium_binary
from conftest import REPO_ROOT, Proc, _gateway_bin

pytestmark = pytest.mark.gateway_only

READY_SECONDS_MAX = 30.0
CLI_SECONDS_MAX = 60.0
PAGE_SECONDS_MAX = 20.0
# The demo agent streams one word per 150 ms: 24 words keep the task working ~3.6 s.
STREAMED_WORDS = [f'word{i}' for i in range(24)]
AGENT_BEARER = 'dashboard-must-never-show-this-bearer'
ADMIN_TOKEN = 'ui-test-admin-token-0123456789'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def artifacts_dir() -> Path:
    configured = os.environ.get('SUPERX_TEST_ARTIFACTS')
    if configured:
        return Path(configured)
    target = Path(os.environ.get('CARGO_TARGET_DIR', REPO_ROOT / 'target'))
    return target / 'test-artifacts'


@dataclass
class Demo:
    proc: Proc
    base: str

    def rpc(self, method: str, params: dict, token: str | None = None) -> dict:
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        body = {'jsonrpc': '2.0', 'id': 1, 'method': method, 'params': params}
        r = httpx.post(f'{self.base}/rpc', json=body, headers=headers, timeout=15.0)
        answer = r.json()
        assert 'result' in answer, answer
        return answer['result']


def start_demo(work: Path, env: dict[str, str] | None = None) -> Demo:
    """`superx serve --demo`, as the README runs it, on ports and a data dir of its own."""
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = work / 'demo.log'
    popen = subprocess.Popen(
        [
            str(_gateway_bin()), 'serve', '--demo',
            '--listen', f'127.0.0.1:{port}',
            '--raft-listen', f'127.0.0.1:{_free_port()}',
            '--data-dir', str(work / 'data'),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_path.open('wb'),
        stderr=subprocess.STDOUT,
        cwd=work,
        env=dict(os.environ, **(env or {})),
    )
    demo = Demo(Proc('demo', popen, log_path), f'http://127.0.0.1:{port}')
    deadline = time.monotonic() + READY_SECONDS_MAX
    last = 'no answer'
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            pytest.fail(f'superx serve --demo exited with {popen.returncode}\n{demo.proc.log_tail()}')
        try:
            r = httpx.get(f'{demo.base}/ready', timeout=2.0)
            if r.status_code == 200:
                return demo
            last = f'HTTP {r.status_code}'
        except httpx.TransportError as e:
            last = repr(e)
        # Polling interval; the deadline bounds the wait.
        time.sleep(0.05)
    demo.proc.stop()
    pytest.fail(f'the demo gateway was not ready within {READY_SECONDS_MAX}s ({last})\n{demo.proc.log_tail()}')


@pytest.fixture(scope='module')
def demo(tmp_path_factory: pytest.TempPathFactory):
    d = start_demo(tmp_path_factory.mktemp('superx-demo'))
    yield d
    d.proc.stop()


def cli(demo: Demo, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUPERX_URL=demo.base)
    env.pop('SUPERX_TOKEN', None)
    if token:
        env['SUPERX_TOKEN'] = token
    return subprocess.run(
        [str(_gateway_bin()), *args], capture_output=True, text=True, env=env,
        timeout=CLI_SECONDS_MAX, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def browser(tmp_path: Path):
    binary = chromium_binary()
    if binary is None:
        pytest.fail('chromium is not installed (tests/run.sh installs Debian\'s chromium package)')
    b = Chromium(binary, tmp_path)
    yield b
    b.close()


def test_the_demo_command_answers_through_the_cli_and_serves_the_dashboard(demo: Demo) -> None:
    r = cli(demo, 'send', 'echo', 'hello')
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip() == 'hello'
    assert f'Dashboard   {demo.base}/ui' in demo.proc.log_path.read_text(), 'the banner says where to look'

    page = httpx.get(f'{demo.base}/ui', timeout=10.0)
    assert page.status_code == 200
    assert page.headers['content-type'] == 'text/html; charset=utf-8'
    csp = page.headers['content-security-policy']
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert page.headers['x-content-type-options'] == 'nosniff'
    assert '<script src="/ui/app.js"' in page.text
    for path, kind in [('/ui/app.js', 'text/javascript'), ('/ui/app.css', 'text/css'), ('/ui/favicon.svg', 'image/svg+xml')]:
        asset = httpx.get(f'{demo.base}{path}', timeout=10.0)
        assert asset.status_code == 200 and asset.headers['content-type'].startswith(kind), (path, asset.headers)
        again = httpx.get(f'{demo.base}{path}', headers={'If-None-Match': asset.headers['etag']}, timeout=10.0)
        assert again.status_code == 304 and not again.content, path
    assert httpx.get(f'{demo.base}/ui/nothing.js', timeout=10.0).status_code == 404
    settings = httpx.get(f'{demo.base}/ui/config.json', timeout=10.0).json()
    assert settings['authRequired'] is False and settings['adminActions'] is False, settings

    # The dashboard's view of a task: as the node holds it, with its agent.
    sent = json.loads(cli(demo, 'send', 'echo', 'looked', 'at', '--json').stdout)
    found = httpx.get(f'{demo.base}/ui/tasks/{sent["task"]["id"]}', timeout=10.0)
    assert found.status_code == 200 and found.headers['cache-control'] == 'no-store'
    assert found.json()['agentId'] == 'echo' and found.json()['task'] == sent['task'], found.json()
    missing = httpx.get(f'{demo.base}/ui/tasks/no-such-task', timeout=10.0)
    assert missing.status_code == 404 and 'no-such-task' in missing.json()['error']


def test_the_dashboard_in_chromium_shows_agents_members_and_live_tasks(demo: Demo, browser: Chromium) -> None:
    echo_url = next(a['url'] for a in demo.rpc('agents/list', {}) if a['id'] == 'echo')
    # A second agent with a bearer: the page may say it has one, never show it.
    demo.rpc('agents/upsert', {'agent': {'id': 'echo-secured', 'url': echo_url, 'bearer': AGENT_BEARER}})

    page = browser.open(f'{demo.base}/ui')
    page.wait_for(
        "document.querySelector('#agents tr[data-agent-id=\"echo\"]') !== null"
        " && document.querySelector('#agents tr[data-agent-id=\"echo-secured\"]') !== null",
        PAGE_SECONDS_MAX, 'both agents listed',
    )
    secured = page.evaluate(
        "[...document.querySelector('#agents tr[data-agent-id=\"echo-secured\"]').cells].map(c => c.textContent)"
    )
    assert 'bearer' in secured and 'closed' in secured, secured
    member = page.wait_for(
        "(() => { const r = document.querySelector('#members tr[data-node-id=\"1\"]');"
        " return r && [...r.cells].map(c => c.textContent); })()",
        PAGE_SECONDS_MAX, 'the cluster member listed',
    )
    assert member[2] == 'leader' and member[6].startswith('live'), member
    assert int(member[3]) >= 1 and int(member[4]) >= 1 and int(member[5]) >= 1, member
    page.wait_for("document.getElementById('live').textContent === 'feed: live'", PAGE_SECONDS_MAX, 'feed connected')
    # Anything that reloads the page loses this.
    page.evaluate("window.__superxTestMarker = 'kept'")

    sender = subprocess.Popen(
        [str(_gateway_bin()), 'send', 'echo', *STREAMED_WORDS, '--stream', '--json'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env=dict(os.environ, SUPERX_URL=demo.base),
    )
    try:
        first = json.loads(sender.stdout.readline())
        task_id = first.get('task', {}).get('id') or first['statusUpdate']['taskId']
        row = f"document.querySelector('#tasks tr[data-task-id=\"{task_id}\"]')"
        state = page.wait_for(f"{row} && {row}.dataset.state", PAGE_SECONDS_MAX, 'the new task listed')
        assert state == 'working', f'the task was listed as {state}, not working first'
        # Opened while it works: the detail follows it too.
        page.evaluate(f"{row}.click()")
        page.wait_for(
            "document.querySelector('#detail-meta [data-state]')?.dataset.state === 'working'",
            PAGE_SECONDS_MAX, 'the detail shows the working task',
        )
        page.wait_for(f"{row} && {row}.dataset.state === 'completed'", PAGE_SECONDS_MAX, 'the task turned completed live')
        out, err = sender.communicate(timeout=CLI_SECONDS_MAX)
        assert sender.returncode == 0, (out, err)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.communicate()
    assert page.evaluate('window.__superxTestMarker') == 'kept', 'the page was reloaded'

    detail = page.wait_for(
        "(() => { const a = document.getElementById('detail-artifacts').textContent;"
        f" return document.querySelector('#detail-meta [data-state]')?.dataset.state === 'completed'"
        f" && a.includes('{STREAMED_WORDS[-1]}') && a; }})()",
        PAGE_SECONDS_MAX, 'the detail shows the completed task and its artifact',
    )
    assert all(w in detail for w in STREAMED_WORDS), detail
    history = page.evaluate("document.getElementById('detail-history').textContent")
    assert STREAMED_WORDS[0] in history, history
    assert page.evaluate("document.getElementById('detail-cancel').hidden") is True, 'read-only: no cancel button'
    assert page.evaluate("document.querySelectorAll('#agents button').length") == 0, 'read-only: no remove buttons'

    shot = page.screenshot(artifacts_dir() / 'ui.png')
    assert shot.stat().st_size > 10_000, shot
    assert AGENT_BEARER not in page.evaluate('document.documentElement.outerHTML')
    assert page.console_errors() == []


def test_with_auth_the_page_asks_for_an_admin_credential(tmp_path: Path, browser: Chromium) -> None:
    env = {
        'SUPERX_AUTH__MODE': 'required',
        'SUPERX_AUTH__ADMIN_TOKEN': ADMIN_TOKEN,
        'SUPERX_UI__ADMIN_ACTIONS': 'true',
    }
    demo = start_demo(tmp_path / 'gateway', env)
    try:
        # The files and settings are public; they hold no data.
        assert httpx.get(f'{demo.base}/ui', timeout=10.0).status_code == 200
        settings = httpx.get(f'{demo.base}/ui/config.json', timeout=10.0).json()
        assert settings['authRequired'] is True and settings['adminActions'] is True, settings
        # The feed shows every task: an admin's only.
        assert httpx.get(f'{demo.base}/ui/events', timeout=10.0).status_code == 401
        assert httpx.get(f'{demo.base}/ui/tasks/any', timeout=10.0).status_code == 401
        client_key = demo.rpc('keys/create', {'name': 'not-an-admin'}, ADMIN_TOKEN)['key']
        for path in ('/ui/events', '/ui/tasks/any'):
            forbidden = httpx.get(f'{demo.base}{path}', headers={'X-API-Key': client_key}, timeout=10.0)
            assert forbidden.status_code == 403, path
        headers = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
        with httpx.stream('GET', f'{demo.base}/ui/events', headers=headers, timeout=10.0) as feed:
            assert feed.status_code == 200 and feed.headers['content-type'] == 'text/event-stream'
            first = next(feed.iter_lines())
            assert first == 'event: snapshot', first

        page = browser.open(f'{demo.base}/ui')
        page.wait_for("!document.getElementById('login').hidden", PAGE_SECONDS_MAX, 'the page asks for a credential')
        assert page.evaluate("document.querySelectorAll('#agents tbody tr').length") == 0
        page.evaluate(
            f"document.getElementById('token').value = '{ADMIN_TOKEN}';"
            " document.getElementById('login-form').requestSubmit()"
        )
        page.wait_for(
            "document.querySelector('#agents tr[data-agent-id=\"echo\"] button') !== null",
            PAGE_SECONDS_MAX, 'the agents listed, with admin actions',
        )
        page.wait_for("document.getElementById('live').textContent === 'feed: live'", PAGE_SECONDS_MAX, 'feed connected')
        r = cli(demo, 'send', 'echo', 'with', 'auth', token=ADMIN_TOKEN)
        assert r.returncode == 0, (r.stdout, r.stderr)
        page.wait_for(
            "document.querySelector('#tasks tr[data-state=\"completed\"] td:nth-child(2)')?.textContent === 'echo'",
            PAGE_SECONDS_MAX, 'the task listed',
        )
        # The credential stays in this tab's session storage, and in no URL.
        assert page.evaluate("sessionStorage.getItem('superx.credential')") == ADMIN_TOKEN
        assert ADMIN_TOKEN not in page.evaluate('location.href')
        assert page.console_errors() == []
    finally:
        demo.proc.stop()
