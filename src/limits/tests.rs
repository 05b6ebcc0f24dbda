use std::collections::VecDeque;

use super::*;

const RATE: f64 = 100.0;
const INTERVAL: Duration = Duration::from_millis(100);
/// Ticks before a digest reaches the other nodes (two gossip rounds of 100 ms).
const GOSSIP_DELAY_TICKS: usize = 2;

fn config() -> LimitsSection {
    LimitsSection { share_interval_ms: INTERVAL.as_millis() as u64, ..LimitsSection::default() }
}

fn rate() -> Rate {
    Rate::new(RATE, 0).unwrap()
}

/// Nodes fed evenly spaced requests for one key, ticking every interval and seeing each
/// other's digests `GOSSIP_DELAY_TICKS` late: what the cluster admits per second.
struct Sim {
    nodes: Vec<Limiter>,
    start: Instant,
    /// Digests published, oldest first, one set per tick.
    published: VecDeque<Vec<RateDigest>>,
    /// Fractional requests owed to each node.
    owed: Vec<f64>,
}

impl Sim {
    fn new(nodes: usize) -> Sim {
        Sim {
            nodes: (0..nodes).map(|_| Limiter::new(&config(), 1)).collect(),
            start: Instant::now(),
            published: VecDeque::new(),
            owed: vec![0.0; nodes],
        }
    }

    /// Runs `seconds` with `offered` requests per second over the nodes in `spread`
    /// proportions; answers the requests admitted per node.
    fn run(&mut self, from: f64, seconds: f64, offered: f64, spread: &[f64]) -> Vec<u64> {
        let step = Duration::from_millis(1);
        let steps = (seconds * 1000.0) as u64;
        let first = (from * 1000.0) as u64;
        let mut admitted = vec![0; self.nodes.len()];
        for ms in first..first + steps {
            let now = self.start + step * ms as u32;
            for (i, node) in self.nodes.iter().enumerate() {
                self.owed[i] += offered * spread[i] / 1000.0;
                while self.owed[i] >= 1.0 {
                    self.owed[i] -= 1.0;
                    let check = Check { scope: Scope::Agent, name: "a", rate: rate() };
                    if node.admit(&[check], now).is_ok() {
                        admitted[i] += 1;
                    }
                }
            }
            if ms % INTERVAL.as_millis() as u64 == 0 {
                self.tick(now);
            }
        }
        admitted
    }

    fn tick(&mut self, now: Instant) {
        let visible = match self.published.len() >= GOSSIP_DELAY_TICKS {
            true => self.published[self.published.len() - GOSSIP_DELAY_TICKS].clone(),
            false => vec![RateDigest::default(); self.nodes.len()],
        };
        let digests = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let peers: Vec<RateDigest> =
                    visible.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, d)| d.clone()).collect();
                node.tick(now, &peers)
            })
            .collect();
        self.published.push_back(digests);
        if self.published.len() > GOSSIP_DELAY_TICKS {
            self.published.pop_front();
        }
    }
}

fn per_second(admitted: &[u64], seconds: f64) -> f64 {
    admitted.iter().sum::<u64>() as f64 / seconds
}

fn assert_within_10_percent(what: &str, rate: f64) {
    eprintln!("{what}: {rate:.1}/s");
    assert!((rate - RATE).abs() <= RATE * 0.1, "{what}: {rate:.1}/s admitted, configured {RATE}/s");
}

#[test]
fn a_single_node_is_an_exact_bucket() {
    let mut sim = Sim::new(1);
    let burst = sim.run(0.0, 0.001, 1_000_000.0, &[1.0]);
    assert_eq!(burst, [RATE as u64], "a full bucket: one second's worth at once");
    sim.run(0.001, 1.999, 500.0, &[1.0]);
    let steady = sim.run(2.0, 10.0, 500.0, &[1.0]);
    assert!((per_second(&steady, 10.0) - RATE).abs() <= 1.0, "{steady:?}");
}

#[test]
fn three_nodes_hold_the_rate_whatever_the_spread() {
    for spread in [[1.0 / 3.0; 3], [0.8, 0.1, 0.1], [1.0, 0.0, 0.0], [0.5, 0.45, 0.05]] {
        let mut sim = Sim::new(3);
        sim.run(0.0, 2.0, 3.0 * RATE, &spread);
        let admitted = sim.run(2.0, 10.0, 3.0 * RATE, &spread);
        assert_within_10_percent(&format!("spread {spread:?} ({admitted:?})"), per_second(&admitted, 10.0));
    }
}

