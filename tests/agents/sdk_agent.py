#!/usr/bin/env python3
"""A real A2A agent built on the official Python SDK (a2a-sdk 1.3.0), used as an
upstream for the superx end-to-end tests.

    python tests/agents/sdk_agent.py --port 0 --kind task     # "Task Agent"
    python tests/agents/sdk_agent.py --port 0 --kind message  # "Message Agent"
    python tests/agents/sdk_agent.py --port 0 --binding rest  # HTTP+JSON only
    python tests/agents/sdk_agent.py --port 0 --push          # sends push notifications

It serves JSON-RPC on `/` for A2A 1.0 and 0.3 (the SDK's compat layer) and its card on
`/.well-known/agent-card.json`. With `--binding rest` it serves the HTTP+JSON binding
instead, on the same root (1.0 routes such as `/message:send`, and the SDK's 0.3 routes under
`/v1/`), and its card lists only HTTP+JSON interfaces (1.0 and 0.3). Once it listens it prints `READY <port>` on stdout, so a
test can wait on that line instead of sleeping (`--port 0` picks a free port and the line
says which).

Behaviour of the task agent, by the text of the user message:
  * "fail"          -> FAILED
  * "slow..."       -> WORKING, then waits until canceled (CANCELED), at most 60 s (COMPLETED)
  * "long N"        -> once someone follows the task (a webhook registered for it, or a
                       SubscribeToTask stream open on it; at most 10 s), N WORKING updates
                       "step 1".."step N" spaced over time, the artifact "long", COMPLETED
                       "done": an answer that returns at once (returnImmediately) leaves
                       every later update to whoever follows the task
  * "ask..."        -> INPUT_REQUIRED ("what is your name?"); the follow-up message on the
                       same task completes it with the artifact "hello <text>"
  * anything else   -> WORKING, artifact "echo" with the text, COMPLETED
The message agent answers every message with a Message "echo: <text>" and makes no task.

With `--extended-token TOKEN` the agent offers the extended card (1.0
`capabilities.extendedAgentCard`): `GetExtendedAgentCard` answers the card plus a skill `vip`
when the request's `Authorization` is `Bearer TOKEN`, and the public card's skills otherwise,
so a test sees which credential reached the agent.

With `--push` the card says `capabilities.pushNotifications` and the agent keeps webhook
configs (the SDK's in-memory store) and POSTs every event of a task to them (the SDK's
`BasePushNotificationSender`: a 1.0 StreamResponse with `X-A2A-Notification-Token`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import httpx
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
from a2a.server.tasks import (
    BasePushNotificationSender,
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    TaskUpdater,
)
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

FOLLOWER_SECONDS_MAX = 10.0
"""A `long` task waits this long at most for someone to follow it, then goes on anyway."""

LONG_STEP_SECONDS = 0.1
"""The pause between the steps of a `long` task: its updates come over time."""


class Followed:
    """Per task, set once someone follows it: a webhook registered for it, or a stream
    opened on it (FollowedHandler). A `long` task waits for it, so none of its updates
    happens before there is somewhere for it to go."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, task_id: str) -> asyncio.Event:
        return self._events.setdefault(task_id, asyncio.Event())

    def forget(self, task_id: str) -> None:
        self._events.pop(task_id, None)


class FollowedHandler(DefaultRequestHandler):
    """The SDK's handler, telling `Followed` when a task gets a webhook or a subscriber."""

    def __init__(self, *args, followed: Followed, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._followed = followed

    async def on_create_task_push_notification_config(self, params, context):
        stored = await super().on_create_task_push_notification_config(params, context)
        self._followed.event(params.task_id).set()
        return stored

    async def on_subscribe_to_task(self, params, context):
        followed = False
        async for event in super().on_subscribe_to_task(params, context):
            yield event
            # After the first event (the task): the subscriber is attached by now.
            if not followed:
                self._followed.event(params.id).set()
                followed = True


class TaskAgent(AgentExecutor):
    """Every message makes (or continues) a task."""

    def __init__(self, followed: Followed | None = None) -> None:
        # task id -> event set by cancel(); a slow task waits on it.
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._followed = followed or Followed()

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
        elif text.startswith('long'):
            await self._long(updater, task.id, text)
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

    async def _long(self, updater: TaskUpdater, task_id: str, text: str) -> None:
        steps = int(text.split()[1]) if len(text.split()) > 1 else 3
        try:
            await asyncio.wait_for(self._followed.event(task_id).wait(), FOLLOWER_SECONDS_MAX)
        except TimeoutError:
            pass
        finally:
            self._followed.forget(task_id)
        for step in range(1, steps + 1):
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, updater.new_agent_message([new_text_part(f'step {step}')])
            )
            await asyncio.sleep(LONG_STEP_SECONDS)
        await updater.add_artifact([new_text_part(text)], artifact_id='long', name='long', last_chunk=True)
        await updater.complete(updater.new_agent_message([new_text_part('done')]))

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


def build_card(
    kind: str, base_url: str, binding: str = 'jsonrpc', extended: bool = False, push: bool = False
) -> AgentCard:
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
            streaming=True, push_notifications=push, extended_agent_card=extended
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


def build_app(
    kind: str, port: int, binding: str = 'jsonrpc', extended_token: str = '', push: bool = False
) -> Starlette:
    card = build_card(kind, f'http://127.0.0.1:{port}/', binding, extended=bool(extended_token), push=push)
    followed = Followed()
    executor = TaskAgent(followed) if kind == 'task' else MessageAgent()
    extended, modifier = extended_card_for(card, extended_token) if extended_token else (None, None)
    push_store = InMemoryPushNotificationConfigStore() if push else None
    push_sender = BasePushNotificationSender(httpx.AsyncClient(timeout=10.0), push_store) if push else None
    handler = FollowedHandler(
        executor,
        InMemoryTaskStore(),
        card,
        push_config_store=push_store,
        push_sender=push_sender,
        extended_agent_card=extended,
        extended_card_modifier=modifier,
        followed=followed,
    )
    routes = create_agent_card_routes(card, cache_control='public, max-age=60')
    if binding == 'rest':
        routes += create_rest_routes(handler, enable_v0_3_compat=True)
    else:
        routes += create_jsonrpc_routes(handler, '/', enable_v0_3_compat=True)
    return Starlette(routes=routes)


async def serve(
    kind: str, port: int, binding: str = 'jsonrpc', extended_token: str = '', push: bool = False
) -> None:
    import socket

    # Bind first so that `--port 0` knows its port before the card (which names it) is built.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(kind, port, binding, extended_token, push), log_level='warning', access_log=False, lifespan='off'
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
    parser.add_argument('--push', action='store_true', help='send push notifications')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(args.kind, args.port, args.binding, args.extended_token, args.push))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
