"""`historyLength` (A2A §3.2.4: absent = the server's default, here all; 0 = no history;
n = the n most recent messages) on GetTask and in SendMessage's configuration, on a task that
went through input-required, for 1.0 and 0.3 clients on both bindings."""

from __future__ import annotations

import pytest

from a2a.types import GetTaskRequest, Role, SendMessageConfiguration, SendMessageRequest, TaskState

from e2e_util import VERSIONS, message_text, run, sdk_client, send_for_task, user_message


@pytest.mark.parametrize('version', VERSIONS)
def test_get_task_history_length_after_input_required(e2e, version, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base('tasks'), version, binding=client_binding) as client:
            asked = await send_for_task(client, user_message('ask for a name'))
            assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            done = await send_for_task(client, user_message('Grace', task_id=asked.id))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED

            full = await client.get_task(GetTaskRequest(id=asked.id))
            assert len(full.history) >= 3, full.history
            for n in (1, 2):
                got = await client.get_task(GetTaskRequest(id=asked.id, history_length=n))
                assert len(got.history) == n, (n, got.history)
                ids = [m.message_id for m in got.history]
                assert ids == [m.message_id for m in full.history][-n:], 'not the most recent'
            if version == '1.0' or not e2e.direct:  # the SDK's 0.3 tasks/get ignores 0
                none = await client.get_task(GetTaskRequest(id=asked.id, history_length=0))
                assert len(none.history) == 0, none.history

    run(body())


@pytest.mark.parametrize('version', VERSIONS)
def test_send_message_history_length_on_a_follow_up(e2e, version, client_binding):
    async def body():
        async with await sdk_client(e2e.card_base('tasks'), version, binding=client_binding) as client:
            asked = await send_for_task(client, user_message('ask again'))
            request = SendMessageRequest(
                message=user_message('Linus', task_id=asked.id),
                configuration=SendMessageConfiguration(history_length=1),
            )
            events = [e async for e in client.send_message(request)]
            assert len(events) == 1 and events[0].HasField('task'), events
            task = events[0].task
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            assert len(task.history) <= 1, task.history
            if task.history:
                assert task.history[0].role in (Role.ROLE_USER, Role.ROLE_AGENT)
                assert message_text(task.history[0])

    run(body())
