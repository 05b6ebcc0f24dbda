//! The recent events of recent tasks, kept on every node so that a stream resumed with
//! `Last-Event-ID` gets what its client missed (docs/resumable-streams.md). Bounded three
//! ways: tasks, events per task, and bytes over all (artifact chunks can be large); the
//! oldest task's history is dropped first. Lives under the subscriptions' lock: every
//! applied event goes through it, in apply order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::state::{TaskChange, TaskEvent};

/// How much history is kept.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Tasks with a history (0: none is kept, replay is off).
    pub tasks_max: usize,
    /// Events per task.
    pub events_max: usize,
    /// Estimated bytes of all kept events.
    pub bytes_max: usize,
}

/// One task's kept events and their estimated size.
#[derive(Default)]
struct Kept {
    events: VecDeque<(Arc<TaskEvent>, usize)>,
    bytes: usize,
}

pub struct History {
    limits: HistoryLimits,
    by_task: HashMap<String, Kept>,
    /// The tasks in `by_task`, oldest first: the order their histories are dropped in.
    order: VecDeque<String>,
    bytes: usize,
}

impl History {
    pub fn new(limits: HistoryLimits) -> Self {
        History { limits, by_task: HashMap::new(), order: VecDeque::new(), bytes: 0 }
    }

    /// Keeps an applied event, within the limits. A task created finished keeps none: there
    /// is nothing to resume.
    pub fn remember(&mut self, event: &Arc<TaskEvent>) {
        let limits = self.limits;
        if limits.tasks_max == 0 || limits.events_max == 0 {
            return;
        }
        if !self.by_task.contains_key(&event.task_id) {
            if event.events == 1 && event.state.is_terminal() {
                return;
            }
            if self.by_task.len() >= limits.tasks_max {
                self.drop_oldest();
            }
            self.order.push_back(event.task_id.clone());
            self.by_task.insert(event.task_id.clone(), Kept::default());
        }
        let size = estimated_bytes(event);
        let kept = self.by_task.get_mut(&event.task_id).expect("inserted above");
        if kept.events.len() >= limits.events_max
            && let Some((_, dropped)) = kept.events.pop_front()
        {
            kept.bytes -= dropped;
            self.bytes -= dropped;
        }
        kept.events.push_back((event.clone(), size));
        kept.bytes += size;
        self.bytes += size;
        while self.bytes > limits.bytes_max && !self.order.is_empty() {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(oldest) = self.order.pop_front()
            && let Some(kept) = self.by_task.remove(&oldest)
        {
            self.bytes -= kept.bytes;
        }
    }

    /// The kept events of a task that hold its event numbers `after + 1 ..= upto`, oldest
    /// first (the first and last may hold more), or `None` when some of them are gone.
    pub fn replay(&self, task_id: &str, after: u64, upto: u64) -> Option<Vec<Arc<TaskEvent>>> {
        if after >= upto {
            return Some(vec![]);
        }
        let kept = &self.by_task.get(task_id)?.events;
        let first_kept = kept.front().map_or(u64::MAX, |(e, _)| e.events + 1 - e.changes.len() as u64);
        let last_kept = kept.back().map_or(0, |(e, _)| e.events);
        if first_kept > after + 1 || last_kept < upto {
            return None;
        }
        Some(kept.iter().filter(|(e, _)| e.events > after).map(|(e, _)| e.clone()).collect())
    }

    pub fn tasks(&self) -> usize {
        self.by_task.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Bytes an event holds, roughly: its JSON's text and a fixed cost per value and event.
fn estimated_bytes(event: &TaskEvent) -> usize {
    const EVENT: usize = 128;
    let changes: usize = event
        .changes
        .iter()
        .map(|change| match change {
            TaskChange::Created => 0,
            TaskChange::Status { status, metadata } => {
                status.message.as_ref().map_or(0, |m| json_bytes(&m.0))
                    + metadata.as_ref().map_or(0, |m| json_bytes(&m.0))
            }
            TaskChange::Artifact { artifact, .. } => {
                artifact.parts.iter().map(|p| json_bytes(&p.0)).sum::<usize>() + json_bytes(&artifact.rest.0)
            }
        })
        .sum();
    EVENT + event.task_id.len() + event.context_id.len() + changes
}

fn json_bytes(value: &Value) -> usize {
    const NODE: usize = 16;
    NODE + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;

    /// An event of one status change (event number `n`) carrying `text`.
    fn change(task: &str, n: u64, state: TaskState, text: &str) -> Arc<TaskEvent> {
        let message = Some(crate::codec::Json(serde_json::json!({"text": text})));
        let status = crate::state::TaskStatus { state, message, timestamp: None };
        let changes = vec![TaskChange::Status { status, metadata: None }];
        Arc::new(TaskEvent {
            task_id: task.into(),
            context_id: "c".into(),
            agent_id: "a".into(),
            at_ms: 0,
            seq: n,
            events: n,
            state,
            changes,
        })
    }

    const WIDE: HistoryLimits = HistoryLimits { tasks_max: 16, events_max: 16, bytes_max: 1 << 20 };

    #[test]
    fn replays_what_came_after_an_event_or_says_it_is_gone() {
        let mut h = History::new(HistoryLimits { tasks_max: 2, events_max: 4, ..WIDE });
        for n in 1..=6 {
            h.remember(&change("t", n, TaskState::Working, "x"));
        }
        let numbers =
            |h: &History, after| h.replay("t", after, 6).map(|v| v.iter().map(|e| e.events).collect::<Vec<_>>());
        assert_eq!(numbers(&h, 3), Some(vec![4, 5, 6]), "events 3..6 are kept (4 per task)");
        assert_eq!(numbers(&h, 2), Some(vec![3, 4, 5, 6]));
        assert_eq!(numbers(&h, 1), None, "event 2 is gone");
        assert_eq!(numbers(&h, 6), Some(vec![]), "nothing was missed");
        assert_eq!(h.replay("t", 3, 7), None, "an event not kept (yet) is not replayed");
        assert_eq!(h.replay("never-seen", 0, 1), None);
        // The oldest task's history goes first.
        h.remember(&change("u", 2, TaskState::Working, "x"));
        h.remember(&change("v", 2, TaskState::Working, "x"));
        assert_eq!(h.tasks(), 2);
        assert_eq!(numbers(&h, 5), None, "t's history was dropped");
        assert!(h.replay("u", 1, 2).is_some_and(|v| v.len() == 1));
        // A task created terminal keeps none.
        let mut h = History::new(WIDE);
        h.remember(&change("done", 1, TaskState::Completed, "x"));
        assert_eq!(h.tasks(), 0);
    }

    #[test]
    fn large_events_are_bounded_by_bytes() {
        let big = "x".repeat(10_000);
        let mut h = History::new(HistoryLimits { bytes_max: 35_000, ..WIDE });
        for (i, task) in ["a", "b", "c", "d"].into_iter().enumerate() {
            h.remember(&change(task, 2 + i as u64, TaskState::Working, &big));
            assert!(h.bytes() <= 35_000, "{} bytes kept", h.bytes());
        }
        assert_eq!(h.tasks(), 3, "the oldest task went to make room");
        assert!(h.replay("a", 1, 2).is_none() && h.replay("d", 4, 5).is_some());
        // An event larger than the whole budget is not kept at all.
        let mut h = History::new(HistoryLimits { bytes_max: 1_000, ..WIDE });
        h.remember(&change("a", 2, TaskState::Working, &big));
        assert_eq!((h.tasks(), h.bytes()), (0, 0));
    }
}
