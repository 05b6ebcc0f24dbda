//! The member list and its change stream, as pure logic: [`Tracker`] turns what chitchat knows
//! (one [`Member`] per chitchat id, `live` as its failure detector says) into one entry per node
//! id and the [`ClusterEvent`]s between two observations. `node.rs` feeds it every gossip round.
//!
//! # Rules
//!
//! - **One entry per node id: the newest generation** whose keys have arrived (this node itself
//!   always shows its own generation). Older generations of a restarted node are ignored, so
//!   they never show up as a second member and their death yields no event.
//! - **Restart handover.** When a new generation replaces a live one, it counts as live at once
//!   (event `Live`), although chitchat's failure detector needs a few heartbeats to confirm it.
//!   If it is not confirmed within [`SETTLE_ROUNDS`] gossip rounds, it becomes dead (`Dead`).
//!   A quick restart therefore yields `Live` only; a restart slower than failure detection
//!   yields `Dead` (old generation) then `Live` (new one), which is what happened.
//! - **`Left` is the last event of a generation.** A member whose `left` flag became true gets
//!   `Left`, and no `Dead` when it then stops; only a new generation brings it back (`Live`).
//!   A member first seen already left and live gets `Left`; first seen left and dead, nothing.
//! - `Updated` only for a live member whose published fields changed; `since` and `live` are
//!   not published fields.
//! - Two generations of one node id that stay live with different gossip addresses for longer
//!   than a restart takes to settle are two processes configured with the same id: logged once
//!   per pair with `tracing::error!`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{ClusterEvent, Member};

/// Gossip rounds within which a restart settles: chitchat's failure detector needs three
/// heartbeats of the new generation (about one round each) to confirm it, and declares the old
/// one dead after about eight mean heartbeat intervals. 25 rounds (5 s at 200 ms) leaves room
/// for a loaded host, yet a node that crashes while restarting is reported dead within seconds.
pub(crate) const SETTLE_ROUNDS: u32 = 25;

struct Entry {
    member: Member,
    /// While an unconfirmed new generation counts as live (see the restart handover rule).
    handover_until: Option<Instant>,
}

/// The member list of one observer, updated from chitchat's view.
pub(crate) struct Tracker {
    /// [`SETTLE_ROUNDS`] gossip rounds.
    settle: Duration,
    entries: BTreeMap<u64, Entry>,
    /// When each pair (node id, two gossip addresses) was first seen live together.
    duplicates_since: HashMap<(u64, SocketAddr, SocketAddr), Instant>,
    duplicates_logged: HashSet<(u64, SocketAddr, SocketAddr)>,
}

impl Tracker {
    pub(crate) fn new(gossip_interval: Duration) -> Tracker {
        Tracker {
            settle: gossip_interval * SETTLE_ROUNDS,
            entries: BTreeMap::new(),
            duplicates_since: HashMap::new(),
            duplicates_logged: HashSet::new(),
        }
    }

    /// The current list, sorted by node id.
    pub(crate) fn list(&self) -> Vec<Member> {
        self.entries.values().map(|entry| entry.member.clone()).collect()
    }

    /// Takes one observation (every chitchat id with readable keys, `live` from the failure
    /// detector, `is_self` set) and returns the events since the previous one.
    pub(crate) fn observe(&mut self, observed: Vec<Member>, now: Instant) -> Vec<ClusterEvent> {
        let mut by_node: BTreeMap<u64, Vec<Member>> = BTreeMap::new();
        for member in observed {
            by_node.entry(member.node_id).or_default().push(member);
        }
        self.check_duplicates(&by_node, now);
        let node_ids: BTreeSet<u64> = self.entries.keys().chain(by_node.keys()).copied().collect();
        let mut events = Vec::new();
        for node_id in node_ids {
            let candidate = by_node.remove(&node_id).and_then(newest);
            let prev = self.entries.remove(&node_id);
            let next = candidate.map(|candidate| next_entry(prev.as_ref(), candidate, now, self.settle));
            events.extend(diff(prev.as_ref().map(|e| &e.member), next.as_ref().map(|e| &e.member), now));
            if let Some(next) = next {
                self.entries.insert(node_id, next);
            }
        }
        events
    }

