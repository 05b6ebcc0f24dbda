//! The deliverer: on the raft leader only, walks every (task, config) lane of the outbox
//! in event order and commits what became of each event.
//!
//! The supervisor reads the lanes with events due (from a clone of the applied tables) and
//! starts a walker for each one not walking yet, up to `push.deliveries_in_flight_max` and
//! `push.destination_in_flight_max` per receiver. It looks again as soon as a task event is
//! applied or a walker ends, and at least every `IDLE_PAUSE`. A walker delivers its lane's
//! events one at a time (the order per task and config), with retries, hands each outcome to
//! the committer, which proposes them in batches (`PushCommand::Progress`), and ends when no
//! event is due. What this node delivered but has not seen committed yet is kept as a local
//! cursor per lane, so a lane started again never repeats an event that is only waiting for
//! its commit; a cursor the log does not confirm within `COMMIT_WAIT_MAX` (the commit was
//! lost) is dropped and its events are delivered again. Leadership lost: walkers stop at their
//! next attempt, the local cursors are forgotten, and the new leader resumes from the
//! committed cursors (an event in flight then is delivered again: at least once).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Attempt;
use crate::gateway::Gateway;
use crate::state::PushCommand;
use crate::state::push::{Lane, Progress};

/// Longest pause between the supervisor's looks for lanes with events due.
const IDLE_PAUSE: Duration = Duration::from_millis(50);

/// Shortest time between two looks: wake-ups in between are one (a look scans the outbox).
const LOOK_SPACING: Duration = Duration::from_millis(5);

/// How long a local delivered cursor may stay ahead of the committed one before it is dropped
/// (the commit was lost: the lane's events after the committed cursor are delivered again).
const COMMIT_WAIT_MAX: Duration = Duration::from_secs(5);

type LaneKey = (String, String);

/// The lanes walking, with the destination each delivers to.
type Walking = Mutex<HashMap<LaneKey, String>>;

/// The last event this node delivered (or gave up) per lane, and when, until the committed
/// cursor reaches it.
type Delivered = Mutex<HashMap<LaneKey, (u64, Instant)>>;

/// What the supervisor and its walkers share.
struct Walkers {
    walking: Walking,
    delivered: Delivered,
    /// A walker ended: its receiver has room for another lane.
    ended: Notify,
}

/// Runs on every node for the life of the process; delivers while this node leads.
pub async fn run(gw: Arc<Gateway>) {
    let config = &gw.push.config;
    let (tx, rx) = mpsc::channel(config.commit_batch_max.saturating_mul(2));
    tokio::spawn(commit(gw.clone(), rx));
    let walkers = Arc::new(Walkers { walking: Mutex::default(), delivered: Mutex::default(), ended: Notify::new() });
    let mut applied = gw.replica.subscriptions().watch_applied();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(IDLE_PAUSE) => {}
            _ = walkers.ended.notified() => {}
            changed = applied.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(IDLE_PAUSE).await;
                }
            }
        }
        tokio::time::sleep(LOOK_SPACING).await;
        if !is_leader(&gw) {
            walkers.delivered.lock().expect("delivered lock").clear();
            continue;
        }
        ensure_signing_key(&gw).await;
        for lane in due_lanes(&gw, &walkers) {
            let key = (lane.config.task_id.clone(), lane.config.id.clone());
            walkers.walking.lock().expect("walking lock").insert(key.clone(), super::destination(&lane.config.url));
            let (gw, tx, walkers) = (gw.clone(), tx.clone(), walkers.clone());
            tokio::spawn(async move {
                walk(&gw, lane, &tx, &walkers.delivered).await;
                walkers.walking.lock().expect("walking lock").remove(&key);
                walkers.ended.notify_one();
            });
        }
    }
}

/// Makes the cluster's JWT signing key once (the first leader that runs this), so the JWKS
/// is published before any webhook needs it. A failed commit is tried again next round.
async fn ensure_signing_key(gw: &Gateway) {
    if gw.replica.read(|t| t.push().signing_key().is_some()) {
        return;
    }
    let key = match super::sign::new_signing_key() {
        Ok(key) => key,
        Err(error) => {
            tracing::error!(%error, "could not make a webhook signing key");
            return;
        }
    };
    if let Err(error) = gw.replica.propose_push(PushCommand::SetSigningKey(key)).await {
        tracing::debug!(%error, "webhook signing key not committed yet");
    }
}

fn is_leader(gw: &Gateway) -> bool {
    gw.replica.raft().membership().is_leader
}

