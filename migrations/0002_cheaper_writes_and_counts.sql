-- Cheaper archive writes, and ListTasks' totalSize without counting the table.
--
-- Indexes ascending: the archiver inserts in increasing seq, so each insert lands on the
-- rightmost leaf (Postgres' fast path, full pages) instead of splitting the leftmost one;
-- ListTasks reads them backwards for its newest-first order.
DROP INDEX archived_tasks_order;
DROP INDEX archived_tasks_agent;
DROP INDEX archived_tasks_context;
DROP INDEX archived_tasks_state;
CREATE INDEX archived_tasks_order ON archived_tasks (seq, task_id);
CREATE INDEX archived_tasks_agent ON archived_tasks (agent_id, seq, task_id);
CREATE INDEX archived_tasks_context ON archived_tasks (context_id, seq, task_id);
-- Nearly every archived task completed: a ListTasks for completed ones reads the order index
-- and skips the few others; the rarer states have their own (small) index. Queries name the
-- state as a literal so that the planner can use it.
CREATE INDEX archived_tasks_state ON archived_tasks (state, seq, task_id)
    WHERE state <> 'TASK_STATE_COMPLETED';
-- archived_tasks_archived_at stays: retention deletes by it (archived_at only grows, so its
-- inserts land on the rightmost leaf too; seq order would not do, a new cluster on an old
-- database starts its seqs again).

-- How many rows the archive holds per agent and state, kept in the same transaction as each
-- insert and delete (so exact, and consistent with the table under any snapshot). Each
-- concurrent writer adds to its own `slot` row, so writers never wait on each other; a count
-- is the sum over slots. Slot -1 is retention's. A task's agent and state never change once
-- it is archived (it is terminal), so an update of a row leaves the counts alone.
CREATE TABLE archived_task_counts (
    agent_id text     NOT NULL,
    state    text     NOT NULL,
    slot     smallint NOT NULL,
    n        bigint   NOT NULL,
    PRIMARY KEY (agent_id, state, slot)
);
INSERT INTO archived_task_counts (agent_id, state, slot, n)
SELECT agent_id, state, 0, count(*) FROM archived_tasks GROUP BY agent_id, state;