    fn check_duplicates(&mut self, by_node: &BTreeMap<u64, Vec<Member>>, now: Instant) {
        let mut current = HashSet::new();
        for (&node_id, members) in by_node {
            let mut addrs: Vec<SocketAddr> = members.iter().filter(|m| m.live).map(|m| m.gossip_addr).collect();
            addrs.sort_unstable();
            addrs.dedup();
            for (i, &a) in addrs.iter().enumerate() {
                for &b in &addrs[i + 1..] {
                    current.insert((node_id, a, b));
                }
            }
        }
        self.duplicates_since.retain(|pair, _| current.contains(pair));
        for pair in current {
            let since = *self.duplicates_since.entry(pair).or_insert(now);
            if now.duration_since(since) >= self.settle && self.duplicates_logged.insert(pair) {
                let (node_id, addr_a, addr_b) = pair;
                tracing::error!(
                    node_id,
                    %addr_a,
                    %addr_b,
                    "two live nodes claim the same node id: fix the configuration of one of them"
                );
            }
        }
    }
}

/// This node itself if present, else the newest generation.
fn newest(candidates: Vec<Member>) -> Option<Member> {
    if let Some(me) = candidates.iter().find(|m| m.is_self) {
        return Some(me.clone());
    }
    candidates.into_iter().max_by_key(|m| (m.generation, m.live))
}

/// Applies the handover rule and stamps `since`.
fn next_entry(prev: Option<&Entry>, mut member: Member, now: Instant, settle: Duration) -> Entry {
    let same_generation = prev.is_some_and(|p| p.member.generation == member.generation);
    let handover_until = if member.live {
        None
    } else if same_generation {
        prev.and_then(|p| p.handover_until)
    } else if prev.is_some_and(|p| p.member.live) {
        Some(now + settle)
    } else {
        None
    };
    member.live = member.is_self || member.live || handover_until.is_some_and(|until| now < until);
    member.since = match prev {
        Some(p) if same_generation && p.member.live == member.live => p.member.since,
        _ => now,
    };
    Entry { member, handover_until }
}

/// The event (at most one) between two states of one node id.
fn diff(prev: Option<&Member>, next: Option<&Member>, now: Instant) -> Option<ClusterEvent> {
    let Some(next) = next else {
        let prev = prev?;
        // Gone from chitchat without having been seen dead (e.g. its keys were reset).
        return (prev.live && !prev.left)
            .then(|| ClusterEvent::Dead(Member { live: false, since: now, ..prev.clone() }));
    };
    match prev {
        Some(prev) if prev.generation == next.generation => same_generation_event(prev, next),
        _ => new_generation_event(prev, next),
    }
}

fn new_generation_event(prev: Option<&Member>, next: &Member) -> Option<ClusterEvent> {
    match (next.live, next.left) {
        (true, false) => Some(ClusterEvent::Live(next.clone())),
        (true, true) => Some(ClusterEvent::Left(next.clone())),
        // The handover makes a new generation live when the old one was; kept for safety.
        (false, _) if prev.is_some_and(|p| p.live && !p.left) => Some(ClusterEvent::Dead(next.clone())),
        (false, _) => None,
    }
}

fn same_generation_event(prev: &Member, next: &Member) -> Option<ClusterEvent> {
    if prev.left {
        return None;
    }
    if next.left {
        return Some(ClusterEvent::Left(next.clone()));
    }
    match (prev.live, next.live) {
        (false, true) => Some(ClusterEvent::Live(next.clone())),
        (true, false) => Some(ClusterEvent::Dead(next.clone())),
        (true, true) if published_differs(prev, next) => Some(ClusterEvent::Updated(next.clone())),
        _ => None,
    }
}

