//! Founding a cluster on first boot without static peers (`cluster.bootstrap_expect`,
//! Consul's rule, made safe against two clusters forming from one set of nodes).
//!
//! A node founds only when all of this holds: its raft storage is empty (never with data on
//! disk); no live node of the cluster id already belongs to a cluster; it sees at least
//! `bootstrap_expect` pristine nodes; it has the lowest id among them; and every one of them
//! publishes (by gossip) exactly the same set. The founder then initializes raft with the
//! lowest ids of that set as voters (an odd count, up to `raft.voters_max`).
//!
//! Why the agreement rule: with views that differ (node 1 sees {1,2,3} while node 2 has not
//! seen 1 yet and sees {2,3,4}), "lowest id founds" alone lets both found. Requiring every
//! member of the set to publish the same set means two founders would need two different sets
//! published by the same nodes at once, and a node publishes one set at a time. A founder
//! withdraws its set and announces itself a member before it initializes, so no later set can
//! include it as pristine.

use superx_cluster::{Member, RaftState};

/// What a node waiting to form a cluster does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Raft already holds a cluster here: nothing to found.
    Member,
    /// Keep waiting; publish `view` (the pristine ids this node sees) meanwhile.
    Wait { view: Vec<u64>, why: String },
    /// Found the cluster with these voters.
    Found { voters: Vec<u64> },
}

/// The bootstrap rule, a pure function of what this node sees.
pub fn decide(me: u64, expect: usize, voters_max: usize, pristine: bool, members: &[Member], cluster_id: &str) -> Step {
    if !pristine {
        return Step::Member;
    }
    let live: Vec<&Member> = members.iter().filter(|m| m.live && !m.left && m.cluster_id == cluster_id).collect();
    let mut view: Vec<u64> = live.iter().filter(|m| m.raft_state == RaftState::Pristine).map(|m| m.node_id).collect();
    if !view.contains(&me) {
        view.push(me);
    }
    view.sort_unstable();
    view.dedup();
    let wait = |why: String| Step::Wait { view: view.clone(), why };
    if let Some(m) = live.iter().find(|m| m.raft_state == RaftState::Member && m.node_id != me) {
        return wait(format!("node {} already belongs to a cluster; waiting to be added", m.node_id));
    }
    if expect == 0 {
        return wait("bootstrap_expect is 0: waiting to be added to an existing cluster".into());
    }
    if view.len() < expect {
        return wait(format!("{} of {expect} expected nodes seen", view.len()));
    }
    if view[0] != me {
        return wait(format!("node {} founds the cluster", view[0]));
    }
    let disagreeing: Vec<u64> = live
        .iter()
        .filter(|m| view.contains(&m.node_id) && m.node_id != me)
        .filter(|m| m.bootstrap_view.as_deref() != Some(view.as_slice()))
        .map(|m| m.node_id)
        .collect();
    if !disagreeing.is_empty() {
        return wait(format!("waiting for nodes {disagreeing:?} to see the same {} nodes", view.len()));
    }
    let reach = view.len().min(voters_max);
    let count = if reach % 2 == 1 { reach } else { reach - 1 };
    Step::Found { voters: view[..count].to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn member(id: u64, state: RaftState, view: Option<&[u64]>) -> Member {
        Member {
            node_id: id,
            generation: 1,
            gossip_addr: format!("127.0.0.{id}:4200").parse().unwrap(),
            api_addr: format!("127.0.0.{id}:4000"),
            raft_addr: format!("127.0.0.{id}:4100"),
            version: "0.1.0".into(),
            cluster_id: "superx".into(),
            ready: false,
            raft_state: state,
            left: false,
            live: true,
            since: Instant::now(),
            health: None,
            bootstrap_view: view.map(<[u64]>::to_vec),
            is_self: false,
        }
    }

    fn pristine(ids: &[u64], view: &[u64]) -> Vec<Member> {
        ids.iter().map(|id| member(*id, RaftState::Pristine, Some(view))).collect()
    }

    #[test]
    fn the_lowest_id_founds_once_everyone_agrees() {
        let members = pristine(&[1, 2, 3], &[1, 2, 3]);
        assert_eq!(decide(1, 3, 3, true, &members, "superx"), Step::Found { voters: vec![1, 2, 3] });
        assert!(matches!(decide(2, 3, 3, true, &members, "superx"), Step::Wait { .. }));
    }

    #[test]
    fn no_founding_until_enough_nodes_agree() {
        let members = pristine(&[1, 2], &[1, 2]);
        assert!(matches!(decide(1, 3, 3, true, &members, "superx"), Step::Wait { ref view, .. } if view == &[1, 2]));
        // Node 3 is seen but still publishes an older view.
        let mut members = pristine(&[1, 2], &[1, 2, 3]);
        members.push(member(3, RaftState::Pristine, Some(&[2, 3])));
        assert!(matches!(decide(1, 3, 3, true, &members, "superx"), Step::Wait { .. }));
    }

    #[test]
    fn differing_views_never_give_two_founders() {
        // Node 1 sees {1,2,3}; node 2 has not seen 1 and sees {2,3,4}. Whatever each
        // publishes, at most one of them may found.
        let views: [&[u64]; 2] = [&[1, 2, 3], &[2, 3, 4]];
        for v3 in views {
            for v4 in views {
                let seen_by_1 =
                    vec![member(2, RaftState::Pristine, Some(&[2, 3, 4])), member(3, RaftState::Pristine, Some(v3))];
                let seen_by_2 =
                    vec![member(3, RaftState::Pristine, Some(v3)), member(4, RaftState::Pristine, Some(v4))];
                let one = decide(1, 3, 3, true, &seen_by_1, "superx");
                let two = decide(2, 3, 3, true, &seen_by_2, "superx");
                let founders = [&one, &two].iter().filter(|s| matches!(s, Step::Found { .. })).count();
                assert!(founders <= 1, "{one:?} {two:?}");
            }
        }
    }

    #[test]
    fn an_existing_cluster_or_data_on_disk_means_no_founding() {
        let mut members = pristine(&[1, 2, 3], &[1, 2, 3]);
        members.push(member(9, RaftState::Member, None));
        assert!(matches!(decide(1, 3, 3, true, &members, "superx"), Step::Wait { .. }));
        assert_eq!(decide(1, 3, 3, false, &pristine(&[1, 2, 3], &[1, 2, 3]), "superx"), Step::Member);
        // Nodes of another cluster id do not count.
        let mut members = pristine(&[1, 2], &[1, 2, 3]);
        let mut other = member(3, RaftState::Pristine, Some(&[1, 2, 3]));
        other.cluster_id = "other".into();
        members.push(other);
        assert!(matches!(decide(1, 3, 3, true, &members, "superx"), Step::Wait { .. }));
    }

    #[test]
    fn founders_are_an_odd_number_within_voters_max() {
        let members = pristine(&[1, 2, 3, 4], &[1, 2, 3, 4]);
        assert_eq!(decide(1, 3, 5, true, &members, "superx"), Step::Found { voters: vec![1, 2, 3] });
        let members = pristine(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5]);
        assert_eq!(decide(1, 3, 3, true, &members, "superx"), Step::Found { voters: vec![1, 2, 3] });
        assert_eq!(decide(1, 1, 3, true, &[], "superx"), Step::Found { voters: vec![1] });
    }
}
