//! Per-task fan-out of committed events.
//!
//! The replica publishes every applied `TaskEvent` here, in apply order, on every node; a
//! subscriber (SubscribeToTask on any node) gets the events of its task from then on. Each
//! task has one bounded broadcast buffer: a subscriber that falls more than
//! `subscriber_buffer_events` behind is told it lagged (and the stream is closed with an error)
//! instead of slowing the others or growing memory. The channel of a task is dropped when the
//! task turns terminal (subscribers drain what is buffered, then see the end) or when its last
//! subscriber is gone: at its next event, or, for a task that has no more events (finished,
//! or gone from memory), at the next sweep, which runs whenever the map doubled since the
//! last one. So the map holds at most twice the tasks with live subscribers, plus
//! `SWEEP_FLOOR`.
//!
//! Beside the channels, the recent events of the latest `resume_history_tasks_max` tasks
//! (up to `resume_history_events_max` each, the oldest task's dropped first) are kept for
//! streams that resume with `Last-Event-ID`. Every node publishes the same events in the same
//! order, so every node can replay them; a node that installed a snapshot has only what it
//! applied since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::feed::Feed;
use super::history::{History, HistoryLimits};
use crate::state::TaskEvent;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("task {0} already has the most subscribers allowed ({1})")]
    TooMany(String, usize),
}

/// The map is swept of channels nobody listens to once it holds this many (or twice as many
/// as after the last sweep).
const SWEEP_FLOOR: usize = 64;

struct Channels {
    by_task: HashMap<String, broadcast::Sender<Arc<TaskEvent>>>,
    sweep_at: usize,
    /// Recent events of recent tasks, for replay.
    history: History,
}

pub struct Subscriptions {
    channels: Mutex<Channels>,
    /// Events a subscriber may be behind before it is cut off.
    subscriber_buffer_events: usize,
    /// Subscribers of one task on this node.
    task_subscribers_max: usize,
    /// Counts applied task events, so that work waiting for one (the push deliverer's
    /// supervisor) wakes at once instead of polling.
    applied: tokio::sync::watch::Sender<u64>,
    /// Every applied event, for the dashboard's feed.
    feed: Feed,
}

/// The feed's buffer and clients when [`Subscriptions::with_feed`] is not called (tests).
const FEED_DEFAULT: (usize, usize) = (64, 4);

impl Subscriptions {
    pub fn new(subscriber_buffer_events: usize, task_subscribers_max: usize, history_limits: HistoryLimits) -> Self {
        let channels =
            Channels { by_task: HashMap::new(), sweep_at: SWEEP_FLOOR, history: History::new(history_limits) };
        let (applied, _) = tokio::sync::watch::channel(0);
        let feed = Feed::new(FEED_DEFAULT.0, FEED_DEFAULT.1);
        Subscriptions { channels: Mutex::new(channels), subscriber_buffer_events, task_subscribers_max, applied, feed }
    }

    /// The same, with the node-wide feed of applied events sized as configured.
    pub fn with_feed(self, feed: Feed) -> Self {
        Subscriptions { feed, ..self }
    }

