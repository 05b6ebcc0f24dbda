//! Rate limits held cluster-wide: three real nodes formed by gossip, a load generator in the
//! test sending well above the limit through all three (evenly, 80/10/10, and shifting from
//! one node to another), counting what the cluster admits per second after a warm-up: within
//! 10% of the configured rate, for an agent's limit (its `rateLimit` in the agents file) and
//! a credential's (an API key's own `rateLimit`). Refusals are HTTP 429 with `Retry-After` and
//! the retryable RATE_LIMITED error, counted in `superx_rate_limited_total{scope}`.
//!
//! And the SSRF guard for agents: `agents/upsert` of a metadata address is the exact
//! invalid-params error and stores nothing; a card URL that redirects to a metadata address
//! gets no card.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_agent;
use crate::gossip_cluster::{CLIENT_IP, GossipCluster};
use crate::support::start;

const ADMIN: &str = "admin-token-for-the-limit-tests";
/// The agent's configured rate (requests per second).
const AGENT_RATE: f64 = 100.0;
/// The API key's configured rate.
const KEY_RATE: f64 = 60.0;
/// Load offered, as a multiple of the limit.
const OVERLOAD: f64 = 3.0;
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(10);

/// Fractions of the load each node gets.
type Spread = [f64; 3];

/// What one phase of load saw.
#[derive(Default)]
struct Counts {
    admitted: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
    /// Admitted requests per second of the measured window, sent-time buckets.
    per_second: Vec<AtomicU64>,
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(std::net::IpAddr::V4(CLIENT_IP.parse().unwrap()))
        .pool_max_idle_per_host(256)
        .no_proxy()
        .build()
        .unwrap()
}

/// One GetTask for a task that does not exist, on `path`, read locally: an admitted request
/// costs the node a table lookup (TASK_NOT_FOUND), a limited one less.
async fn probe(http: &reqwest::Client, base: &str, path: &str, credential: &str) -> Result<bool, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "no-such-task"}});
    let response = http
        .post(format!("{base}{path}"))
        .header("A2A-Version", "1.0")
        .header("SuperX-Read", "local")
        .bearer_auth(credential)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let reply: Value = response.json().await.map_err(|e| e.to_string())?;
    match (status, reply["error"]["code"].as_i64()) {
        (200, Some(-32001)) => Ok(true),
        (429, Some(-32022)) => {
            let secs: u64 = retry_after.ok_or("429 without Retry-After")?.parse().map_err(|_| "bad Retry-After")?;
            let reason = &reply["error"]["data"][0]["reason"];
            if secs == 0 || reason != "RATE_LIMITED" {
                return Err(format!("refusal without a retry hint: {reply}"));
            }
            Ok(false)
        }
        _ => Err(format!("HTTP {status}: {reply}")),
    }
}

