//! The deliverer: on the raft leader only, walks every (task, config) lane of the outbox
//! in event order and commits what became of each event.
//!
//! Every `IDLE_PAUSE` the supervisor reads the lanes with events due (from the applied
//! tables) and starts a walker for each one not walking yet, up to
//! `push.deliveries_in_flight_max`. A walker delivers its lane's events one at a time (the
//! order per task and config), with retries, and hands each outcome to the committer, which
//! proposes them in batches (`PushCommand::Progress`). After its last event a walker waits
//! (a bounded time) until that outcome is applied, so the supervisor never starts the lane
//! again from a cursor that is behind what was delivered. Leadership lost: walkers stop at
//! their next attempt, and the new leader resumes from the committed cursors (an event in
//! flight then is delivered again: at least once).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Attempt;
use crate::gateway::Gateway;
use crate::state::PushCommand;
use crate::state::push::{Lane, Progress};

/// Pause between the supervisor's rounds, and between a walker's looks for its next event.
const IDLE_PAUSE: Duration = Duration::from_millis(50);

/// How long a walker waits for its last outcome to be applied before it ends anyway (the
/// commit was lost: the lane restarts from the committed cursor, delivering that event again).
const COMMIT_WAIT_MAX: Duration = Duration::from_secs(5);

type LaneKey = (String, String);

/// The lanes walking, with the destination each delivers to.
type Walking = Mutex<HashMap<LaneKey, String>>;

/// Runs on every node for the life of the process; delivers while this node leads.
pub async fn run(gw: Arc<Gateway>) {
    let config = &gw.push.config;
    let (tx, rx) = mpsc::channel(config.commit_batch_max.saturating_mul(2));
    tokio::spawn(commit(gw.clone(), rx));
    let walking: Arc<Walking> = Arc::default();
    loop {
        tokio::time::sleep(IDLE_PAUSE).await;
        if !is_leader(&gw) {
            continue;
        }
        ensure_signing_key(&gw).await;
        for lane in due_lanes(&gw, &walking) {
            let key = (lane.config.task_id.clone(), lane.config.id.clone());
            walking.lock().expect("walking lock").insert(key.clone(), super::destination(&lane.config.url));
            let (gw, tx, walking) = (gw.clone(), tx.clone(), walking.clone());
            tokio::spawn(async move {
                walk(&gw, lane, &tx).await;
                walking.lock().expect("walking lock").remove(&key);
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

/// Lanes with an event due that no walker walks, as many as there are free walker slots,
/// and at most `push.destination_in_flight_max` walking per destination: lanes waiting out a
/// dead receiver's backoff never take every slot from the other receivers.
fn due_lanes(gw: &Gateway, walking: &Walking) -> Vec<Lane> {
    let walking = walking.lock().expect("walking lock").clone();
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
    push.lanes()
        .filter(|l| !walking.contains_key(&(l.config.task_id.clone(), l.config.id.clone())))
        .filter(|l| {
            let count = busy.entry(super::destination(&l.config.url)).or_default();
            *count += 1;
            *count <= per_destination
        })
        .take(free)
        .collect()
}

/// Delivers a lane's events in order until none is due (or this node stops leading).
async fn walk(gw: &Gateway, mut lane: Lane, tx: &mpsc::Sender<Progress>) {
    loop {
        let Some(progress) = deliver(gw, &lane).await else { return };
        let done = progress.event;
        if tx.send(progress).await.is_err() {
            return;
        }
        match next(gw, &lane.config.task_id, &lane.config.id, done).await {
            Some(next) => lane = next,
            None => return,
        }
    }
}

/// The lane's next event after `done`; with none due, waits until `done` is applied.
async fn next(gw: &Gateway, task_id: &str, config_id: &str, done: u64) -> Option<Lane> {
    let deadline = tokio::time::Instant::now() + COMMIT_WAIT_MAX;
    loop {
        let (next, applied) = gw.replica.read(|t| {
            let push = t.push();
            let applied = push.config(task_id, config_id).is_none_or(|c| c.status.cursor >= done);
            (push.next_event(task_id, config_id, done), applied)
        });
        if next.is_some() {
            return next;
        }
        if applied || tokio::time::Instant::now() >= deadline || !is_leader(gw) {
            return None;
        }
        tokio::time::sleep(IDLE_PAUSE).await;
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