    /// The node-wide feed of applied task events (the dashboard's).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// A receiver that sees a change after each applied task event on this node (several
    /// events between two looks are one change).
    pub fn watch_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The kept events of a task that hold its event numbers `after + 1 ..= upto`, oldest
    /// first, or `None` when some of them are gone ([`History::replay`]). Call it after
    /// subscribing and after reading the task's event count (`upto`): every event up to that
    /// count is published by then, and later ones come on the subscription (skip those
    /// already replayed by number).
    pub fn replay(&self, task_id: &str, after: u64, upto: u64) -> Option<Vec<Arc<TaskEvent>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).history.replay(task_id, after, upto)
    }

    /// Starts following a task. Take the task's snapshot after this call and skip events
    /// whose `seq` is at or below the snapshot's: then nothing is missed or repeated.
    pub fn subscribe(&self, task_id: &str) -> Result<broadcast::Receiver<Arc<TaskEvent>>, SubscribeError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels.by_task.len() >= channels.sweep_at {
            channels.by_task.retain(|_, tx| tx.receiver_count() > 0);
            channels.sweep_at = (2 * channels.by_task.len()).max(SWEEP_FLOOR);
        }
        let map = &mut channels.by_task;
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

    /// Hands an applied event to the task's subscribers, if it has any, and keeps it for
    /// replay. Never blocks.
    pub fn publish(&self, event: TaskEvent) {
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        let event = Arc::new(event);
        self.feed.publish(&event);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.history.remember(&event);
        let map = &mut channels.by_task;
        let Some(tx) = map.get(&event.task_id) else {
            return;
        };
        if tx.receiver_count() == 0 {
            map.remove(&event.task_id);
            return;
        }
        let terminal = event.state.is_terminal();
        let task_id = terminal.then(|| event.task_id.clone());
        let _ = tx.send(event);
        if let Some(task_id) = task_id {
            map.remove(&task_id);
        }
    }

    /// Tasks whose events are kept for replay on this node, and their estimated bytes.
    pub fn history_size(&self) -> (usize, usize) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        (channels.history.tasks(), channels.history.bytes())
    }

    /// Subscribers on this node, over every task.
    pub fn subscribers(&self) -> usize {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.by_task.values().map(|tx| tx.receiver_count()).sum()
    }

    /// Tasks with a live channel on this node.
    pub fn tasks_followed(&self) -> usize {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).by_task.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};

    fn event(task: &str, seq: u64, state: TaskState) -> TaskEvent {
        TaskEvent {
            task_id: task.into(),
            context_id: "c".into(),
            agent_id: "a".into(),
            at_ms: 0,
            seq,
            events: seq,
            state,
            changes: vec![],
        }
    }

    const HISTORY: HistoryLimits = HistoryLimits { tasks_max: 16, events_max: 16, bytes_max: 1 << 20 };

    #[test]
    fn subscribers_get_events_in_order_and_the_end_after_terminal() {
        let subs = Subscriptions::new(8, 10, HISTORY);
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
        let subs = Subscriptions::new(4, 10, HISTORY);
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
        let subs = Subscriptions::new(4, 2, HISTORY);
        let a = subs.subscribe("t").unwrap();
        let _b = subs.subscribe("t").unwrap();
        assert_eq!(subs.subscribe("t").unwrap_err(), SubscribeError::TooMany("t".into(), 2));
        assert_eq!(subs.subscribers(), 2);
        drop(a);
        assert_eq!(subs.subscribers(), 1);
        assert!(subs.subscribe("t").is_ok());
        let subs = Subscriptions::new(4, 2, HISTORY);
        drop(subs.subscribe("t").unwrap());
        subs.publish(event("t", 1, TaskState::Working));
        assert_eq!(subs.tasks_followed(), 0, "a channel nobody listens to is dropped");
    }

    #[test]
    fn channels_of_tasks_that_never_change_again_are_swept() {
        let subs = Subscriptions::new(4, 2, HISTORY);
        // Subscribers that came and went for finished tasks: no event will ever clean up.
        for i in 0..10 * SWEEP_FLOOR {
            drop(subs.subscribe(&format!("done-{i}")).unwrap());
            assert!(subs.tasks_followed() <= SWEEP_FLOOR, "{} channels after {i}", subs.tasks_followed());
        }
        let live: Vec<_> = (0..SWEEP_FLOOR).map(|i| subs.subscribe(&format!("live-{i}")).unwrap()).collect();
        for i in 0..10 * SWEEP_FLOOR {
            drop(subs.subscribe(&format!("gone-{i}")).unwrap());
        }
        assert!(subs.tasks_followed() <= 2 * live.len() + 1, "{}", subs.tasks_followed());
        assert!(live.iter().all(|rx| rx.is_empty()), "nothing was published to the live tasks yet");
        subs.publish(event("live-0", 1, TaskState::Working));
        assert_eq!(live[0].len(), 1);
    }
}