#[test]
fn a_shift_of_load_keeps_the_rate() {
    let mut sim = Sim::new(3);
    sim.run(0.0, 2.0, 3.0 * RATE, &[0.8, 0.1, 0.1]);
    let before = sim.run(2.0, 5.0, 3.0 * RATE, &[0.8, 0.1, 0.1]);
    let after = sim.run(7.0, 5.0, 3.0 * RATE, &[0.1, 0.1, 0.8]);
    let total: Vec<u64> = before.iter().zip(&after).map(|(a, b)| a + b).collect();
    assert_within_10_percent(&format!("shifted ({before:?} then {after:?})"), per_second(&total, 10.0));
    assert!(after[2] > after[0] * 4, "the node the load moved to admits most: {after:?}");
}

#[test]
fn under_the_rate_everything_is_admitted() {
    let mut sim = Sim::new(3);
    sim.run(0.0, 2.0, 0.6 * RATE, &[0.8, 0.1, 0.1]);
    let admitted = sim.run(2.0, 10.0, 0.6 * RATE, &[0.8, 0.1, 0.1]);
    let rate = per_second(&admitted, 10.0);
    assert!((rate - 0.6 * RATE).abs() < 1.0, "{rate}/s of {}/s offered", 0.6 * RATE);
}

#[test]
fn shares_sum_to_one_and_floor_small_demand() {
    let shares = |d: &[f64]| -> Vec<f64> {
        (0..d.len())
            .map(|i| {
                let others: Vec<f64> = d.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect();
                share(d[i], &others, 1.0)
            })
            .collect()
    };
    for demands in [[240.0, 30.0, 30.0], [100.0, 100.0, 100.0], [1000.0, 1.0, 0.5], [5.0, 0.0, 0.0]] {
        let s = shares(&demands);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{demands:?} -> {s:?}");
    }
    let s = shares(&[1000.0, 1.0, 0.5]);
    assert!(s[1] > 0.04 && s[2] > 0.04, "a node with little demand keeps the floor: {s:?}");
    assert_eq!(share(10.0, &[], 1.0), 1.0, "a key no other node reports is this node's alone");
    assert_eq!(share(10.0, &[], 1.0 / 3.0), 1.0 / 3.0, "without gossip, the static fraction");
}

#[test]
fn a_refusal_names_the_limit_and_when_to_retry_and_takes_no_token() {
    let limiter = Limiter::new(&config(), 1);
    let now = Instant::now();
    let slow = Rate::new(0.5, 1).unwrap();
    let fast = Rate::new(1000.0, 0).unwrap();
    let both = |now| {
        limiter.admit(
            &[
                Check { scope: Scope::Credential, name: "key:k", rate: fast },
                Check { scope: Scope::Agent, name: "a", rate: slow },
            ],
            now,
        )
    };
    assert!(both(now).is_ok());
    let denied = both(now).unwrap_err();
    assert_eq!(denied.scope, Scope::Agent);
    assert_eq!(denied.retry_after_secs(), 2, "one token at 0.5/s: 2 s");
    // The credential's bucket lost only the admitted request's token.
    for _ in 0..998 {
        limiter.admit(&[Check { scope: Scope::Credential, name: "key:k", rate: fast }], now).unwrap();
    }
    assert!(both(now + Duration::from_secs(2)).is_ok());
    assert!(limiter.admit(&[], now).is_ok(), "no limit, no refusal");
}

#[test]
fn keys_are_bounded_and_idle_ones_expire() {
    let limiter = Limiter::new(&LimitsSection { keys_max: 16, idle_ms: 1_000, ..config() }, 1);
    let now = Instant::now();
    for i in 0..100 {
        let name = format!("k{i}");
        let check = Check { scope: Scope::Credential, name: &name, rate: rate() };
        limiter.admit(&[check], now + Duration::from_millis(i)).unwrap();
        assert!(limiter.len() <= 16);
    }
    limiter.tick(now + Duration::from_secs(2), &[]);
    assert!(limiter.is_empty(), "idle keys are forgotten");
}

#[test]
fn the_digest_names_hashes_only_the_busiest_first_and_is_bounded() {
    let limiter = Limiter::new(&LimitsSection { gossip_keys_max: 2, ..config() }, 1);
    let start = Instant::now();
    limiter.tick(start, &[]);
    for (name, count) in [("quiet", 1), ("busy", 50), ("busier", 90)] {
        for _ in 0..count {
            let _ = limiter.admit(&[Check { scope: Scope::Credential, name, rate: rate() }], start);
        }
    }
    let digest = limiter.tick(start + INTERVAL, &[]);
    let keys: Vec<u64> = digest.demands.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [key_of(Scope::Credential, "busier"), key_of(Scope::Credential, "busy")]);
    assert_ne!(key_of(Scope::Credential, "a"), key_of(Scope::Agent, "a"), "scopes do not share keys");
}
