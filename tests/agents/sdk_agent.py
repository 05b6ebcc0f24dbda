#!/usr/bin/env python3
"""A real A2A agent built on the official Python SDK (a2a-sdk 1.3.0), used as an
upstream for the superx end-to-end tests.

    python tests/agents/sdk_agent.py --port 0 --kind task     # "Task Agent"
    python tests/agents/sdk_agent.py --port 0 --kind message  # "Message Agent"
    python tests/agents/sdk_agent.py --port 0 --binding rest  # HTTP+JSON only

It serves JSON-RPC on `/` for A2A 1.0 and 0.3 (the SDK's compat layer) and its card on
`/.well-known/agent-card.json`. With `--binding rest` it serves the HTTP+JSON binding
instead, on the same root (1.0 routes such as `/message:send`, and the SDK's 0.3 routes under
`/v1/`), and its card lists only HTTP+JSON interfaces (1.0 and 0.3). Once it listens it prints `READY <port>` on stdout, so a
test can wait on that line instead of sleeping (`--port 0` picks a free port and the line
says which).

Behaviour of the task agent, by the text of the user message:
  * "fail"          -> FAILED
  * "slow..."       -> WORKING, then waits until canceled (CANCELED), at most 60 s (COMPLETED)
  * "ask..."        -> INPUT_REQUIRED ("what is your name?"); the follow-up message on the
                       same task completes it with the artifact "hello <text>"
  * anything else   -> WORKING, artifact "echo" with the text, COMPLETED
The message agent answers every message with a Message "echo: <text>" and makes no task.

With `--extended-token TOKEN` the agent offers the extended card (1.0
`capabilities.extendedAgentCard`): `GetExtendedAgentCard` answers the card plus a skill `vip`
when the request's `Authorization` is `Bearer TOKEN`, and the public card's skills otherwise,
so a test sees which credential reached the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from starlette.applications import Starlette

from a2a.helpers import (
    get_message_text,
    new_task_from_user_message,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    TaskState,
)


SLOW_TASK_SECONDS_MAX = 60.0
"""A `slow` task completes on its own after this long, so a test that forgets to cancel
it cannot leave the agent busy forever."""


class TaskAgent(AgentExecutor):
    """Every message makes (or continues) a task."""

    def __init__(self) -> None:
        # task id -> event set by cancel(); a slow task waits on it.
        self._cancel_events: dict[str, asyncio.Event] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = get_message_text(context.message) if context.message else ''
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        # On a follow-up that carries only taskId, context.context_id is a fresh id:
        # the task's own context id is the right one.
        updater = TaskUpdater(event_queue, task.id, task.context_id)

        if task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            await self._answer(updater, f'hello {text}')
        elif text == 'fail':
            await updater.failed(updater.new_agent_message([new_text_part('failed on request')]))
        elif text.startswith('ask'):
            await updater.requires_input(
                updater.new_agent_message([new_text_part('what is your name?')])
            )
        elif text.startswith('slow'):
            await self._slow(updater, task.id, text)
        else:
            await self._answer(updater, text, start=True)

    async def _answer(self, updater: TaskUpdater, text: str, start: bool = False) -> None:
        if start:
            await updater.start_work(updater.new_agent_message([new_text_part('echoing...')]))
        await updater.add_artifact(
            [new_text_part(text)], artifact_id='echo', name='echo', last_chunk=True
        )
        await updater.complete(updater.new_agent_message([new_text_part('done')]))

    async def _slow(self, updater: TaskUpdater, task_id: str, text: str) -> None:
        await updater.start_work(updater.new_agent_message([new_text_part('working slowly')]))
        canceled = self._cancel_events.setdefault(task_id, asyncio.Event())
        try:
            await asyncio.wait_for(canceled.wait(), SLOW_TASK_SECONDS_MAX)
        except TimeoutError:
            await self._answer(updater, text)
        finally:
            self._cancel_events.pop(task_id, None)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        task_id = context.task_id or (task.id if task else '')
        context_id = task.context_id if task else (context.context_id or '')
        event = self._cancel_events.get(task_id)
        if event is not None:
            event.set()
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.cancel(updater.new_agent_message([new_text_part('canceled')]))


class MessageAgent(AgentExecutor):
    """Every message gets a direct Message back; no task is made."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = get_message_text(context.message) if context.message else ''
        await event_queue.enqueue_event(
            new_text_message(f'echo: {text}', context_id=context.context_id, role=Role.ROLE_AGENT)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


BINDINGS = {'jsonrpc': 'JSONRPC', 'rest': 'HTTP+JSON'}
"""`--binding` -> the card's protocolBinding."""


def build_card(kind: str, base_url: str, binding: str = 'jsonrpc', extended: bool = False) -> AgentCard:
    name = 'Task Agent' if kind == 'task' else 'Message Agent'
    skill = AgentSkill(
        id='echo',
        name='Echo',
        description='Echoes text back' if kind == 'message' else 'Echo, ask, slow and fail tasks',
        tags=['echo', 'test'],
        examples=['hello', 'ask', 'slow', 'fail'] if kind == 'task' else ['hello'],
    )
    return AgentCard(
        name=name,
        description=f'superx e2e test agent ({kind})',
        version='0.0.1',
        supported_interfaces=[
            AgentInterface(url=base_url, protocol_binding=BINDINGS[binding], protocol_version='1.0'),
            AgentInterface(url=base_url, protocol_binding=BINDINGS[binding], protocol_version='0.3'),
        ],
        capabilities=AgentCapabilities(
            streaming=True, push_notifications=False, extended_agent_card=extended
        ),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[skill],
    )


def extended_card_for(card: AgentCard, token: str):
    """The extended card (the public one plus the skill `vip`) and the modifier that keeps
    `vip` only for the right bearer."""

    async def modifier(extended: AgentCard, context) -> AgentCard:
        headers = {k.lower(): v for k, v in (context.state.get('headers') or {}).items()}
        out = AgentCard()
        out.CopyFrom(extended)
        if headers.get('authorization') != f'Bearer {token}':
            del out.skills[len(card.skills):]
        return out

    extended = AgentCard()
    extended.CopyFrom(card)
    extended.skills.append(
        AgentSkill(id='vip', name='VIP', description='Only for the token holder', tags=['vip'])
    )
    return extended, modifier


def build_app(kind: str, port: int, binding: str = 'jsonrpc', extended_token: str = '') -> Starlette:
    card = build_card(kind, f'http://127.0.0.1:{port}/', binding, extended=bool(extended_token))
    executor = TaskAgent() if kind == 'task' else MessageAgent()
    extended, modifier = extended_card_for(card, extended_token) if extended_token else (None, None)
    handler = DefaultRequestHandler(
        executor,
        InMemoryTaskStore(),
        card,
        extended_agent_card=extended,
        extended_card_modifier=modifier,
    )
    routes = create_agent_card_routes(card, cache_control='public, max-age=60')
    if binding == 'rest':
        routes += create_rest_routes(handler, enable_v0_3_compat=True)
    else:
        routes += create_jsonrpc_routes(handler, '/', enable_v0_3_compat=True)
    return Starlette(routes=routes)


async def serve(kind: str, port: int, binding: str = 'jsonrpc', extended_token: str = '') -> None:
    import socket

    # Bind first so that `--port 0` knows its port before the card (which names it) is built.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(kind, port, binding, extended_token), log_level='warning', access_log=False, lifespan='off'
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()  # raises the startup error
            raise SystemExit('server stopped before it started')
        await asyncio.sleep(0.01)
    print(f'READY {port}', flush=True)
    await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--kind', choices=['task', 'message'], default='task')
    parser.add_argument('--extended-token', default='', help='offer the extended card')
    parser.add_argument('--binding', choices=sorted(BINDINGS), default='jsonrpc')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(args.kind, args.port, args.binding, args.extended_token))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
