"""The official SDK's clients (A2A 1.0 and 0.3, over JSON-RPC and HTTP+JSON:
`client_binding`) against the agents on either binding (`task_agent`, `chat_agent`), through
the gateway's per-agent endpoints (or the agents themselves with SUPERX_E2E_DIRECT=1, where
a client binding the agent does not serve is skipped)."""

from __future__ import annotations

import pytest

from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Role,
    TaskState,
)
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from e2e_util import (
    VERSIONS,
    artifact_texts,
    message_text,
    run,
    sdk_client,
    send,
    send_for_task,
    user_message,
)


@pytest.mark.parametrize('version', VERSIONS)
def test_send_to_task_agent_completes_with_echo_artifact(e2e, version, task_agent, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base(task_agent), version, binding=client_binding) as client:
            task = await send_for_task(client, user_message('hello gateway world'))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.id and task.context_id
        assert artifact_texts(task) == {'echo': 'hello gateway world'}
        assert [a.name for a in task.artifacts] == ['echo']
        assert message_text(task.status.message) == 'done'
        assert task.status.message.role == Role.ROLE_AGENT
        assert task.history[0].role == Role.ROLE_USER
        assert message_text(task.history[0]) == 'hello gateway world'

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_send_to_message_agent_returns_a_message(e2e, version, chat_agent, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base(chat_agent), version, binding=client_binding) as client:
            events = await send(client, user_message('hi there'))
        assert len(events) == 1 and events[0].HasField('message'), events
        msg = events[0].message
        assert msg.role == Role.ROLE_AGENT
        assert message_text(msg) == 'echo: hi there'
        assert not msg.task_id

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_get_task_equals_send_result(e2e, version, task_agent, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base(task_agent), version, binding=client_binding) as client:
            sent = await send_for_task(client, user_message('remember me'))
            got = await client.get_task(GetTaskRequest(id=sent.id))
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id='no-such-task'))
        assert got.id == sent.id
        assert got.context_id == sent.context_id
        assert got.status.state == sent.status.state == TaskState.TASK_STATE_COMPLETED
        assert got.status.message.message_id == sent.status.message.message_id
        assert artifact_texts(got) == artifact_texts(sent) == {'echo': 'remember me'}
        assert [m.message_id for m in got.history] == [m.message_id for m in sent.history]

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_cancel_slow_task_then_cancel_again_is_not_cancelable(e2e, version, task_agent, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base(task_agent), version, binding=client_binding) as client:
            started = await send_for_task(
                client, user_message('slow please'), return_immediately=True
            )
            assert started.status.state in (
                TaskState.TASK_STATE_SUBMITTED,
                TaskState.TASK_STATE_WORKING,
            ), started
            canceled = await client.cancel_task(CancelTaskRequest(id=started.id))
            assert canceled.id == started.id
            assert canceled.status.state == TaskState.TASK_STATE_CANCELED
            got = await client.get_task(GetTaskRequest(id=started.id))
            assert got.status.state == TaskState.TASK_STATE_CANCELED
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(CancelTaskRequest(id=started.id))
            with pytest.raises(TaskNotFoundError):
                await client.cancel_task(CancelTaskRequest(id='no-such-task'))

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_multi_turn_input_required_then_completed(e2e, version, task_agent, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base(task_agent), version, binding=client_binding) as client:
            asked = await send_for_task(client, user_message('ask me something'))
            assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            assert message_text(asked.status.message) == 'what is your name?'
            assert not asked.artifacts

            # The follow-up names only the task; the context comes from the task.
            done = await send_for_task(client, user_message('Ada', task_id=asked.id))
            assert done.id == asked.id
            assert done.context_id == asked.context_id
            assert done.status.state == TaskState.TASK_STATE_COMPLETED
            assert artifact_texts(done) == {'echo': 'hello Ada'}
            user_texts = [message_text(m) for m in done.history if m.role == Role.ROLE_USER]
            assert user_texts == ['ask me something', 'Ada']

            with pytest.raises(UnsupportedOperationError):
                await send(client, user_message('again', task_id=asked.id))
            got = await client.get_task(GetTaskRequest(id=asked.id))
            assert got.status.state == TaskState.TASK_STATE_COMPLETED
            assert artifact_texts(got) == {'echo': 'hello Ada'}

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_streaming_send(e2e, version, task_agent, chat_agent, client_binding):
    """The cards say `streaming: true`, so a default SDK client streams."""

    async def body():
        async with await sdk_client(e2e.card_base(task_agent), version, streaming=True, binding=client_binding) as client:
            events = await send(client, user_message('stream me'))
        assert events, 'no events'
        assert events[0].HasField('task'), events[0]
        last = events[-1]
        if last.HasField('status_update'):
            assert last.status_update.status.state == TaskState.TASK_STATE_COMPLETED
            assert last.status_update.task_id == events[0].task.id
        else:
            assert last.HasField('task') and last.task.status.state == TaskState.TASK_STATE_COMPLETED
        texts = [
            ''.join(p.text for p in e.artifact_update.artifact.parts)
            for e in events
            if e.HasField('artifact_update')
        ]
        assert texts == ['stream me']
        async with await sdk_client(e2e.card_base(chat_agent), version, streaming=True, binding=client_binding) as client:
            events = await send(client, user_message('stream chat'))
        assert len(events) == 1 and events[0].HasField('message'), events
        assert message_text(events[0].message) == 'echo: stream chat'

    run(body())


def test_list_tasks_filters_and_pages(e2e, task_agent, client_binding):
    """ListTasks exists only in 1.0. Every task here shares one fresh context, so the
    results do not depend on what other tests stored."""

    async def body():
        async with await sdk_client(e2e.card_base(task_agent), '1.0', binding=client_binding) as client:
            first = await send_for_task(client, user_message('list one'))
            ctx = first.context_id
            failed = await send_for_task(client, user_message('fail', context_id=ctx))
            asked = await send_for_task(client, user_message('ask list', context_id=ctx))
            second = await send_for_task(client, user_message('list two', context_id=ctx))
            made = {first.id, failed.id, asked.id, second.id}
            assert len(made) == 4
            assert {t.context_id for t in (failed, asked, second)} == {ctx}

            everything = await client.list_tasks(ListTasksRequest(context_id=ctx))
            assert {t.id for t in everything.tasks} == made
            assert everything.total_size == 4
            assert everything.next_page_token == ''

            completed = await client.list_tasks(
                ListTasksRequest(context_id=ctx, status=TaskState.TASK_STATE_COMPLETED)
            )
            assert {t.id for t in completed.tasks} == {first.id, second.id}
            assert completed.total_size == 2
            only_failed = await client.list_tasks(
                ListTasksRequest(context_id=ctx, status=TaskState.TASK_STATE_FAILED)
            )
            assert [t.id for t in only_failed.tasks] == [failed.id]
            states = {t.id: t.status.state for t in everything.tasks}
            assert states[asked.id] == TaskState.TASK_STATE_INPUT_REQUIRED

            seen: list[str] = []
            token = ''
            for _ in range(10):
                page = await client.list_tasks(
                    ListTasksRequest(context_id=ctx, page_size=1, page_token=token)
                )
                assert len(page.tasks) == 1, page
                assert page.page_size == 1
                assert page.total_size == 4
                seen.append(page.tasks[0].id)
                token = page.next_page_token
                if not token:
                    break
            assert len(seen) == 4 and set(seen) == made, seen

    run(body())