fn published_differs(prev: &Member, next: &Member) -> bool {
    let next = Member { live: prev.live, since: prev.since, ..next.clone() };
    *prev != next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RaftState;

    const ROUND: Duration = Duration::from_millis(200);

    fn member(node_id: u64, generation: u64, live: bool) -> Member {
        Member {
            node_id,
            generation,
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 7000 + node_id as u16)),
            api_addr: format!("127.0.0.1:{}", 4000 + node_id),
            raft_addr: format!("127.0.0.1:{}", 5000 + node_id),
            version: "1".into(),
            cluster_id: "c".into(),
            ready: false,
            raft_state: RaftState::Pristine,
            left: false,
            live,
            since: Instant::now(),
            health: None,
            bootstrap_view: None,
            is_self: false,
        }
    }

    fn kinds(events: &[ClusterEvent]) -> Vec<(&'static str, u64, u64)> {
        events
            .iter()
            .map(|e| {
                let m = e.member();
                let kind = match e {
                    ClusterEvent::Live(_) => "live",
                    ClusterEvent::Dead(_) => "dead",
                    ClusterEvent::Left(_) => "left",
                    ClusterEvent::Updated(_) => "updated",
                };
                (kind, m.node_id, m.generation)
            })
            .collect()
    }

    #[test]
    fn new_live_then_dead_then_live_again() {
        let mut tracker = Tracker::new(ROUND);
        let t0 = Instant::now();
        assert_eq!(kinds(&tracker.observe(vec![member(2, 1, false)], t0)), vec![], "joining: not live yet");
        assert_eq!(kinds(&tracker.observe(vec![member(2, 1, true)], t0)), vec![("live", 2, 1)]);
        let t1 = t0 + ROUND;
        assert_eq!(kinds(&tracker.observe(vec![member(2, 1, false)], t1)), vec![("dead", 2, 1)]);
        assert_eq!(tracker.list()[0].since, t1);
        assert_eq!(kinds(&tracker.observe(vec![member(2, 1, true)], t1 + ROUND)), vec![("live", 2, 1)]);
    }

    #[test]
    fn published_changes_are_updates_and_nothing_else_is() {
        let mut tracker = Tracker::new(ROUND);
        let now = Instant::now();
        tracker.observe(vec![member(2, 1, true)], now);
        assert!(tracker.observe(vec![member(2, 1, true)], now + ROUND).is_empty(), "since is not published");
        let ready = Member { ready: true, ..member(2, 1, true) };
        assert_eq!(kinds(&tracker.observe(vec![ready.clone()], now)), vec![("updated", 2, 1)]);
        assert!(tracker.observe(vec![ready], now).is_empty());
        // A dead member's late keys are no update.
        tracker.observe(vec![member(2, 1, false)], now);
        assert!(tracker.observe(vec![Member { version: "2".into(), ..member(2, 1, false) }], now).is_empty());
    }

    #[test]
    fn left_is_the_last_event_of_a_generation() {
        let mut tracker = Tracker::new(ROUND);
        let now = Instant::now();
        tracker.observe(vec![member(2, 1, true)], now);
        let left = Member { left: true, ..member(2, 1, true) };
        assert_eq!(kinds(&tracker.observe(vec![left.clone()], now)), vec![("left", 2, 1)]);
        assert!(tracker.observe(vec![Member { live: false, ..left }], now).is_empty(), "no dead after left");
        assert!(!tracker.list()[0].live);
        assert_eq!(kinds(&tracker.observe(vec![member(2, 2, true)], now)), vec![("live", 2, 2)]);
    }

    #[test]
    fn a_quick_restart_is_live_only_and_shows_one_member() {
        let mut tracker = Tracker::new(ROUND);
        let t0 = Instant::now();
        tracker.observe(vec![member(2, 1, true)], t0);
        // The new generation is heard before the old one is declared dead.
        let events = tracker.observe(vec![member(2, 1, true), member(2, 2, false)], t0 + ROUND);
        assert_eq!(kinds(&events), vec![("live", 2, 2)]);
        let events = tracker.observe(vec![member(2, 1, false), member(2, 2, false)], t0 + ROUND * 3);
        assert_eq!(kinds(&events), vec![], "old generation dead, new one in handover");
        let events = tracker.observe(vec![member(2, 1, false), member(2, 2, true)], t0 + ROUND * 4);
        assert_eq!(kinds(&events), vec![], "confirmed: no event");
        let list = tracker.list();
        assert_eq!((list.len(), list[0].generation, list[0].live), (1, 2, true));
        let events = tracker.observe(vec![member(2, 1, false), member(2, 2, false)], t0 + ROUND * 5);
        assert_eq!(kinds(&events), vec![("dead", 2, 2)], "confirmed generations die normally");
    }

    #[test]
    fn an_unconfirmed_restart_dies_after_the_settle_time() {
        let mut tracker = Tracker::new(ROUND);
        let t0 = Instant::now();
        tracker.observe(vec![member(2, 1, true)], t0);
        tracker.observe(vec![member(2, 1, true), member(2, 2, false)], t0);
        let just_before = t0 + ROUND * SETTLE_ROUNDS - Duration::from_millis(1);
        assert!(tracker.observe(vec![member(2, 1, false), member(2, 2, false)], just_before).is_empty());
        let after = t0 + ROUND * SETTLE_ROUNDS;
        assert_eq!(kinds(&tracker.observe(vec![member(2, 2, false)], after)), vec![("dead", 2, 2)]);
    }

    #[test]
    fn a_slow_restart_is_dead_then_live() {
        let mut tracker = Tracker::new(ROUND);
        let now = Instant::now();
        tracker.observe(vec![member(2, 1, true)], now);
        assert_eq!(kinds(&tracker.observe(vec![member(2, 1, false)], now)), vec![("dead", 2, 1)]);
        assert!(tracker.observe(vec![member(2, 1, false), member(2, 2, false)], now).is_empty());
        assert_eq!(kinds(&tracker.observe(vec![member(2, 2, true)], now)), vec![("live", 2, 2)]);
    }

    #[test]
    fn self_is_always_live_and_wins_over_other_generations() {
        let mut tracker = Tracker::new(ROUND);
        let me = Member { is_self: true, ..member(1, 5, false) };
        let events = tracker.observe(vec![me, member(1, 9, true)], Instant::now());
        assert_eq!(kinds(&events), vec![("live", 1, 5)]);
        assert!(tracker.list()[0].is_self);
    }

    #[test]
    fn first_seen_left_members() {
        let mut tracker = Tracker::new(ROUND);
        let now = Instant::now();
        let live_left = Member { left: true, ..member(2, 1, true) };
        let dead_left = Member { left: true, ..member(3, 1, false) };
        assert_eq!(kinds(&tracker.observe(vec![live_left, dead_left], now)), vec![("left", 2, 1)]);
    }

    #[test]
    fn a_vanished_live_member_is_dead() {
        let mut tracker = Tracker::new(ROUND);
        let now = Instant::now();
        tracker.observe(vec![member(2, 1, true)], now);
        assert_eq!(kinds(&tracker.observe(vec![], now)), vec![("dead", 2, 1)]);
        assert!(tracker.list().is_empty());
    }

    #[test]
    fn duplicates_are_logged_once_after_settling() {
        let mut tracker = Tracker::new(ROUND);
        let t0 = Instant::now();
        let other = Member { gossip_addr: "127.0.0.2:7002".parse().unwrap(), ..member(2, 2, true) };
        let both = || vec![member(2, 1, true), other.clone()];
        tracker.observe(both(), t0);
        assert!(tracker.duplicates_logged.is_empty(), "a restart elsewhere looks like this at first");
        tracker.observe(both(), t0 + ROUND * SETTLE_ROUNDS);
        assert_eq!(tracker.duplicates_logged.len(), 1);
        tracker.observe(both(), t0 + ROUND * SETTLE_ROUNDS * 2);
        assert_eq!(tracker.duplicates_logged.len(), 1);
        assert_eq!(tracker.list().len(), 1);
    }
}
