//! Per-task fan-out of committed events.
//!
//! The replica publishes every applied `TaskEvent` here, in apply order, on every node; a
//! subscriber (SubscribeToTask on any node) gets the events of its task from then on. Each
//! task has one bounded broadcast buffer: a subscriber that falls more than
//! `subscriber_buffer_events` behind is told it lagged (and the stream is closed with an error)
//! instead of slowing the others or growing memory. The channel of a task is dropped when the
//! task turns terminal (subscribers drain what is buffered, then see the end) or when its last
//! subscriber is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::state::TaskEvent;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("task {0} already has the most subscribers allowed ({1})")]
    TooMany(String, usize),
}

pub struct Subscriptions {
    by_task: Mutex<HashMap<String, broadcast::Sender<Arc<TaskEvent>>>>,
    /// Events a subscriber may be behind before it is cut off.
    subscriber_buffer_events: usize,
    /// Subscribers of one task on this node.
    task_subscribers_max: usize,
}

impl Subscriptions {
    pub fn new(subscriber_buffer_events: usize, task_subscribers_max: usize) -> Self {
        Subscriptions { by_task: Mutex::new(HashMap::new()), subscriber_buffer_events, task_subscribers_max }
    }

    /// Starts following a task. Take the task's snapshot after this call and skip events
    /// whose `seq` is at or below the snapshot's: then nothing is missed or repeated.
    pub fn subscribe(&self, task_id: &str) -> Result<broadcast::Receiver<Arc<TaskEvent>>, SubscribeError> {
        let mut map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(task_id) {
            if tx.receiver_count() >= self.task_subscribers_max {
                return Err(SubscribeError::TooMany(task_id.to_owned(), self.task_subscribers_max));
            }
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.subscriber_buffer_events);
        map.insert(task_id.to_owned(), tx);
        Ok(rx)
    }

    /// Hands an applied event to the task's subscribers, if it has any. Never blocks.
    pub fn publish(&self, event: TaskEvent) {
        let mut map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = map.get(&event.task_id) else {
            return;
        };
        if tx.receiver_count() == 0 {
            map.remove(&event.task_id);
            return;
        }
        let task_id = event.task_id.clone();
        let terminal = event.state.is_terminal();
        let _ = tx.send(Arc::new(event));
        if terminal {
            map.remove(&task_id);
        }
    }

    /// Subscribers on this node, over every task.
    pub fn subscribers(&self) -> usize {
        self.by_task.lock().unwrap_or_else(|p| p.into_inner()).values().map(|tx| tx.receiver_count()).sum()
    }

    /// Tasks with a live channel on this node.
    pub fn tasks_followed(&self) -> usize {
        self.by_task.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};

    fn event(task: &str, seq: u64, state: TaskState) -> TaskEvent {
        TaskEvent { task_id: task.into(), context_id: "c".into(), seq, state, changes: vec![] }
    }

    #[test]
    fn subscribers_get_events_in_order_and_the_end_after_terminal() {
        let subs = Subscriptions::new(8, 10);
        let mut a = subs.subscribe("t").unwrap();
        let mut b = subs.subscribe("t").unwrap();
        subs.publish(event("other", 1, TaskState::Working));
        subs.publish(event("t", 2, TaskState::Working));
        subs.publish(event("t", 3, TaskState::Completed));
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.try_recv().unwrap().seq, 2);
            assert_eq!(rx.try_recv().unwrap().seq, 3);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        }
        assert_eq!(subs.tasks_followed(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_holding_back_a_fast_one() {
        let subs = Subscriptions::new(4, 10);
        let mut slow = subs.subscribe("t").unwrap();
        let mut fast = subs.subscribe("t").unwrap();
        for seq in 1..=10 {
            subs.publish(event("t", seq, TaskState::Working));
            assert_eq!(fast.recv().await.unwrap().seq, seq);
        }
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(6))));
    }

    #[test]
    fn subscriber_limit_and_cleanup() {
        let subs = Subscriptions::new(4, 2);
        let a = subs.subscribe("t").unwrap();
        let _b = subs.subscribe("t").unwrap();
        assert_eq!(subs.subscribe("t").unwrap_err(), SubscribeError::TooMany("t".into(), 2));
        assert_eq!(subs.subscribers(), 2);
        drop(a);
        assert_eq!(subs.subscribers(), 1);
        assert!(subs.subscribe("t").is_ok());
        let subs = Subscriptions::new(4, 2);
        drop(subs.subscribe("t").unwrap());
        subs.publish(event("t", 1, TaskState::Working));
        assert_eq!(subs.tasks_followed(), 0, "a channel nobody listens to is dropped");
    }
}
