"""Headless Chromium (Debian's `chromium` package) driven through the DevTools protocol.

Chromium is started with `--remote-debugging-pipe`: it reads protocol commands on its fd 3
and writes answers and events on its fd 4, each message a JSON object ended by a NUL byte.
No websocket library and no debugging port are needed. Every wait has a deadline.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time

from pathlib import Path
from typing import Any

CALL_SECONDS_MAX = 30.0
STOP_SECONDS_MAX = 10.0
POLL_SECONDS = 0.05


def chromium_binary() -> str | None:
    for name in ('chromium', 'chromium-browser'):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """One headless browser; `open(url)` gives a `Page`."""

    def __init__(self, binary: str, work: Path, size: tuple[int, int] = (1280, 1000)) -> None:
        # Our ends: we write commands to `to_browser`, read messages from `from_browser`.
        cmd_read, self._to_browser = os.pipe()
        self._from_browser, msg_write = os.pipe()
        # Out of the way of 3 and 4, which the child's ends are moved to.
        child_in = fcntl.fcntl(cmd_read, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(msg_write, fcntl.F_DUPFD, 10)
        os.close(cmd_read)
        os.close(msg_write)

        def to_fds_3_and_4() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log_path = work / 'chromium.log'
        profile = work / 'chromium-profile'
        profile.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            '--headless',
            '--no-sandbox',  # the tests run as root
            '--disable-gpu',
            '--disable-dev-shm-usage',
            '--no-first-run',
            '--no-default-browser-check',
            '--disable-extensions',
            '--disable-background-networking',
            '--remote-debugging-pipe',
            f'--user-data-dir={profile}',
            f'--window-size={size[0]},{size[1]}',
            'about:blank',
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open('wb'),
            stderr=subprocess.STDOUT,
            preexec_fn=to_fds_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(child_in)
        os.close(child_out)
        self._lock = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b''
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b''
            if not chunk:
                with self._lock:
                    self._closed = True
                    self._lock.notify_all()
                return
            buffer += chunk
            while b'\0' in buffer:
                raw, buffer = buffer.split(b'\0', 1)
                message = json.loads(raw)
                with self._lock:
                    if 'id' in message:
                        self._answers[message['id']] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            call_id = self._next_id
        message: dict[str, Any] = {'id': call_id, 'method': method, 'params': params or {}}
        if session:
            message['sessionId'] = session
        os.write(self._to_browser, json.dumps(message).encode() + b'\0')
        deadline = time.monotonic() + CALL_SECONDS_MAX
        with self._lock:
            while call_id not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise DevToolsError(f'{method}: no answer from chromium ({self.log_tail()})')
                self._lock.wait(left)
            answer = self._answers.pop(call_id)
        if 'error' in answer:
            raise DevToolsError(f'{method}: {answer["error"]}')
        return answer.get('result', {})

    def open(self, url: str) -> 'Page':
        target = self.call('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = self.call('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        page = Page(self, session)
        for domain in ('Page.enable', 'Runtime.enable', 'Log.enable'):
            self.call(domain, session=session)
        self.call('Page.navigate', {'url': url}, session=session)
        return page

    def log_tail(self, lines: int = 20) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except OSError as e:
            return f'<no log: {e}>'

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call('Browser.close')
            except (DevToolsError, OSError):
                pass
            try:
                self.proc.wait(STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_SECONDS_MAX)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            'Runtime.evaluate',
            {'expression': expression, 'returnByValue': True, 'awaitPromise': True},
            session=self.session,
        )
        if 'exceptionDetails' in result:
            raise DevToolsError(f'{expression!r} threw: {result["exceptionDetails"]}')
        return result['result'].get('value')

    def wait_for(self, expression: str, seconds: float, what: str) -> Any:
        """Evaluates `expression` until it is truthy; fails after `seconds` with the last value
        and the page's text."""
        deadline = time.monotonic() + seconds
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except DevToolsError as e:
                last = str(e)
            else:
                if last:
                    return last
            # Polling interval of the DOM, not a guess: the deadline bounds the wait.
            time.sleep(POLL_SECONDS)
        text = self.evaluate('document.body ? document.body.innerText : ""')
        raise AssertionError(f'{what}: not within {seconds}s (last: {last!r})\npage text:\n{text}')

    def screenshot(self, path: Path) -> Path:
        data = self.browser.call('Page.captureScreenshot', {'format': 'png'}, session=self.session)['data']
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Errors the page logged: exceptions, and browser log errors (CSP violations, failed
        loads), for this page's session."""
        errors = []
        with self.browser._lock:
            events = list(self.browser.events)
        for e in events:
            if e.get('sessionId') != self.session:
                continue
            if e['method'] == 'Runtime.exceptionThrown':
                errors.append(json.dumps(e['params']['exceptionDetails'])[:500])
            elif e['method'] == 'Log.entryAdded' and e['params']['entry'].get('level') == 'error':
                entry = e['params']['entry']
                errors.append(f'{entry.get("source")}: {entry.get("text")} {entry.get("url", "")}')
            elif e['method'] == 'Runtime.consoleAPICalled' and e['params'].get('type') == 'error':
                errors.append(json.dumps(e['params'].get('args'))[:500])
        return errors
