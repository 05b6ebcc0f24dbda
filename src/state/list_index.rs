//! What ListTasks reads besides the tasks: each agent's and each context's tasks in update
//! order, and how many tasks each owner, agent and state have (in memory, and of those,
//! archived). Derived: kept by apply at every change of a task, rebuilt on restore, never in
//! a snapshot. With it a page costs its own tasks and `totalSize` a lookup, not a walk of
//! every task in memory.

use imbl::{HashMap, OrdMap as BTreeMap};

use super::tables::TaskEntry;
use crate::a2a::TaskState;

/// Tasks by update sequence, newest last.
pub type Order = BTreeMap<u64, String>;

/// Task counts per state, and their sum last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts([usize; TaskState::ALL.len() + 1]);

const TOTAL: usize = TaskState::ALL.len();

impl StateCounts {
    pub fn get(&self, state: Option<TaskState>) -> usize {
        self.0[state.map_or(TOTAL, slot)]
    }

    fn add(&mut self, state: TaskState, delta: isize) {
        for i in [slot(state), TOTAL] {
            self.0[i] = self.0[i].checked_add_signed(delta).expect("a task count never goes below zero");
        }
    }

    fn is_empty(&self) -> bool {
        self.0[TOTAL] == 0
    }
}

fn slot(state: TaskState) -> usize {
    // Declaration order is ALL's order, so the discriminant is the index.
    debug_assert_eq!(TaskState::ALL[state as usize], state);
    state as usize
}

/// Counts at every level a query can ask for without walking: all tasks, an agent's, an
/// owner's, and an owner's of one agent.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    all: StateCounts,
    agents: HashMap<String, StateCounts>,
    owners: HashMap<String, (StateCounts, HashMap<String, StateCounts>)>,
}

impl Counts {
    pub fn get(&self, owner: Option<&str>, agent: Option<&str>, state: Option<TaskState>) -> usize {
        let counts = match (owner, agent) {
            (None, None) => Some(&self.all),
            (None, Some(a)) => self.agents.get(a),
            (Some(o), None) => self.owners.get(o).map(|(c, _)| c),
            (Some(o), Some(a)) => self.owners.get(o).and_then(|(_, by_agent)| by_agent.get(a)),
        };
        counts.map_or(0, |c| c.get(state))
    }

    fn add(&mut self, e: &TaskEntry, state: TaskState, delta: isize) {
        self.all.add(state, delta);
        bump(&mut self.agents, &e.agent_id, state, delta);
        let Some(owner) = &e.owner else { return };
        if !self.owners.contains_key(owner) {
            self.owners.insert(owner.clone(), Default::default());
        }
        let level = self.owners.get_mut(owner).expect("inserted above");
        level.0.add(state, delta);
        bump(&mut level.1, &e.agent_id, state, delta);
        if level.0.is_empty() {
            self.owners.remove(owner);
        }
    }
}

/// Adds `delta` to `key`'s counts, dropping the key when none are left.
fn bump(map: &mut HashMap<String, StateCounts>, key: &str, state: TaskState, delta: isize) {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), StateCounts::default());
    }
    let counts = map.get_mut(key).expect("inserted above");
    counts.add(state, delta);
    if counts.is_empty() {
        map.remove(key);
    }
}

#[derive(Clone, Debug, Default)]
pub struct ListIndex {
    by_agent: HashMap<String, Order>,
    by_context: HashMap<String, Order>,
    /// Every task in memory.
    pub in_memory: Counts,
    /// The tasks in memory the archive holds too.
    pub archived: Counts,
}

impl ListIndex {
    /// A task entered memory (`archived`: already held by the archive, on restore).
    pub fn add(&mut self, e: &TaskEntry, archived: bool) {
        insert(&mut self.by_agent, &e.agent_id, e.seq, &e.task.id);
        insert(&mut self.by_context, &e.task.context_id, e.seq, &e.task.id);
        self.in_memory.add(e, e.task.status.state, 1);
        if archived {
            self.archived.add(e, e.task.status.state, 1);
        }
    }

    /// A task left memory.
    pub fn remove(&mut self, e: &TaskEntry, archived: bool) {
        remove(&mut self.by_agent, &e.agent_id, e.seq);
        remove(&mut self.by_context, &e.task.context_id, e.seq);
        self.in_memory.add(e, e.task.status.state, -1);
        if archived {
            self.archived.add(e, e.task.status.state, -1);
        }
    }

    /// A task changed: it was at `old_seq` in `old_state` and `old_context` (an agent's new
    /// snapshot of a task may name another context) and is now as `e` says. (Its agent and
    /// owner never change; an archived task never changes.)
    pub fn changed(&mut self, e: &TaskEntry, old_seq: u64, old_state: TaskState, old_context: &str) {
        remove(&mut self.by_agent, &e.agent_id, old_seq);
        insert(&mut self.by_agent, &e.agent_id, e.seq, &e.task.id);
        remove(&mut self.by_context, old_context, old_seq);
        insert(&mut self.by_context, &e.task.context_id, e.seq, &e.task.id);
        if old_state != e.task.status.state {
            self.in_memory.add(e, old_state, -1);
            self.in_memory.add(e, e.task.status.state, 1);
        }
    }

    /// A task in memory is held by the archive now.
    pub fn archived(&mut self, e: &TaskEntry) {
        self.archived.add(e, e.task.status.state, 1);
    }

    /// Entries in the agents' orders and in the contexts' orders: each the number of tasks
    /// in memory, or an order kept a task it should have let go.
    #[cfg(test)]
    pub fn entries(&self) -> (usize, usize) {
        let sum = |m: &HashMap<String, Order>| m.values().map(|o| o.len()).sum();
        (sum(&self.by_agent), sum(&self.by_context))
    }

    pub fn agent(&self, agent: &str) -> Option<&Order> {
        self.by_agent.get(agent)
    }

    pub fn context(&self, context: &str) -> Option<&Order> {
        self.by_context.get(context)
    }
}

fn insert(map: &mut HashMap<String, Order>, key: &str, seq: u64, id: &str) {
    match map.get_mut(key) {
        Some(order) => {
            order.insert(seq, id.to_owned());
        }
        None => {
            map.insert(key.to_owned(), BTreeMap::unit(seq, id.to_owned()));
        }
    }
}

fn remove(map: &mut HashMap<String, Order>, key: &str, seq: u64) {
    if let Some(order) = map.get_mut(key) {
        order.remove(&seq);
        if order.is_empty() {
            map.remove(key);
        }
    }
}
