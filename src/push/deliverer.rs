//! The deliverer: on the raft leader only, walks every (task, config) lane of the outbox
//! in event order and commits what became of each event.
//!
//! Work comes from the state's due index (`PushTables::due_lanes`: per destination, the lanes
//! with an event due, first due first), read from a clone of the applied tables, so finding
//! work never scans the outbox nor holds the state lock. Each destination (`host:port`) has a
//! pool of at most `push.destination_in_flight_max` workers (and all pools together at most
//! `push.deliveries_in_flight_max`): a dead receiver's backoffs hold only its own workers.
//! A worker takes the first due lane of its destination that no other worker walks, delivers
//! its events one at a time (the order per task and config) with retries, hands each outcome
//! to the committer, which proposes them in batches (`PushCommand::Progress`), then takes the
//! next lane; it ends when its destination has none left. The supervisor tops the pools up as
//! soon as a task event is applied or a worker ends, and at least every `IDLE_PAUSE`.
//!
//! What this node delivered but has not seen committed yet is kept as a local cursor per
//! lane, so a lane taken again never repeats an event that only waits for its commit; a cursor
//! the log does not confirm within `COMMIT_WAIT_MAX` (the commit was lost) is dropped and its
//! events are delivered again. Leadership lost: workers stop at their next attempt, the local
//! cursors are forgotten, and the new leader resumes from the committed cursors (an event in
//! flight then is delivered again: at least once).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Attempt;
use crate::gateway::Gateway;
use crate::state::PushCommand;
use crate::state::push::{Lane, LaneKey, Progress, PushTables};

/// Longest pause between the supervisor's looks for destinations needing workers.
const IDLE_PAUSE: Duration = Duration::from_millis(50);

/// Shortest time between two looks: wake-ups in between are one.
const LOOK_SPACING: Duration = Duration::from_millis(1);

/// How long a local delivered cursor may stay ahead of the committed one before it is dropped
/// (the commit was lost: the lane's events after the committed cursor are delivered again).
const COMMIT_WAIT_MAX: Duration = Duration::from_secs(5);

/// What the supervisor and the workers share.
#[derive(Default)]
struct Workers {
    state: Mutex<WorkState>,
    /// A worker ended: its destination may need another.
    ended: Notify,
}

#[derive(Default)]
struct WorkState {
    /// Workers per destination.
    pools: HashMap<String, usize>,
    /// Workers over all destinations (at most `push.deliveries_in_flight_max`).
    total: usize,
    /// The lanes a worker walks now.
    walking: HashSet<LaneKey>,
    /// The last event this node delivered (or gave up) per lane, and when, until the
    /// committed cursor reaches it. Bounded by the lanes due (the outbox's limit).
    delivered: HashMap<LaneKey, (u64, Instant)>,
}

