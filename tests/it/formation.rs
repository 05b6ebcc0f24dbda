//! Cluster formation by gossip, with real processes on 127.0.0.1-6 and no `--peers`: three
//! nodes started at the same instant from one seed with `bootstrap_expect = 3` form exactly
//! one cluster; a 4th and 5th join as learners and become voters (`voters_max = 5`); `superx
//! leave` scales back to three; a voter killed for good is replaced by a spare learner after
//! the dead-voter timeout; a node restarted on its data dir comes back with the same id.
//! Writes go through every live node at every step, and every acknowledged one is read back
//! from every live node at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::fake_agent;
use crate::gossip_cluster::{DEADLINE, GossipCluster, brief, ids, is_retryable, is_transport, send};
use crate::support::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_cluster_forms_grows_shrinks_replaces_and_restarts_without_losing_writes() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let mut c = GossipCluster::new(&agent.url);
        c.set_env("SUPERX_RAFT__VOTERS_MAX", "5");
        for n in 1..=5 {
            c.add(n, true);
        }
        // Node 6 is started without --node-id: it picks an id and keeps it in its data dir.
        c.add(6, false);
        let seed = c.slot(1).gossip.clone();
        c.args = ["--strategy", "gossip", "--seeds", &seed, "--bootstrap-expect", "3"].map(String::from).to_vec();

        form(&mut c);
        grow_to_five(&mut c);
        shrink_to_three(&mut c);
        let (replaced, spare) = replace_dead_voter(&mut c);
        restart_keeps_id(&mut c, spare);
        c.check_acked_everywhere();
        eprintln!("voter {replaced} replaced by node {spare}; {} acknowledged writes checked", c.acked.len());
    })
    .await
    .unwrap();
}