/// Sends `OVERLOAD` times `rate` per second for the warm-up and the measured window, spread
/// over the nodes by `spread` (switching to `then` halfway through the measured window, when
/// given); answers the admitted requests per second of the measured window.
async fn load(
    bases: &[String],
    path: &str,
    credential: &str,
    rate: f64,
    spread: Spread,
    then: Option<Spread>,
) -> (f64, Vec<u64>, u64) {
    let http = client();
    let counts = Arc::new(Counts {
        per_second: (0..MEASURED.as_secs()).map(|_| AtomicU64::new(0)).collect(),
        ..Counts::default()
    });
    let start = tokio::time::Instant::now();
    let measured_from = start + WARM_UP;
    let end = measured_from + MEASURED;
    let switch = measured_from + MEASURED / 2;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut senders = Vec::new();
    for node in 0..3 {
        let (http, counts, in_flight) = (http.clone(), counts.clone(), in_flight.clone());
        let (base, path, credential) = (bases[node].clone(), path.to_owned(), credential.to_owned());
        senders.push(tokio::spawn(async move {
            let mut next = start;
            let mut requests = Vec::new();
            while next < end {
                let share = match then {
                    Some(later) if next >= switch => later[node],
                    _ => spread[node],
                };
                if share <= 0.0 {
                    next += Duration::from_millis(10);
                    continue;
                }
                tokio::time::sleep_until(next).await;
                next += Duration::from_secs_f64(1.0 / (OVERLOAD * rate * share));
                let sent = tokio::time::Instant::now();
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                let (http, counts, base, path, credential) =
                    (http.clone(), counts.clone(), base.clone(), path.clone(), credential.clone());
                requests.push(tokio::spawn(async move {
                    let outcome = probe(&http, &base, &path, &credential).await;
                    drop(permit);
                    if sent < measured_from || sent >= end {
                        return Ok(());
                    }
                    match outcome {
                        Ok(true) => {
                            counts.admitted.fetch_add(1, Ordering::Relaxed);
                            let second = (sent - measured_from).as_secs() as usize;
                            counts.per_second[second].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => _ = counts.limited.fetch_add(1, Ordering::Relaxed),
                        Err(_) => _ = counts.other.fetch_add(1, Ordering::Relaxed),
                    }
                    outcome.map(|_| ())
                }));
            }
            for r in requests {
                r.await.unwrap()?;
            }
            Ok::<(), String>(())
        }));
    }
    for s in senders {
        s.await.unwrap().expect("every answer is TASK_NOT_FOUND or RATE_LIMITED");
    }
    let admitted = counts.admitted.load(Ordering::Relaxed);
    let per_second = counts.per_second.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    (admitted as f64 / MEASURED.as_secs_f64(), per_second, counts.limited.load(Ordering::Relaxed))
}

/// `/metrics` of a node: the value of `superx_rate_limited_total{scope="<scope>"}`.
async fn rate_limited_total(base: &str, scope: &str) -> f64 {
    let text = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("superx_rate_limited_total{{scope=\"{scope}\"}} ");
    text.lines().filter_map(|l| l.strip_prefix(&series)).map(|v| v.trim().parse::<f64>().unwrap()).sum()
}

async fn admin_rpc(base: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let req = client().post(format!("{base}/rpc")).header("A2A-Version", "1.0").bearer_auth(ADMIN).json(&body);
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_cluster_wide_however_the_load_is_spread() {
    let agent = fake_agent::start(0, 0).await;
    let mut c = GossipCluster::new(&agent.url);
    let agents = format!(
        "agents:\n  echo:\n    url: {0}\n  limited:\n    url: {0}\n    rateLimit: {{requestsPerSecond: {AGENT_RATE}}}\n",
        agent.url
    );
    std::fs::write(&c.agents_file, agents).unwrap();
    c.set_env("SUPERX_AUTH__MODE", "required");
    c.set_env("SUPERX_AUTH__ADMIN_TOKEN", ADMIN);
    for n in 1..=3 {
        c.add(n, true);
    }
    let seed = c.slot(1).gossip.clone();
    c.args = ["--strategy", "gossip", "--seeds", &seed, "--bootstrap-expect", "3"].map(String::from).to_vec();
    c.spawn_all(&[1, 2, 3]);
    let bases: Vec<String> = (1..=3).map(|n| c.base(n)).collect();
    let c = tokio::task::spawn_blocking(move || {
        c.wait_ready_all();
        c
    })
    .await
    .unwrap();
    // Every node sees the agent's rate (applied everywhere) before the load starts.
    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = admin_rpc(base, "agents/get", json!({"id": "limited"})).await;
            if got["result"]["rateLimit"]["requestsPerSecond"] == json!(AGENT_RATE) {
                break;
            }
            assert!(Instant::now() < deadline, "{base} never saw the agent's rate: {got}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut report = Vec::new();
    let phases: [(&str, Spread, Option<Spread>); 3] = [
        ("even", [1.0 / 3.0; 3], None),
        ("80/10/10", [0.8, 0.1, 0.1], None),
        ("shift 80/10/10 -> 10/10/80", [0.8, 0.1, 0.1], Some([0.1, 0.1, 0.8])),
    ];
    for (name, spread, then) in phases {
        let (rate, per_second, limited) = load(&bases, "/agents/limited", ADMIN, AGENT_RATE, spread, then).await;
        eprintln!(
            "agent limit {AGENT_RATE}/s, {name}: {rate:.1}/s admitted, per second {per_second:?}, {limited} limited"
        );
        report.push((format!("agent {name}"), rate, AGENT_RATE));
    }

    // A credential's own rate: an API key made with one, calling an agent without a limit.
    let created = admin_rpc(
        &bases[0],
        "keys/create",
        json!({"name": "load", "rateLimit": {"requestsPerSecond": KEY_RATE, "burst": 10}}),
    )
    .await;
    assert_eq!(created["result"]["rateLimit"], json!({"requestsPerSecond": KEY_RATE, "burst": 10}), "{created}");
    let key = created["result"]["key"].as_str().unwrap().to_owned();
    let key_id = created["result"]["id"].as_str().unwrap().to_owned();
    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !admin_rpc(base, "keys/list", json!({})).await["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == json!(key_id) && k["rateLimit"].is_object())
        {
            assert!(Instant::now() < deadline, "{base} never saw the key");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (rate, per_second, limited) = load(&bases, "/agents/echo", &key, KEY_RATE, [0.8, 0.1, 0.1], None).await;
    eprintln!(
        "credential limit {KEY_RATE}/s, 80/10/10: {rate:.1}/s admitted, per second {per_second:?}, {limited} limited"
    );
    report.push(("credential 80/10/10".into(), rate, KEY_RATE));

    for (name, rate, configured) in &report {
        assert!(
            (rate - configured).abs() <= configured * 0.1,
            "{name}: {rate:.1}/s admitted cluster-wide, configured {configured}/s (every phase: {report:?})"
        );
    }
    let mut agent_refusals = 0.0;
    let mut credential_refusals = 0.0;
    for base in &bases {
        agent_refusals += rate_limited_total(base, "agent").await;
        credential_refusals += rate_limited_total(base, "credential").await;
    }
    assert!(agent_refusals > 0.0 && credential_refusals > 0.0, "{agent_refusals} {credential_refusals}");
    drop(c);
}

/// A server answering every request with a redirect to `location(its own URL)`, counting
/// the requests it gets.
async fn redirector(location: impl Fn(&str) -> String) -> (String, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let location: &'static str = Box::leak(location(&url).into_boxed_str());
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_at_metadata_addresses_are_refused() {
    let (redirect, _) = redirector(|_| "http://169.254.169.254/latest/meta-data/".into()).await;
    let (looping, hits) = redirector(|own| format!("{own}/again")).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let node = tokio::task::spawn_blocking(move || start(&dir, &[], &[])).await.unwrap();
    let base = node.base.clone();
    let call = |method: &'static str, params: Value| {
        let base = base.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let req = client().post(format!("{base}/rpc")).json(&body);
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };

    let refused = call("agents/upsert", json!({"agent": {"id": "meta", "url": "http://169.254.169.254/"}})).await;
    assert_eq!(
        refused["error"],
        json!({
            "code": -32602,
            "message": "agent meta: url \"http://169.254.169.254/\": 169.254.169.254 is a link-local (cloud metadata) \
                        address; agents may not reach it (agents.allow_cidrs)"
        }),
        "{refused}"
    );
    let card_url =
        json!({"id": "meta6", "url": "http://127.0.0.1:9/", "metadata": {"cardUrl": "http://[fd00:ec2::254]/card"}});
    let refused = call("agents/upsert", json!({"agent": card_url})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    for id in ["meta", "meta6"] {
        let missing = call("agents/get", json!({"id": id})).await;
        assert_eq!(missing["error"]["code"], -32010, "nothing stored for {id}: {missing}");
    }

    // A card URL that redirects to the metadata address: registered (its own address is
    // fine), without a card, the guard's reason given; nothing was fetched there.
    let redirected = call("agents/upsert", json!({"agent": {"id": "redirected", "url": format!("{redirect}/")}})).await;
    let error = redirected["result"]["cardError"].as_str().unwrap_or_default();
    assert!(error.contains("169.254.169.254 is a link-local (cloud metadata) address"), "{redirected}");
    assert_eq!(redirected["result"]["card"], Value::Null, "{redirected}");

    // A redirect loop on an allowed address stops after agents.redirects_max (3) hops.
    let looped = call("agents/upsert", json!({"agent": {"id": "looping", "url": format!("{looping}/")}})).await;
    let error = looped["result"]["cardError"].as_str().unwrap_or_default();
    assert!(error.contains("more than 3 redirects"), "{looped}");
    assert_eq!(hits.load(Ordering::Relaxed), 4, "the first request and 3 redirects, then no more");
    drop(node);
}