/// Runs on every node for the life of the process; delivers while this node leads.
pub async fn run(gw: Arc<Gateway>) {
    let config = &gw.push.config;
    let (tx, rx) = mpsc::channel(config.commit_batch_max.saturating_mul(2));
    tokio::spawn(commit(gw.clone(), rx));
    let workers = Arc::new(Workers::default());
    let mut applied = gw.replica.subscriptions().watch_applied();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(IDLE_PAUSE) => {}
            _ = workers.ended.notified() => {}
            changed = applied.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(IDLE_PAUSE).await;
                }
            }
        }
        tokio::time::sleep(LOOK_SPACING).await;
        if !is_leader(&gw) {
            workers.state.lock().expect("work lock").delivered.clear();
            continue;
        }
        ensure_signing_key(&gw).await;
        let push = gw.replica.read(|t| t.push().clone());
        for destination in destinations_short_of_workers(&gw, &push, &workers) {
            let (gw, tx, workers) = (gw.clone(), tx.clone(), workers.clone());
            tokio::spawn(async move {
                work(&gw, &destination, &tx, &workers).await;
                let mut state = workers.state.lock().expect("work lock");
                state.total -= 1;
                if let Some(count) = state.pools.get_mut(&destination) {
                    *count -= 1;
                    if *count == 0 {
                        state.pools.remove(&destination);
                    }
                }
                drop(state);
                workers.ended.notify_one();
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

/// One entry per worker to start: for each destination, one per lane a worker could take
/// now, up to its cap and the cap over all. Drops local cursors the log confirmed (or gave
/// up waiting for) on the way.
fn destinations_short_of_workers(gw: &Gateway, push: &PushTables, workers: &Workers) -> Vec<String> {
    let (per_destination, all) = (gw.push.config.destination_in_flight_max, gw.push.config.deliveries_in_flight_max);
    let mut state = workers.state.lock().expect("work lock");
    state.delivered.retain(|(task, config), (event, at)| {
        push.config(task, config).is_some_and(|c| c.status.cursor < *event) && at.elapsed() < COMMIT_WAIT_MAX
    });
    let mut starts = Vec::new();
    for (destination, _) in push.due_destinations() {
        let running = state.pools.get(destination).copied().unwrap_or(0);
        let room = per_destination.saturating_sub(running).min(all.saturating_sub(state.total));
        if room == 0 {
            continue;
        }
        // Walked lanes and lanes waiting for their commit come first in the queue and are
        // skipped: a look costs what is in flight, not the backlog.
        let wanted = push.due_lanes(destination).filter(|key| takeable(push, &state, key)).take(room).count();
        if wanted == 0 {
            continue;
        }
        *state.pools.entry(destination.clone()).or_default() += wanted;
        state.total += wanted;
        starts.extend(std::iter::repeat_n(destination.clone(), wanted));
    }
    starts
}

/// Whether a worker could take the lane now: nobody walks it and it has an event due after
/// this node's local cursor.
fn takeable(push: &PushTables, state: &WorkState, key: &LaneKey) -> bool {
    let after = state.delivered.get(key).map_or(0, |(event, _)| *event);
    !state.walking.contains(key) && push.is_due_after(&key.0, &key.1, after)
}

/// Walks lanes of one destination, one after another, until it has none left to take.
async fn work(gw: &Gateway, destination: &str, tx: &mpsc::Sender<Progress>, workers: &Workers) {
    while let Some(lane) = take_lane(gw, destination, workers) {
        let key = (lane.config.task_id.clone(), lane.config.id.clone());
        walk(gw, lane, tx, workers).await;
        workers.state.lock().expect("work lock").walking.remove(&key);
        if !is_leader(gw) {
            return;
        }
    }
}

/// The first lane of `destination` a worker could take, marked as walking.
fn take_lane(gw: &Gateway, destination: &str, workers: &Workers) -> Option<Lane> {
    let push = gw.replica.read(|t| t.push().clone());
    let mut state = workers.state.lock().expect("work lock");
    let key = push.due_lanes(destination).find(|key| takeable(&push, &state, key))?.clone();
    let after = state.delivered.get(&key).map_or(0, |(event, _)| *event);
    let lane = push.next_event(&key.0, &key.1, after)?;
    state.walking.insert(key);
    Some(lane)
}

/// Delivers a lane's events in order until none is due (or this node stops leading).
async fn walk(gw: &Gateway, mut lane: Lane, tx: &mpsc::Sender<Progress>, workers: &Workers) {
    let key = (lane.config.task_id.clone(), lane.config.id.clone());
    loop {
        let Some(progress) = deliver(gw, &lane).await else { return };
        let done = progress.event;
        workers.state.lock().expect("work lock").delivered.insert(key.clone(), (done, Instant::now()));
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
        let (exists, key) = gw.replica.read(|t| {
            let push = t.push();
            (push.config(&c.task_id, &c.id).is_some(), push.signing_key().cloned())
        });
        if !is_leader(gw) || !exists {
            return None;
        }
        attempt += 1;
        metrics::counter!("superx_push_attempts_total").increment(1);
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
/// `push.commit_batch_max` per entry). A failed commit is dropped: the local cursors it would
/// have confirmed expire after `COMMIT_WAIT_MAX` and their lanes deliver again.
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
