//! The leader's membership rules (Consul autopilot is the anchor): what gossip sees becomes
//! raft membership, one change at a time.
//!
//! [`decide`] is a pure function of the raft view, the gossip view and the health timers, so
//! every rule is tested here without a cluster. In order of priority:
//! 1. a member that left on purpose is removed at once;
//! 2. a voter down for `dead_voter_timeout` is replaced by a healthy learner, or removed when
//!    the voters left still reach the majority floor of `voters_max` (never below);
//! 3. a learner down for `dead_voter_timeout` is removed;
//! 4. a live node of the cluster that is not a member joins as a learner;
//! 5. a member whose addresses changed gets them updated;
//! 6. learners caught up and live for `stabilization` become voters, keeping the voter count
//!    odd and at most `voters_max`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use superx_cluster::Member;
use superx_raft::{MembershipView, PeerAddr};

/// The knobs of the rules.
#[derive(Clone, Debug)]
pub struct Rules {
    pub voters_max: usize,
    pub stabilization: Duration,
    pub dead_voter_timeout: Duration,
    /// A learner is caught up when it is at most this many entries behind the leader.
    pub promote_lag_entries_max: u64,
    pub cluster_id: String,
}

impl Rules {
    /// Voters never drop below a majority of the voters wanted: removing more would let a
    /// minority of the intended cluster decide.
    fn voters_floor(&self) -> usize {
        self.voters_max / 2 + 1
    }
}

/// One membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    AddLearner {
        id: u64,
        addr: PeerAddr,
    },
    SetAddresses(BTreeMap<u64, PeerAddr>),
    /// The new voter set; members dropped from it are removed unless `keep_removed`.
    SetVoters {
        voters: BTreeSet<u64>,
        keep_removed: bool,
        why: &'static str,
    },
    RemoveLearners {
        ids: BTreeSet<u64>,
        why: &'static str,
    },
}

/// Timers the loop keeps on every node (so a new leader has them running already).
#[derive(Clone, Debug, Default)]
pub struct Timers {
    /// Members of the raft membership that gossip does not show live, since when.
    pub down_since: BTreeMap<u64, Instant>,
    /// Learners live and caught up without interruption, since when (known on the leader).
    pub healthy_since: BTreeMap<u64, Instant>,
}

impl Timers {
    /// Updates the timers from what raft and gossip show now.
    pub fn observe(&mut self, view: &MembershipView, members: &[Member], rules: &Rules, now: Instant) {
        let live = |id: u64| members.iter().any(|m| m.node_id == id && m.live && !m.left);
        self.down_since.retain(|id, _| view.nodes.contains_key(id) && !live(*id));
        for id in view.nodes.keys().filter(|id| !live(**id)) {
            self.down_since.entry(*id).or_insert(now);
        }
        let healthy = |id: u64| live(id) && view.lag(id).is_some_and(|lag| lag <= rules.promote_lag_entries_max);
        self.healthy_since.retain(|id, _| view.learners.contains(id) && healthy(*id));
        for id in view.learners.iter().filter(|id| healthy(**id)) {
            self.healthy_since.entry(*id).or_insert(now);
        }
    }
}

/// The next membership change, if any. Only the leader acts, and never during a change.
pub fn decide(
    me: u64,
    view: &MembershipView,
    members: &[Member],
    timers: &Timers,
    rules: &Rules,
    now: Instant,
) -> Option<Action> {
    if !view.is_leader || view.changing || !view.initialized {
        return None;
    }
    remove_left(view, members, timers, rules, now)
        .or_else(|| replace_dead_voter(me, view, timers, rules, now))
        .or_else(|| remove_dead_learners(view, timers, rules, now))
        .or_else(|| add_new_member(view, members, rules))
        .or_else(|| update_addresses(view, members))
        .or_else(|| promote(view, timers, rules, now))
}

/// Voters that left are removed in one change, with stable learners taking their seats.
fn remove_left(
    view: &MembershipView,
    members: &[Member],
    timers: &Timers,
    rules: &Rules,
    now: Instant,
) -> Option<Action> {
    let left: BTreeSet<u64> =
        members.iter().filter(|m| m.left && view.nodes.contains_key(&m.node_id)).map(|m| m.node_id).collect();
    let mut voters: BTreeSet<u64> = view.voters.difference(&left).copied().collect();
    if voters.len() < view.voters.len() && !voters.is_empty() {
        let seats = view.voters.len().min(rules.voters_max);
        let spares = eligible(view, timers, rules, now).into_iter().filter(|id| !left.contains(id));
        for spare in spares {
            if voters.len() >= seats {
                break;
            }
            voters.insert(spare);
        }
        return Some(Action::SetVoters { voters, keep_removed: false, why: "left the cluster" });
    }
    let learners: BTreeSet<u64> = view.learners.intersection(&left).copied().collect();
    (!learners.is_empty()).then_some(Action::RemoveLearners { ids: learners, why: "left the cluster" })
}

