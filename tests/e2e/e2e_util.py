"""Helpers shared by the end-to-end tests: SDK clients for A2A 1.0 and 0.3, raw JSON-RPC
calls, and checks of the JSON-RPC error shapes."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory, create_client
from a2a.client.transports.jsonrpc import JsonRpcTransport
from a2a.client.transports.rest import RestTransport
from a2a.compat.v0_3.jsonrpc_transport import CompatJsonRpcTransport
from a2a.compat.v0_3.rest_transport import CompatRestTransport
from a2a.types import (
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)


HTTP_TIMEOUT_SECONDS = 15.0
"""Every HTTP call in the tests is bounded, so a hung gateway fails a test instead of the
suite. A blocking send of a normal task takes milliseconds."""

ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo'
TERMINAL_STATES = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}

VERSIONS = ['1.0', '0.3']


def run(coro):
    """Runs one test's async body (pytest-asyncio is not a dependency)."""
    return asyncio.run(coro)


def new_id(prefix: str = 'm') -> str:
    return f'{prefix}-{uuid.uuid4()}'


# --- SDK clients -------------------------------------------------------------------------


async def fetch_card(card_base: str) -> AgentCard:
    """Resolves the card the way the SDK does: `<base>/.well-known/agent-card.json`."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
        return await A2ACardResolver(http, card_base).get_agent_card()


async def sdk_client(
    card_base: str,
    version: str,
    streaming: bool = False,
    binding: str | None = None,
    interceptors: list | None = None,
) -> Client:
    """An SDK client speaking A2A `version` ("1.0" or "0.3") over `binding` ("JSONRPC" or
    "HTTP+JSON") to the agent whose card is served under `card_base`. Without a binding it
    takes JSON-RPC, or HTTP+JSON when the card offers only that.

    The gateway's cards offer both bindings in both versions; an SDK agent called directly
    (SUPERX_E2E_DIRECT=1) serves one binding, and a test asking for the other is skipped.
    The SDK always prefers a 1.0 interface when the card has one, so the 1.0 client is
    exactly `create_client(url, config)`. A 0.3 client is made by keeping only the card's
    0.3 interfaces of that binding before `ClientFactory.create`, which then picks the SDK's
    `CompatJsonRpcTransport` (slash methods, `A2A-Version: 0.3`) or `CompatRestTransport`
    (`/v1/...` paths). `interceptors` (the SDK's `AuthInterceptor`, say) go to the client.
    """
    card = await fetch_card(card_base)
    offered = {i.protocol_binding for i in card.supported_interfaces}
    if binding is None:
        binding = 'JSONRPC' if 'JSONRPC' in offered else 'HTTP+JSON'
    elif binding not in offered:
        if direct_mode():
            pytest.skip(f'the agent serves no {binding} interface (SUPERX_E2E_DIRECT=1)')
        raise AssertionError(f'card offers no {binding} interface: {card.supported_interfaces}')
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=[binding])
    transports = {
        ('1.0', 'JSONRPC'): JsonRpcTransport,
        ('1.0', 'HTTP+JSON'): RestTransport,
        ('0.3', 'JSONRPC'): CompatJsonRpcTransport,
        ('0.3', 'HTTP+JSON'): CompatRestTransport,
    }
    if (version, binding) == ('0.3', 'HTTP+JSON') and direct_mode():
        # SDK 1.3.0's 0.3 REST client reads errors as `{"type": ...}`, its 0.3 REST server
        # sends only google.rpc.Status, so every A2A error arrives as a bare HTTP error. The
        # gateway's 0.3 REST errors carry both forms.
        pytest.skip("SDK 1.3.0's 0.3 REST client cannot read its own server's errors")
    if version == '1.0':
        client = await create_client(card_base, config, interceptors=interceptors)
    else:
        legacy = [
            i for i in card.supported_interfaces
            if i.protocol_binding == binding and i.protocol_version.startswith('0.3')
        ]
        assert legacy, f'card has no {binding} 0.3 interface: {card.supported_interfaces}'
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(legacy)
        client = ClientFactory(config).create(card, interceptors=interceptors)
    expected = transports[(version, binding)]
    assert isinstance(client._transport, expected), type(client._transport)
    return client


def direct_mode() -> bool:
    """SUPERX_E2E_DIRECT=1: the client tests talk to the SDK agents themselves."""
    return os.environ.get('SUPERX_E2E_DIRECT', '') not in ('', '0', 'false', 'no')


def user_message(text: str, task_id: str = '', context_id: str = '') -> Message:
    return Message(
        message_id=new_id(),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )


async def send(
    client: Client, message: Message, return_immediately: bool = False
) -> list[StreamResponse]:
    """Sends one message and returns every StreamResponse the client yields."""
    request = SendMessageRequest(
        message=message,
        configuration=SendMessageConfiguration(return_immediately=return_immediately),
    )
    return [event async for event in client.send_message(request)]


async def send_for_task(client: Client, message: Message, **kw: Any) -> Task:
    events = await send(client, message, **kw)
    assert len(events) == 1 and events[0].HasField('task'), events
    return events[0].task


def artifact_texts(task: Task) -> dict[str, str]:
    """Artifact id -> its text parts joined."""
    return {a.artifact_id: ''.join(p.text for p in a.parts) for a in task.artifacts}


def message_text(message: Message) -> str:
    return ''.join(p.text for p in message.parts)


# --- raw JSON-RPC ------------------------------------------------------------------------


def msg10(text: str, **fields: Any) -> dict:
    return {'messageId': new_id(), 'role': 'ROLE_USER', 'parts': [{'text': text}], **fields}


def msg03(text: str, **fields: Any) -> dict:
    return {
        'kind': 'message',
        'messageId': new_id(),
        'role': 'user',
        'parts': [{'kind': 'text', 'text': text}],
        **fields,
    }


def post(
    url: str,
    body: Any = None,
    *,
    version: str | None = None,
    raw: str | bytes | None = None,
    content_type: str = 'application/json',
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = {'Content-Type': content_type}
    if version is not None:
        h['A2A-Version'] = version
    h.update(headers or {})
    content = raw if raw is not None else json.dumps(body)
    return httpx.post(url, content=content, headers=h, timeout=HTTP_TIMEOUT_SECONDS)


def rpc(
    url: str,
    method: str,
    params: Any,
    *,
    version: str | None = None,
    rpc_id: Any = 1,
    headers: dict[str, str] | None = None,
) -> dict:
    """One JSON-RPC call; asserts HTTP 200 and a JSON-RPC 2.0 response echoing the id."""
    body = {'jsonrpc': '2.0', 'id': rpc_id, 'method': method, 'params': params}
    r = post(url, body, version=version, headers=headers)
    assert r.status_code == 200, (r.status_code, r.text)
    doc = r.json()
    assert doc.get('jsonrpc') == '2.0', doc
    assert doc.get('id') == rpc_id, doc
    assert ('result' in doc) != ('error' in doc), doc
    return doc


def result_of(doc: dict) -> Any:
    assert 'error' not in doc, doc
    return doc['result']


def error_of(doc: dict, code: int) -> dict:
    assert 'error' in doc, doc
    err = doc['error']
    assert err.get('code') == code, doc
    assert isinstance(err.get('message'), str) and err['message'], doc
    return err


def error_infos(err: dict) -> list[dict]:
    data = err.get('data')
    if not isinstance(data, list):
        return []
    return [d for d in data if isinstance(d, dict) and d.get('@type') == ERROR_INFO_TYPE]


def assert_error_info(err: dict, reason: str) -> None:
    """1.0 form: `data` is an array holding a google.rpc.ErrorInfo with this reason."""
    assert isinstance(err.get('data'), list), err
    infos = error_infos(err)
    assert infos, err
    assert infos[0].get('reason') == reason, err
    assert infos[0].get('domain') == 'a2a-protocol.org', err


def assert_no_error_info(err: dict) -> None:
    """0.3 form: no google.rpc `data` array (0.3's `data` is free-form, never that list)."""
    assert not isinstance(err.get('data'), list), err


def task_state_name(task: dict) -> str:
    """The state of a task in either JSON form, as the 1.0 enum name."""
    state = task['status']['state']
    if state.startswith('TASK_STATE_'):
        return state
    return 'TASK_STATE_' + state.upper().replace('-', '_')


DELIVERY_SECONDS_MAX = 20.0
"""Every update is delivered within this long of being committed (delivery takes
milliseconds; the bound only keeps a broken gateway from hanging the suite)."""


class Receiver:
    """A webhook endpoint recording what it receives."""

    def __init__(self) -> None:
        self.hits: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get('content-length', '0'))
                raw = self.rfile.read(length)
                with receiver.lock:
                    receiver.hits.append({
                        'event_id': self.headers.get('superx-event-id', ''),
                        'token': self.headers.get('x-a2a-notification-token'),
                        'body': json.loads(raw or b'null'),
                        'raw': raw,
                        'headers': {k.lower(): v for k, v in self.headers.items()},
                    })
                self.send_response(200)
                self.send_header('content-length', '0')
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/hook'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_task(self, task_id: str) -> list[dict]:
        with self.lock:
            return [h for h in self.hits if h['event_id'].startswith(f'{task_id}:')]

    def wait_for(self, task_id: str, done, token: str | None = None) -> list[dict]:
        """Waits until a delivery for the task (with `token`, when given: one webhook's lane;
        lanes deliver independently) satisfies `done`; answers those deliveries."""
        deadline = time.monotonic() + DELIVERY_SECONDS_MAX
        while time.monotonic() < deadline:
            hits = [h for h in self.of_task(task_id) if token is None or h['token'] == token]
            if any(done(h['body']) for h in hits):
                return hits
            # Polling interval; the deadline bounds the wait.
            time.sleep(0.05)
        raise AssertionError(f'no final delivery for {task_id} within {DELIVERY_SECONDS_MAX}s: {self.of_task(task_id)}')

    def close(self) -> None:
        self.server.shutdown()
