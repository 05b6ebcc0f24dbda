//! A network partition on loopback: a 3-node gossip cluster on 127.0.1.1-3, its leader cut off
//! from the other two with nftables. The minority refuses writes with the retryable error, the
//! majority elects a leader and goes on, and once healed the old leader converges. No
//! acknowledged write is lost.
//!
//! The cut is made twice over: by address (the isolated node's address and the others'), and
//! by process, each node running as its own uid (`meta skuid`), because a socket that does not
//! bind a source address leaves from 127.0.0.1 whichever node opened it. Every packet on
//! loopback passes the output hook, so matching there covers both directions. The test client
//! talks from 127.0.0.100, which no rule drops.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_agent;
use crate::gossip_cluster::{CLIENT_IP, DEADLINE, GossipCluster, brief, is_retryable, send};
use crate::support::wait_until;

/// First uid of the node processes (slot n runs as UID_BASE + n).
const UID_BASE: u32 = 61000;

/// Where the fake agent listens (its port is let through the partition).
const AGENT_IP: &str = "127.0.0.1";

/// An nftables table that isolates one node; deleted on drop, panics included.
struct Partition {
    table: String,
}

impl Partition {
    /// Drops traffic between `isolated` (address, uid) and `others`, except to and from the
    /// agent's port and the test client.
    fn isolate(isolated: (&str, u32), others: &[(&str, u32)], agent_port: u16) -> Partition {
        let nft_ok = Command::new("nft").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        assert!(nft_ok, "nft is missing: install nftables (tests/run.sh does: apt-get install nftables)");
        delete_stale_tables();
        // Unique within the process too: `cargo test` runs tests as threads of one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = format!("superx_test_{}_{n}", std::process::id());
        let (ip, uid) = isolated;
        let other_ips = others.iter().map(|(ip, _)| *ip).collect::<Vec<_>>().join(", ");
        let other_uids = others.iter().map(|(_, uid)| uid.to_string()).collect::<Vec<_>>().join(", ");
        let agent = format!(
            "ip daddr {AGENT_IP} tcp dport {agent_port} accept\n ip saddr {AGENT_IP} tcp sport {agent_port} accept"
        );
        let by_address =
            format!("ip saddr {ip} ip daddr {{ {other_ips} }} drop\n ip saddr {{ {other_ips} }} ip daddr {ip} drop");
        let rules = format!(
            "table inet {table} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    {agent}
    {by_address}
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    {agent}
    {by_address}
    meta skuid {uid} ip daddr != {{ {ip}, {CLIENT_IP} }} drop
    meta skuid {{ {other_uids} }} ip daddr {ip} drop
  }}
}}
"
        );
        let mut child =
            Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f failed (the partition tests need root: CAP_NET_ADMIN, and node processes run as other uids): {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
        Partition { table }
    }
}