fn is_dead(id: u64, timers: &Timers, rules: &Rules, now: Instant) -> bool {
    timers.down_since.get(&id).is_some_and(|since| now.saturating_duration_since(*since) >= rules.dead_voter_timeout)
}

/// Learners ready to vote: caught up and live for the stabilization time, lowest id first.
fn eligible(view: &MembershipView, timers: &Timers, rules: &Rules, now: Instant) -> Vec<u64> {
    view.learners
        .iter()
        .copied()
        .filter(|id| {
            timers.healthy_since.get(id).is_some_and(|s| now.saturating_duration_since(*s) >= rules.stabilization)
        })
        .collect()
}

fn replace_dead_voter(me: u64, view: &MembershipView, timers: &Timers, rules: &Rules, now: Instant) -> Option<Action> {
    let dead = view.voters.iter().copied().find(|id| *id != me && is_dead(*id, timers, rules, now))?;
    let mut voters = view.voters.clone();
    voters.remove(&dead);
    if let Some(spare) = eligible(view, timers, rules, now).first() {
        voters.insert(*spare);
        return Some(Action::SetVoters { voters, keep_removed: false, why: "replacing a dead voter" });
    }
    (voters.len() >= rules.voters_floor()).then_some(Action::SetVoters {
        voters,
        keep_removed: false,
        why: "removing a dead voter",
    })
}

fn remove_dead_learners(view: &MembershipView, timers: &Timers, rules: &Rules, now: Instant) -> Option<Action> {
    let ids: BTreeSet<u64> = view.learners.iter().copied().filter(|id| is_dead(*id, timers, rules, now)).collect();
    (!ids.is_empty()).then_some(Action::RemoveLearners { ids, why: "dead for longer than dead_voter_timeout" })
}

fn addr_of(m: &Member) -> PeerAddr {
    PeerAddr { raft: m.raft_addr.clone(), api: m.api_addr.clone() }
}

fn add_new_member(view: &MembershipView, members: &[Member], rules: &Rules) -> Option<Action> {
    members
        .iter()
        .find(|m| m.live && !m.left && m.cluster_id == rules.cluster_id && !view.nodes.contains_key(&m.node_id))
        .map(|m| Action::AddLearner { id: m.node_id, addr: addr_of(m) })
}

fn update_addresses(view: &MembershipView, members: &[Member]) -> Option<Action> {
    let moved: BTreeMap<u64, PeerAddr> = members
        .iter()
        .filter(|m| m.live && !m.left)
        .filter(|m| view.nodes.get(&m.node_id).is_some_and(|known| *known != addr_of(m)))
        .map(|m| (m.node_id, addr_of(m)))
        .collect();
    (!moved.is_empty()).then_some(Action::SetAddresses(moved))
}

