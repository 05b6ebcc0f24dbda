-- The archive of terminal tasks. superx's leader writes each task here once it reached a
-- terminal state (in idempotent batches), commits that through raft, and only then may the
-- task leave the nodes' memory. Every node reads tasks back from here when they are no
-- longer in memory.
CREATE TABLE archived_tasks (
    task_id     text        PRIMARY KEY,
    -- The task's position in the cluster's update order (its final one: terminal tasks
    -- never change). ListTasks orders by (seq, task_id) descending, in memory and here.
    seq         bigint      NOT NULL,
    agent_id    text        NOT NULL,
    context_id  text        NOT NULL,
    -- The A2A 1.0 TaskState name (TASK_STATE_COMPLETED, ...).
    state       text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    -- The format of `task`: 1 = the A2A 1.0 Task JSON with its whole history and artifacts.
    -- A reader refuses rows of a version it does not know.
    row_version smallint    NOT NULL,
    task        jsonb       NOT NULL
);

-- ListTasks: newest first, with and without each filter, resumed from a (seq, task_id) cursor.
CREATE INDEX archived_tasks_order ON archived_tasks (seq DESC, task_id DESC);
CREATE INDEX archived_tasks_agent ON archived_tasks (agent_id, seq DESC, task_id DESC);
CREATE INDEX archived_tasks_context ON archived_tasks (context_id, seq DESC, task_id DESC);
CREATE INDEX archived_tasks_state ON archived_tasks (state, seq DESC, task_id DESC);
-- Retention: the oldest rows are deleted first, in bounded batches.
CREATE INDEX archived_tasks_archived_at ON archived_tasks (archived_at);