/// Lanes with an event due that no walker walks (after this node's local cursor, when it is
/// ahead of the committed one), as many as there are free walker slots, and at most
/// `push.destination_in_flight_max` walking per destination: lanes waiting out a dead
/// receiver's backoff never take every slot from the other receivers.
fn due_lanes(gw: &Gateway, walkers: &Walkers) -> Vec<Lane> {
    let walking = walkers.walking.lock().expect("walking lock").clone();
    let free = gw.push.config.deliveries_in_flight_max.saturating_sub(walking.len());
    if free == 0 {
        return vec![];
    }
    let per_destination = gw.push.config.destination_in_flight_max;
    let mut busy: HashMap<String, usize> = HashMap::new();
    for destination in walking.values() {
        *busy.entry(destination.clone()).or_default() += 1;
    }
    // The scan runs on a clone (persistent maps: O(1)), not under the state lock that apply
    // needs: a large outbox (a receiver down for a while) must not stall commits.
    let push = gw.replica.read(|t| t.push().clone());
    let mut delivered = walkers.delivered.lock().expect("delivered lock");
    delivered.retain(|(task, config), (event, at)| {
        push.config(task, config).is_some_and(|c| c.status.cursor < *event) && at.elapsed() < COMMIT_WAIT_MAX
    });
    let walking_keys: std::collections::HashSet<(&str, &str)> =
        walking.keys().map(|(task, config)| (task.as_str(), config.as_str())).collect();
    let local: HashMap<(&str, &str), u64> =
        delivered.iter().map(|((task, config), (event, _))| ((task.as_str(), config.as_str()), *event)).collect();
    // Only a lane that will start is copied out of the tables.
    push.due()
        .filter_map(|(c, cursor)| {
            let key = (c.config.task_id.as_str(), c.config.id.as_str());
            let after = local.get(&key).map_or(cursor, |done| cursor.max(*done));
            let due = !walking_keys.contains(&key) && push.has_event_after(key.0, after);
            due.then_some((key, after, &c.config.url))
        })
        .filter(|(_, _, url)| {
            let count = busy.entry(super::destination(url)).or_default();
            *count += 1;
            *count <= per_destination
        })
        .filter_map(|((task, id), after, _)| push.next_event(task, id, after))
        .take(free)
        .collect()
}

/// Delivers a lane's events in order until none is due (or this node stops leading).
async fn walk(gw: &Gateway, mut lane: Lane, tx: &mpsc::Sender<Progress>, delivered: &Delivered) {
    let key = (lane.config.task_id.clone(), lane.config.id.clone());
    loop {
        let Some(progress) = deliver(gw, &lane).await else { return };
        let done = progress.event;
        delivered.lock().expect("delivered lock").insert(key.clone(), (done, Instant::now()));
        if tx.send(progress).await.is_err() {
            return;
        }
        match gw.replica.read(|t| t.push().next_event(&key.0, &key.1, done)) {
            Some(next) => lane = next,
            None => return,
        }
    }
}

/// Delivers one event with retries; `None` when this node stopped leading or the config was
/// deleted meanwhile (nothing to record).
async fn deliver(gw: &Gateway, lane: &Lane) -> Option<Progress> {
    let push = &gw.push;
    let c = &lane.config;
    let body = crate::a2a::push::payload(&c.task_id, &lane.payload, c.format);
    let max = push.config.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        let exists = gw.replica.read(|t| t.push().config(&c.task_id, &c.id).is_some());
        if !is_leader(gw) || !exists {
            return None;
        }
        attempt += 1;
        metrics::counter!("superx_push_attempts_total").increment(1);
        let key = gw.replica.read(|t| t.push().signing_key().cloned());
        let error = match push.attempt(lane, &body, key.as_ref()).await {
            Attempt::Delivered => {
                push.stats.delivered_total.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("superx_push_deliveries_total", "outcome" => "delivered").increment(1);
                return Some(progress(lane, attempt, None));
            }
            Attempt::GiveUp(error) => error,
            Attempt::Retry { error, .. } if attempt >= max => error,
            Attempt::Retry { error, retry_after } => {
                let pause = push.backoff(attempt, retry_after, uuid::Uuid::new_v4().as_u128() as u64);
                tracing::debug!(task_id = %c.task_id, config_id = %c.id, event = lane.event, attempt, %error, retry_in = ?pause, "webhook delivery failed; retrying");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        push.stats.given_up_total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("superx_push_deliveries_total", "outcome" => "given_up").increment(1);
        tracing::warn!(task_id = %c.task_id, config_id = %c.id, event = lane.event, attempts = attempt, %error, "webhook delivery given up");
        return Some(progress(lane, attempt, Some(error)));
    }
}

fn progress(lane: &Lane, attempts: u32, error: Option<String>) -> Progress {
    Progress {
        task_id: lane.config.task_id.clone(),
        config_id: lane.config.id.clone(),
        event: lane.event,
        attempts,
        error,
    }
}

/// Commits outcomes as they come, those already waiting together (up to
/// `push.commit_batch_max` per entry). A failed commit is dropped: the walker's wait ends at
/// its deadline and the lane restarts from the committed cursor.
async fn commit(gw: Arc<Gateway>, mut rx: mpsc::Receiver<Progress>) {
    let max = gw.push.config.commit_batch_max;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let count = batch.len();
        if let Err(e) = gw.replica.propose_push(PushCommand::Progress(batch)).await {
            tracing::debug!(error = %e, count, "push progress not committed; the lanes will deliver again");
        }
    }
}