fn promote(view: &MembershipView, timers: &Timers, rules: &Rules, now: Instant) -> Option<Action> {
    let ready = eligible(view, timers, rules, now);
    let have = view.voters.len();
    let reachable = (have + ready.len()).min(rules.voters_max);
    // The largest odd count within reach: an even count adds a vote to every quorum without
    // surviving one more failure.
    let target = if reachable % 2 == 1 { reachable } else { reachable.saturating_sub(1) };
    if target <= have {
        return None;
    }
    let mut voters = view.voters.clone();
    voters.extend(ready.into_iter().take(target - have));
    Some(Action::SetVoters { voters, keep_removed: true, why: "promoting caught-up learners" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use superx_cluster::RaftState;

    const S: Duration = Duration::from_secs(10);
    const DEAD: Duration = Duration::from_secs(30);

    fn rules(voters_max: usize) -> Rules {
        Rules {
            voters_max,
            stabilization: S,
            dead_voter_timeout: DEAD,
            promote_lag_entries_max: 100,
            cluster_id: "superx".into(),
        }
    }

    fn addr(id: u64) -> PeerAddr {
        PeerAddr { raft: format!("10.0.0.{id}:4100"), api: format!("10.0.0.{id}:4000") }
    }

    fn member(id: u64, live: bool) -> Member {
        Member {
            node_id: id,
            generation: 1,
            gossip_addr: format!("10.0.0.{id}:4200").parse().unwrap(),
            api_addr: addr(id).api,
            raft_addr: addr(id).raft,
            version: "0.1.0".into(),
            cluster_id: "superx".into(),
            ready: live,
            raft_state: RaftState::Member,
            left: false,
            live,
            since: Instant::now(),
            health: None,
            bootstrap_view: None,
            is_self: id == 1,
        }
    }

    fn view(voters: &[u64], learners: &[u64]) -> MembershipView {
        let all = voters.iter().chain(learners).copied();
        MembershipView {
            is_leader: true,
            leader: Some(1),
            term: 2,
            initialized: true,
            changing: false,
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            nodes: all.clone().map(|id| (id, addr(id))).collect(),
            matched: all.map(|id| (id, Some(1000))).collect(),
            last_log_index: 1000,
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// Timers as the loop would have them after watching `members` for `elapsed`.
    fn timers_after(view: &MembershipView, members: &[Member], r: &Rules, elapsed: Duration) -> (Timers, Instant) {
        let start = Instant::now();
        let mut t = Timers::default();
        t.observe(view, members, r, start);
        let now = start + elapsed;
        t.observe(view, members, r, now);
        (t, now)
    }

    fn run(v: &MembershipView, members: &[Member], r: &Rules, elapsed: Duration) -> Option<Action> {
        let (t, now) = timers_after(v, members, r, elapsed);
        decide(1, v, members, &t, r, now)
    }

    #[test]
    fn only_a_settled_leader_acts() {
        let members: Vec<_> = (1..=4).map(|id| member(id, true)).collect();
        let mut v = view(&[1, 2, 3], &[]);
        v.is_leader = false;
        assert_eq!(run(&v, &members, &rules(3), S), None);
        let mut v = view(&[1, 2, 3], &[]);
        v.changing = true;
        assert_eq!(run(&v, &members, &rules(3), S), None);
    }

    #[test]
    fn a_new_live_node_joins_as_a_learner() {
        let members: Vec<_> = (1..=4).map(|id| member(id, true)).collect();
        let got = run(&view(&[1, 2, 3], &[]), &members, &rules(3), Duration::ZERO);
        assert_eq!(got, Some(Action::AddLearner { id: 4, addr: addr(4) }));
        // Not a node of another cluster, not a dead or leaving one.
        let mut other = member(4, true);
        other.cluster_id = "other".into();
        let mut leaving = member(5, true);
        leaving.left = true;
        let members = vec![member(1, true), member(2, true), member(3, true), other, leaving, member(6, false)];
        assert_eq!(run(&view(&[1, 2, 3], &[]), &members, &rules(3), Duration::ZERO), None);
    }

    #[test]
    fn learners_are_promoted_after_stabilization_keeping_an_odd_count() {
        let members: Vec<_> = (1..=5).map(|id| member(id, true)).collect();
        let r = rules(5);
        // One learner alone would make 4 voters: it waits.
        assert_eq!(run(&view(&[1, 2, 3], &[4]), &members[..4], &r, S), None);
        // Two learners, not yet stable: wait; stable: both at once.
        assert_eq!(run(&view(&[1, 2, 3], &[4, 5]), &members, &r, S / 2), None);
        let got = run(&view(&[1, 2, 3], &[4, 5]), &members, &r, S);
        assert_eq!(
            got,
            Some(Action::SetVoters {
                voters: set(&[1, 2, 3, 4, 5]),
                keep_removed: true,
                why: "promoting caught-up learners"
            })
        );
        // Never beyond voters_max.
        assert_eq!(run(&view(&[1, 2, 3], &[4, 5]), &members, &rules(3), S), None);
        // A lagging learner is not caught up.
        let mut v = view(&[1, 2, 3], &[4, 5]);
        v.matched.insert(5, Some(10));
        assert_eq!(run(&v, &members, &r, S), None);
        // From a single founder, learners fill up to 3.
        let got = run(&view(&[1], &[2, 3, 4]), &members[..4], &rules(3), S);
        assert_eq!(
            got,
            Some(Action::SetVoters {
                voters: set(&[1, 2, 3]),
                keep_removed: true,
                why: "promoting caught-up learners"
            })
        );
    }

    #[test]
    fn a_node_that_left_is_removed_at_once() {
        let mut members: Vec<_> = (1..=5).map(|id| member(id, true)).collect();
        members[4].left = true;
        let got = run(&view(&[1, 2, 3, 4, 5], &[]), &members, &rules(5), Duration::ZERO);
        assert_eq!(
            got,
            Some(Action::SetVoters { voters: set(&[1, 2, 3, 4]), keep_removed: false, why: "left the cluster" })
        );
        let got = run(&view(&[1, 2, 3], &[5]), &members, &rules(5), Duration::ZERO);
        assert_eq!(got, Some(Action::RemoveLearners { ids: set(&[5]), why: "left the cluster" }));
        // A stable learner takes a leaving voter's seat in the same change.
        let members4: Vec<_> = (1..=4).map(|id| member(id, true)).collect();
        let mut leaving = members4.clone();
        leaving[2].left = true;
        let got = run(&view(&[1, 2, 3], &[4]), &leaving, &rules(3), S);
        assert_eq!(
            got,
            Some(Action::SetVoters { voters: set(&[1, 2, 4]), keep_removed: false, why: "left the cluster" })
        );
        // The leader itself leaving is removed like any other.
        members[0].left = true;
        let got = run(&view(&[1, 2, 3], &[]), &members[..3], &rules(3), Duration::ZERO);
        assert_eq!(got, Some(Action::SetVoters { voters: set(&[2, 3]), keep_removed: false, why: "left the cluster" }));
    }

    #[test]
    fn a_dead_voter_is_replaced_by_a_stable_learner_after_the_timeout() {
        let members = vec![member(1, true), member(2, true), member(3, false), member(4, true)];
        let v = view(&[1, 2, 3], &[4]);
        assert_eq!(run(&v, &members, &rules(3), DEAD / 2), None);
        let got = run(&v, &members, &rules(3), DEAD);
        assert_eq!(
            got,
            Some(Action::SetVoters { voters: set(&[1, 2, 4]), keep_removed: false, why: "replacing a dead voter" })
        );
    }

    #[test]
    fn a_dead_voter_without_a_spare_is_removed_only_above_the_floor() {
        // 3 voters wanted: the floor is 2, so one dead voter of 3 may go.
        let members = vec![member(1, true), member(2, true), member(3, false)];
        let got = run(&view(&[1, 2, 3], &[]), &members, &rules(3), DEAD);
        assert_eq!(
            got,
            Some(Action::SetVoters { voters: set(&[1, 2]), keep_removed: false, why: "removing a dead voter" })
        );
        // Two voters of 3 wanted: removing one more would go below the floor.
        let members = vec![member(1, true), member(2, false)];
        assert_eq!(run(&view(&[1, 2], &[]), &members, &rules(3), DEAD), None);
        // A node missing from gossip altogether counts as down too.
        let members = vec![member(1, true), member(2, true)];
        let got = run(&view(&[1, 2, 3], &[]), &members, &rules(3), DEAD);
        assert!(matches!(got, Some(Action::SetVoters { ref voters, .. }) if *voters == set(&[1, 2])));
    }

    #[test]
    fn dead_learners_are_removed_and_moved_nodes_updated() {
        let members = vec![member(1, true), member(2, true), member(3, true), member(4, false)];
        let got = run(&view(&[1, 2, 3], &[4]), &members, &rules(3), DEAD);
        assert_eq!(
            got,
            Some(Action::RemoveLearners { ids: set(&[4]), why: "dead for longer than dead_voter_timeout" })
        );
        let mut members: Vec<_> = (1..=3).map(|id| member(id, true)).collect();
        members[2].raft_addr = "10.0.1.3:4100".into();
        let got = run(&view(&[1, 2, 3], &[]), &members, &rules(3), Duration::ZERO);
        let moved = BTreeMap::from([(3, PeerAddr { raft: "10.0.1.3:4100".into(), api: addr(3).api })]);
        assert_eq!(got, Some(Action::SetAddresses(moved)));
    }

    #[test]
    fn a_restart_within_the_timeout_changes_nothing() {
        // Node 3 was down for a while, then back: its timer is cleared.
        let v = view(&[1, 2, 3], &[]);
        let r = rules(3);
        let start = Instant::now();
        let mut t = Timers::default();
        let down = vec![member(1, true), member(2, true), member(3, false)];
        t.observe(&v, &down, &r, start);
        let up: Vec<_> = (1..=3).map(|id| member(id, true)).collect();
        t.observe(&v, &up, &r, start + DEAD / 2);
        t.observe(&v, &down, &r, start + DEAD);
        assert_eq!(decide(1, &v, &down, &t, &r, start + DEAD), None, "the timer restarted when node 3 came back");
    }
}