/// Deletes the tables of test processes that died without cleaning up (killed at a timeout).
fn delete_stale_tables() {
    let out = Command::new("nft").args(["list", "tables"]).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(table) = line.strip_prefix("table inet ") else { continue };
        let Some(pid) = table.strip_prefix("superx_test_").and_then(|rest| rest.split('_').next()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("nft").args(["delete", "table", "inet", table]).status();
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let out = Command::new("nft").args(["delete", "table", "inet", &self.table]).output();
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("could not delete nft table {}: {other:?}", self.table),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_refuses_writes_majority_goes_on_and_the_healed_node_converges() {
    let agent = fake_agent::start(0, 0).await;
    let agent_port: u16 = agent.url.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut c = GossipCluster::new(&agent.url);
        // Addresses no other test uses: the rules drop by address, machine-wide.
        c.ip_prefix = "127.0.1.".into();
        // Node processes run as other uids: they must reach their dirs.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(c.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&c.agents_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        for n in 1..=3 {
            c.add(n, true);
            c.slots.get_mut(&n).unwrap().uid = Some(UID_BASE + n as u32);
        }
        let seed = c.slot(1).gossip.clone();
        c.args = ["--strategy", "gossip", "--seeds", &seed, "--bootstrap-expect", "3"].map(String::from).to_vec();
        c.set_env("SUPERX_RAFT__WRITE_TIMEOUT_MS", "3000");
        c.spawn_all(&[1, 2, 3]);
        let leader = c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_everywhere("before");

        let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
        let other_ips: Vec<(String, u32)> =
            others.iter().map(|n| (c.slot(*n).ip.clone(), UID_BASE + *n as u32)).collect();
        let other_refs: Vec<(&str, u32)> = other_ips.iter().map(|(ip, uid)| (ip.as_str(), *uid)).collect();
        let iso_ip = c.slot(leader).ip.clone();
        let partition = Partition::isolate((&iso_ip, UID_BASE + leader as u32), &other_refs, agent_port);
        let cut = Instant::now();
        eprintln!("leader {leader} isolated");

        // The majority: a new leader among the others, and writes through both of them.
        let mut new_leader = None;
        wait_until(DEADLINE, || {
            let statuses: Vec<_> = others.iter().map(|n| c.status(*n)).collect();
            let leaders: Vec<Option<u64>> =
                statuses.iter().map(|s| s.as_ref().and_then(|s| s["leader"].as_u64())).collect();
            new_leader = leaders[0].filter(|l| *l != leader && leaders.iter().all(|x| *x == Some(*l)));
            new_leader.is_some()
        });
        for round in 0..3 {
            for n in &others {
                c.write_through(*n, &format!("majority-{round}"));
            }
        }
        eprintln!("majority leader {} took writes {:?} after the cut", new_leader.unwrap(), cut.elapsed());

        // The minority: every write fails, with the retryable error, each within the deadline.
        for i in 0..2 {
            let sent = Instant::now();
            match send(&c.base(leader), &format!("minority-{i}")) {
                Ok(task) => panic!("isolated node {leader} acknowledged a write: {task}"),
                Err(e) => assert!(is_retryable(&e), "isolated node {leader}: not the retryable error: {e}"),
            }
            eprintln!("minority write {i} refused after {:?}", sent.elapsed());
            assert!(sent.elapsed() < Duration::from_secs(10), "the refusal took {:?}", sent.elapsed());
        }
        eprintln!("minority refuses writes ({:?} after the cut)", cut.elapsed());

        let target = others.iter().filter_map(|n| c.status(*n)?["appliedIndex"].as_u64()).max().unwrap();

        drop(partition);
        let healed = Instant::now();
        wait_until(DEADLINE, || {
            c.status(leader).is_some_and(|s| {
                s["appliedIndex"].as_u64().unwrap_or(0) >= target && s["leader"].as_u64() == new_leader
            })
        });
        c.wait_ready(leader);
        eprintln!("healed node {leader} converged in {:?}: {}", healed.elapsed(), brief(&c.status(leader)));
        c.check_acked_on(leader);
        c.write_everywhere("healed");
        c.wait_membership(&[1, 2, 3], &[]);
        c.check_acked_everywhere();
    })
    .await
    .unwrap();
}

/// Connects from `from` to a listener on `to`; whether it got through within half a second.
fn connects(from: &str, to: &std::net::TcpListener) -> bool {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&format!("{from}:0").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.connect_timeout(&to.local_addr().unwrap().into(), Duration::from_millis(500)).is_ok()
}

/// The partition itself, without superx: TCP between the isolated address and the others is
/// dropped both ways, the others still talk, and the test client's address gets through.
#[test]
fn nft_partition_cuts_node_addresses_but_not_the_test_client() {
    let listen = |ip: &str| std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let (l1, l2, l3) = (listen("127.0.2.1"), listen("127.0.2.2"), listen("127.0.2.3"));
    let uid = UID_BASE + 90;
    let partition = Partition::isolate(("127.0.2.1", uid), &[("127.0.2.2", uid + 1), ("127.0.2.3", uid + 2)], 9);
    assert!(!connects("127.0.2.1", &l2), "isolated -> other got through");
    assert!(!connects("127.0.2.3", &l1), "other -> isolated got through");
    assert!(connects("127.0.2.2", &l3), "the majority cannot talk");
    assert!(connects(CLIENT_IP, &l1), "the test client cannot reach the isolated node");
    assert!(connects(CLIENT_IP, &l2), "the test client cannot reach the majority");
    drop(partition);
    assert!(connects("127.0.2.1", &l2), "still cut after the table was deleted");
}
