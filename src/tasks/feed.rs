//! The node-wide feed of applied task changes, for the dashboard (`http::ui`).
//!
//! Every applied `TaskEvent` of this node goes into one bounded broadcast buffer (beside the
//! per-task channels of [`super::Subscriptions`], in the same apply order). A receiver that
//! falls more than `ui.feed_buffer_events` behind is told it lagged and starts over from a
//! fresh list of tasks, so a slow dashboard never holds back apply or grows memory. At most
//! `ui.feed_clients_max` receivers exist at once; sending to none costs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

use crate::state::TaskEvent;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the task feed already has the most clients allowed on this node ({0})")]
pub struct FeedFull(pub usize);

pub struct Feed {
    tx: broadcast::Sender<Arc<TaskEvent>>,
    clients: Arc<AtomicUsize>,
    clients_max: usize,
}

/// One client's place in the feed; frees its slot when dropped.
pub struct FeedReceiver {
    pub events: broadcast::Receiver<Arc<TaskEvent>>,
    _slot: Slot,
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Feed {
    pub fn new(buffer_events: usize, clients_max: usize) -> Feed {
        let (tx, _) = broadcast::channel(buffer_events.max(1));
        Feed { tx, clients: Arc::new(AtomicUsize::new(0)), clients_max }
    }

    /// A receiver of every change applied from now on, or [`FeedFull`].
    pub fn subscribe(&self) -> Result<FeedReceiver, FeedFull> {
        let taken =
            self.clients.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.clients_max).then_some(n + 1));
        if taken.is_err() {
            return Err(FeedFull(self.clients_max));
        }
        Ok(FeedReceiver { events: self.tx.subscribe(), _slot: Slot(self.clients.clone()) })
    }

    /// Hands an applied event to the feed's receivers, if any. Never blocks.
    pub(super) fn publish(&self, event: &Arc<TaskEvent>) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event.clone());
        }
    }

    /// Receivers on this node.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use tokio::sync::broadcast::error::TryRecvError;

    fn event(seq: u64) -> Arc<TaskEvent> {
        Arc::new(TaskEvent {
            task_id: format!("t{seq}"),
            context_id: "c".into(),
            agent_id: "a".into(),
            at_ms: seq,
            seq,
            events: 1,
            state: TaskState::Working,
            changes: vec![],
        })
    }

    #[test]
    fn clients_are_limited_and_their_slots_freed() {
        let feed = Feed::new(4, 2);
        let a = feed.subscribe().unwrap();
        let _b = feed.subscribe().unwrap();
        assert_eq!(feed.subscribe().err(), Some(FeedFull(2)));
        drop(a);
        assert_eq!(feed.clients(), 1);
        assert!(feed.subscribe().is_ok());
    }

    #[test]
    fn every_receiver_gets_every_event_in_order_and_a_slow_one_lags() {
        let feed = Feed::new(4, 8);
        feed.publish(&event(0)); // nobody listens: dropped
        let mut fast = feed.subscribe().unwrap();
        let mut slow = feed.subscribe().unwrap();
        for seq in 1..=10 {
            feed.publish(&event(seq));
            assert_eq!(fast.events.try_recv().unwrap().seq, seq);
        }
        assert_eq!(fast.events.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(slow.events.try_recv().unwrap_err(), TryRecvError::Lagged(6));
        assert_eq!(slow.events.try_recv().unwrap().seq, 7, "goes on from the oldest kept");
    }
}
