-- Tasks belong to the caller that created them (auth on): the owner superx recorded with the
-- task (`key:<id>`, `jwt:<issuer>|<subject>`, `admin`), so reads of archived tasks are
-- filtered like reads of tasks in memory. NULL: created with auth off, or archived before
-- this column existed; such a task is shown to admins only when auth is on.
ALTER TABLE archived_tasks ADD COLUMN owner text;

-- A caller's ListTasks (and its totalSize): its own rows, newest first, from the cursor on.
-- Ascending like the other list indexes (see 0002), partial: rows without an owner are
-- never listed by owner.
CREATE INDEX archived_tasks_owner ON archived_tasks (owner, seq, task_id) WHERE owner IS NOT NULL;