/// Three nodes spawned back to back form one cluster: one leader per term on every
/// observation, and in the end the same leader, term and voters [1,2,3] on every node.
fn form(c: &mut GossipCluster) {
    let spawned = Instant::now();
    c.spawn_all(&[1, 2, 3]);
    let mut leaders_by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut first_write = None;
    let start = Instant::now();
    loop {
        for n in 1..=3 {
            if let Some(s) = c.status(n)
                && s["role"] == "leader"
            {
                leaders_by_term.entry(s["term"].as_u64().unwrap()).or_default().insert(s["nodeId"].as_u64().unwrap());
            }
        }
        let split: Vec<_> = leaders_by_term.iter().filter(|(_, l)| l.len() > 1).collect();
        assert!(split.is_empty(), "two leaders in one term, two clusters formed: {split:?}");
        // A ready node takes writes: the agents of its agents file are there too.
        if first_write.is_none() && c.ready(1) {
            match send(&c.base(1), "formation-probe") {
                Ok(_) => first_write = Some(spawned.elapsed()),
                Err(e) => assert!(is_retryable(&e) || is_transport(&e), "write to a ready node: {e}\n{}", c.log(1)),
            }
        }
        let statuses: Vec<_> = (1..=3).map(|n| c.status(n)).collect();
        let formed = statuses.iter().all(|s| {
            s.as_ref().is_some_and(|s| ids(&s["voters"]) == BTreeSet::from([1, 2, 3]) && s["leader"].is_u64())
        });
        if formed && first_write.is_some() {
            break;
        }
        let report: Vec<String> = statuses.iter().map(brief).collect();
        assert!(start.elapsed() < DEADLINE, "3 nodes did not form one cluster:\n{}", report.join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("FORMATION: spawn of 3 nodes -> first acknowledged write in {:?}", first_write.unwrap());
    let leader = c.wait_membership(&[1, 2, 3], &[]);
    eprintln!("formed: leader {leader}, leaders seen by term {leaders_by_term:?}");
    // Gossip catches up with raft: every node sees three live members of a cluster, ready.
    let gossip_settled = |n: u64| {
        c.status(n).is_some_and(|s| {
            let members = s["gossip"].as_array().cloned().unwrap_or_default();
            s["strategy"] == "gossip"
                && members.len() == 3
                && members.iter().all(|m| m["live"] == true && m["raftState"] == "member" && m["ready"] == true)
        })
    };
    let start = Instant::now();
    for n in 1..=3 {
        while !gossip_settled(n) {
            let view = c.status(n).map(|s| s["gossip"].clone());
            assert!(start.elapsed() < DEADLINE, "node {n}'s gossip view did not settle: {view:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    c.write_everywhere("formed");
}

/// Nodes 4 and 5 join; with voters_max 5 both end up voters.
fn grow_to_five(c: &mut GossipCluster) {
    let start = Instant::now();
    c.spawn_all(&[4, 5]);
    c.wait_ready(4);
    c.wait_ready(5);
    // Each joins as a learner: the first membership that names it has it among the learners
    // (promotion waits for the 1 s stabilization time, polls are 20 ms apart).
    let mut first_seen = BTreeMap::new();
    wait_until(DEADLINE, || {
        let s = c.status(1).unwrap_or_default();
        for id in [4u64, 5] {
            if ids(&s["learners"]).contains(&id) {
                first_seen.entry(id).or_insert("learner");
            } else if ids(&s["voters"]).contains(&id) {
                first_seen.entry(id).or_insert("voter");
            }
        }
        first_seen.len() == 2
    });
    assert!(first_seen.values().all(|r| *r == "learner"), "joined as {first_seen:?}, not as learners");
    c.write_everywhere("joined");
    c.wait_membership(&[1, 2, 3, 4, 5], &[]);
    eprintln!("nodes 4 and 5 voters {:?} after their start", start.elapsed());
    c.write_everywhere("five-voters");
}

/// `superx leave` on 5 then 4: each exits 0 once removed, its process exits by itself, and
/// the voters are [1,2,3] again.
fn shrink_to_three(c: &mut GossipCluster) {
    for n in [5, 4] {
        let out = c.leave(n);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "superx leave node {n}: {stderr}\nnode log:\n{}", c.log(n));
        let status = c.wait_exit(n, DEADLINE);
        eprintln!("node {n} left; its process exited with {status}");
        c.write_everywhere(&format!("after-leave-{n}"));
    }
    c.wait_membership(&[1, 2, 3], &[]);
}

/// Node 6 joins as a learner and stays one (4 voters would be even); a follower voter killed
/// for good is replaced by it after the dead-voter timeout. Returns (killed id, node 6's id).
fn replace_dead_voter(c: &mut GossipCluster) -> (u64, u64) {
    c.spawn(6);
    c.wait_ready(6);
    let spare = c.id(6);
    assert!(spare > 0 && c.slot_of(spare) == Some(6));
    c.wait_membership(&[1, 2, 3], &[spare]);
    // A learner for twice the stabilization time (1 s) and it is still one: this is the one
    // wait for something that must not happen, so it is bounded by a time, not a condition.
    let caught_up = Instant::now();
    wait_until(DEADLINE, || {
        let s = c.status(1).unwrap();
        assert_eq!(ids(&s["voters"]), BTreeSet::from([1, 2, 3]), "an even voter count: {}", brief(&Some(s.clone())));
        caught_up.elapsed() > Duration::from_millis(2000)
    });
    c.write_everywhere("spare-learner");
    let leader = c.wait_membership(&[1, 2, 3], &[spare]);
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let killed = Instant::now();
    c.kill(victim);
    let mut voters: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != victim).collect();
    voters.push(spare);
    c.wait_membership(&voters, &[]);
    eprintln!("REPLACEMENT: voter {victim} killed -> node {spare} voter in its place after {:?}", killed.elapsed());
    c.write_everywhere("replaced");
    (victim, spare)
}

/// Node 6 (started without --node-id) is killed and started again on its data dir: it comes
/// back with the same id, still a voter, and catches up.
fn restart_keeps_id(c: &mut GossipCluster, spare: u64) {
    let other = c.running().into_iter().find(|n| *n != 6).unwrap();
    let voters: Vec<u64> = ids(&c.status(other).unwrap()["voters"]).into_iter().collect();
    c.kill(6);
    let restarted = Instant::now();
    c.spawn(6);
    c.wait_ready(6);
    let s = c.status(6).unwrap();
    assert_eq!(s["nodeId"].as_u64(), Some(spare), "restarted node took a new id: {s}");
    c.wait_membership(&voters, &[]);
    eprintln!("node 6 restarted with its id {spare} and back in the voters after {:?}", restarted.elapsed());
    c.write_everywhere("restarted");
}
