//! Push notifications end to end with a real webhook receiver in the test process: every
//! committed update of a streamed task reaches it once per event id with the config's token;
//! a receiver that is down at first gets every event, in order, once it is up (retries
//! counted); a receiver answering 400 is given up on after one try, visible in the config's
//! status; the config methods answer their exact errors, and private targets are refused;
//! in a 3-node cluster, the leader killed while it retries: the new leader delivers every
//! event; SuperX's HMAC and HS256 JWT, and JWTs signed with the cluster's key (JWKS), verify
//! at the receiver.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::cluster::{first_then_rest, open_stream};
use crate::fake_agent;
use crate::support::{Cluster, call, free_port, wait_until};

/// The fake agent's stream: the task (1), four artifact chunks (2..5), COMPLETED (6).
const CHUNKS: usize = 4;
const EVENTS: u64 = 6;

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    event_id: String,
    token: Option<String>,
    content_type: String,
    body: Value,
    raw: Vec<u8>,
    headers: HeaderMap,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// What the receiver answers.
    status: Arc<AtomicU16>,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The event numbers of `task`, in the order they first arrived.
    fn events_of(&self, task: &str) -> Vec<u64> {
        let mut seen = vec![];
        for h in self.hits() {
            let (t, n) = h.event_id.rsplit_once(':').expect("event id is task:n");
            let n: u64 = n.parse().unwrap();
            if t == task && !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen
    }
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    r.hits.lock().unwrap().push(Hit {
        event_id: header("superx-event-id").unwrap_or_default(),
        token: header("x-a2a-notification-token"),
        content_type: header("content-type").unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        headers: headers.clone(),
    });
    StatusCode::from_u16(r.status.load(Ordering::Relaxed)).unwrap()
}

/// A receiver on `port` (0: any), answering `status`.
async fn receiver(port: u16, status: u16) -> Receiver {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let r =
        Receiver { url: format!("http://{addr}/hook"), hits: Arc::default(), status: Arc::new(AtomicU16::new(status)) };
    let app = Router::new().route("/hook", post(hook)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    r
}

fn node(agent_url: &str, env: &[(&str, &str)]) -> Cluster {
    let mut all = vec![("SUPERX_PUSH__ALLOW_CIDRS", "127.0.0.0/8")];
    all.extend_from_slice(env);
    let env: Vec<(String, String)> = all.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let url = agent_url.to_owned();
    std::thread::spawn(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Cluster::new(1, &url, &env)
    })
    .join()
    .unwrap()
}

fn message_with_hook(url: &str, token: Option<&str>) -> Value {
    let mut hook = json!({"id": "hook", "url": url});
    if let Some(token) = token {
        hook["token"] = json!(token);
    }
    json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]},
        "configuration": {"taskPushNotificationConfig": hook}})
}

/// Streams the fake agent's task with a webhook set in the message; answers its id once the
/// stream ended.
async fn streamed_task(base: &str, agent: &fake_agent::FakeAgent, hook_url: &str, token: Option<&str>) -> String {
    let (first, rest) =
        first_then_rest(open_stream(base, "SendStreamingMessage", message_with_hook(hook_url, token)).await).await;
    let task_id = first["result"]["task"]["id"].as_str().expect("a task first").to_owned();
    agent.go.add_permits(1);
    let rest = rest.await.unwrap();
    assert_eq!(rest.last().unwrap()["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    task_id
}

/// SuperX's view of a config: the 1.0 config plus its delivery status.
fn status_of(base: &str, task_id: &str) -> Value {
    let reply =
        call(base, "/rpc", "tasks.pushNotificationConfig.get", json!({"taskId": task_id, "configId": "hook"}), None);
    reply["result"]["deliveryStatus"].clone()
}

fn push_health(base: &str) -> Value {
    let (_, body) = crate::support::get(&format!("{base}/health")).expect("health answers");
    serde_json::from_str::<Value>(&body).unwrap()["push"].clone()
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_reaches_the_webhook_with_its_token_and_the_config_methods_answer_exactly() {
    let agent = fake_agent::start(CHUNKS, 10).await;
    let rx = receiver(0, 200).await;
    let cluster = node(&agent.url, &[]);
    let base = cluster.base(1);
    let task_id = streamed_task(&base, &agent, &rx.url, Some("tok-a")).await;
    blocking(|| wait_until(Duration::from_secs(20), || rx.events_of(&task_id).len() as u64 == EVENTS));
    assert_eq!(rx.events_of(&task_id), (1..=EVENTS).collect::<Vec<_>>(), "in order");
    let hits = rx.hits();
    assert!(hits.iter().all(|h| h.token.as_deref() == Some("tok-a") && h.content_type == "application/a2a+json"));
    assert_eq!(hits[0].body["task"]["id"], task_id.as_str());
    assert_eq!(hits[1].body["artifactUpdate"]["taskId"], task_id.as_str());
    let last = &hits.iter().find(|h| h.event_id == format!("{task_id}:{EVENTS}")).unwrap().body;
    assert_eq!(last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    blocking(|| wait_until(Duration::from_secs(10), || status_of(&base, &task_id)["deliveredTotal"] == EVENTS));

    blocking(|| {
        let agent_path = "/agents/echo";
        let got =
            call(&base, agent_path, "GetTaskPushNotificationConfig", json!({"taskId": task_id, "id": "hook"}), None);
        assert_eq!(got["result"], json!({"id": "hook", "taskId": task_id, "url": rx.url, "token": "tok-a"}));
        let list = call(&base, agent_path, "ListTaskPushNotificationConfigs", json!({"taskId": task_id}), None);
        assert_eq!(list["result"]["configs"].as_array().unwrap().len(), 1);
        assert_eq!(list["result"]["nextPageToken"], "");
        let code = |reply: Value| reply["error"]["code"].as_i64();
        let missing =
            call(&base, agent_path, "GetTaskPushNotificationConfig", json!({"taskId": task_id, "id": "nope"}), None);
        assert_eq!(code(missing), Some(-32001));
        let create = json!({"taskId": "no-such-task", "url": rx.url});
        assert_eq!(code(call(&base, agent_path, "CreateTaskPushNotificationConfig", create, None)), Some(-32001));
        for target in ["http://169.254.169.254/latest", "http://10.0.0.1/hook", "http://[::1]:9/hook"] {
            let create = json!({"taskId": task_id, "id": "ssrf", "url": target});
            let refused = call(&base, agent_path, "CreateTaskPushNotificationConfig", create, None);
            assert_eq!(code(refused.clone()), Some(-32602), "{target}: {refused}");
            assert!(refused["error"]["message"].as_str().unwrap().contains("push.allow_cidrs"), "{refused}");
        }
        let deleted =
            call(&base, agent_path, "DeleteTaskPushNotificationConfig", json!({"taskId": task_id, "id": "hook"}), None);
        assert_eq!(deleted["result"], Value::Null, "{deleted}");
        let again =
            call(&base, agent_path, "DeleteTaskPushNotificationConfig", json!({"taskId": task_id, "id": "hook"}), None);
        assert!(again.get("error").is_none(), "delete is idempotent: {again}");
        let gone =
            call(&base, agent_path, "GetTaskPushNotificationConfig", json!({"taskId": task_id, "id": "hook"}), None);
        assert_eq!(code(gone), Some(-32001));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_up_gets_every_event_in_order_and_a_400_is_given_up_at_once() {
    let agent = fake_agent::start(CHUNKS, 10).await;
    let env = [("PUSH_MAX_ATTEMPTS", "100"), ("PUSH_RETRY_BASE_MS", "20"), ("SUPERX_PUSH__RETRY_MAX_MS", "200")];
    let cluster = node(&agent.url, &env);
    let base = cluster.base(1);
    // Down: nothing listens on the port yet.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let task_id = streamed_task(&base, &agent, &url, None).await;
    // Attempts are counted live in /health (a config's status counts them once the event is
    // done with).
    blocking(|| wait_until(Duration::from_secs(20), || push_health(&base)["attemptsTotal"].as_u64() >= Some(3)));
    assert_eq!(blocking(|| status_of(&base, &task_id))["deliveredTotal"], 0);
    let rx = receiver(port, 200).await;
    blocking(|| wait_until(Duration::from_secs(30), || rx.events_of(&task_id).len() as u64 == EVENTS));
    assert_eq!(rx.events_of(&task_id), (1..=EVENTS).collect::<Vec<_>>(), "in order");
    assert!(rx.hits().iter().all(|h| h.token.is_none()));
    blocking(|| wait_until(Duration::from_secs(10), || status_of(&base, &task_id)["deliveredTotal"] == EVENTS));
    let status = blocking(|| status_of(&base, &task_id));
    assert_eq!(status["givenUpTotal"], 0);
    assert!(status["attemptsTotal"].as_u64().unwrap() > EVENTS, "retries are counted: {status}");

    // A receiver answering 400: one try, given up, on record.
    let refusing = receiver(0, 400).await;
    let send = json!({"message": {"messageId": "m2", "role": "ROLE_USER", "parts": [{"text": "once"}]},
        "configuration": {"taskPushNotificationConfig": {"id": "hook", "url": refusing.url}}});
    let task_id = blocking(|| {
        let reply = call(&base, "/agents/echo", "SendMessage", send, None);
        reply["result"]["task"]["id"].as_str().expect("a task").to_owned()
    });
    blocking(|| wait_until(Duration::from_secs(20), || status_of(&base, &task_id)["givenUpTotal"] == 1));
    let status = blocking(|| status_of(&base, &task_id));
    assert_eq!((status["attemptsTotal"].as_u64(), status["deliveredTotal"].as_u64()), (Some(1), Some(0)));
    assert_eq!(status["lastError"], "HTTP 400");
    assert_eq!(refusing.hits().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_delivering_leader_mid_retry_loses_no_event() {
    let agent = fake_agent::start(CHUNKS, 10).await;
    let env = [
        ("SUPERX_PUSH__ALLOW_CIDRS", "127.0.0.0/8"),
        ("PUSH_MAX_ATTEMPTS", "1000"),
        ("PUSH_RETRY_BASE_MS", "20"),
        ("SUPERX_PUSH__RETRY_MAX_MS", "100"),
    ];
    let url = agent.url.clone();
    let mut cluster = blocking(move || Cluster::new(3, &url, &env));
    let leader = blocking(|| cluster.leader());
    // The receiver is down: the leader retries every event.
    let port = free_port();
    let hook_url = format!("http://127.0.0.1:{port}/hook");
    let task_id = streamed_task(&cluster.base(leader), &agent, &hook_url, Some("tok")).await;
    let leader_base = cluster.base(leader);
    blocking(|| wait_until(Duration::from_secs(20), || push_health(&leader_base)["attemptsTotal"].as_u64() >= Some(3)));
    blocking(|| cluster.kill(leader));
    let survivor = cluster.nodes.keys().copied().next().unwrap();
    let new_leader = blocking(|| cluster.leader());
    assert_ne!(new_leader, leader);
    let rx = receiver(port, 200).await;
    blocking(|| wait_until(Duration::from_secs(30), || rx.events_of(&task_id).len() as u64 == EVENTS));
    assert_eq!(rx.events_of(&task_id), (1..=EVENTS).collect::<Vec<_>>(), "every event, first arrivals in order");
    assert!(rx.hits().iter().all(|h| h.token.as_deref() == Some("tok")));
    let base = cluster.base(survivor);
    blocking(|| wait_until(Duration::from_secs(10), || status_of(&base, &task_id)["deliveredTotal"] == EVENTS));
}

/// A SuperX client's webhook with an HMAC secret and an HS256 JWT secret, set in
/// `metadata.webhook` of `message.send` on `/rpc`: the receiver verifies both over the exact
/// bytes it got, and the claims name the task and the body's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superx_signed_webhooks_verify_at_the_receiver() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    let agent = fake_agent::start(0, 0).await;
    let rx = receiver(0, 200).await;
    let cluster = node(&agent.url, &[]);
    let base = cluster.base(1);
    let webhook = json!({"url": rx.url, "hmacSecret": "h-secret", "jwtSecret": "j-secret", "jwtIssuer": "superx",
        "jwtKid": "k1", "token": "tok"});
    let params = json!({"agentId": "echo", "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "signed"}]},
        "metadata": {"webhook": webhook}});
    let task_id = blocking(|| {
        let reply = call(&base, "/rpc", "message.send", params, None);
        reply["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("a task: {reply}")).to_owned()
    });
    blocking(|| wait_until(Duration::from_secs(20), || rx.events_of(&task_id) == [1]));
    let hit = rx.hits().remove(0);
    let header = |name: &str| hit.headers.get(name).unwrap().to_str().unwrap().to_owned();
    let mac = |key: &[u8], data: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let signed = [header("x-a2a-timestamp").as_bytes(), b".", &hit.raw].concat();
    assert_eq!(header("x-a2a-signature"), hex(&mac(b"h-secret", &signed)));
    let jwt = header("authorization").strip_prefix("Bearer ").expect("a bearer JWT").to_owned();
    let parts: Vec<&str> = jwt.split('.').collect();
    let input = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), mac(b"j-secret", input.as_bytes()));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!((claims["taskId"].as_str(), claims["iss"].as_str()), (Some(task_id.as_str()), Some("superx")));
    assert_eq!(claims["hash"], hex(&Sha256::digest(&hit.raw)));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);
    assert_eq!(hit.token.as_deref(), Some("tok"));
    // The secrets never come back: SuperX's view names the signatures only.
    let shown = blocking(|| {
        call(&base, "/rpc", "tasks.pushNotificationConfig.get", json!({"taskId": task_id, "configId": "webhook"}), None)
    });
    assert_eq!(shown["result"]["signing"], json!(["hmac-sha256", "jwt-hs256"]), "{shown}");
    assert!(!shown.to_string().contains("secret"), "{shown}");
}

/// A config asking for `Bearer` without credentials gets a JWT signed with the cluster's own
/// key (ES256), which verifies with the JWKS the gateway publishes at a well-known URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_signed_jwts_verify_with_the_published_jwks() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};

    let agent = fake_agent::start(0, 0).await;
    let rx = receiver(0, 200).await;
    let cluster = node(&agent.url, &[]);
    let base = cluster.base(1);
    let send = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "jwks"}]},
        "configuration": {"taskPushNotificationConfig": {"url": rx.url, "authentication": {"scheme": "Bearer"}}}});
    let task_id = blocking(|| {
        let reply = call(&base, "/agents/echo", "SendMessage", send, None);
        reply["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("a task: {reply}")).to_owned()
    });
    blocking(|| wait_until(Duration::from_secs(20), || rx.events_of(&task_id) == [1]));
    let hit = rx.hits().remove(0);
    let jwt = hit.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let (_, jwks) = blocking(|| crate::support::get(&format!("{base}/.well-known/jwks.json"))).unwrap();
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    let jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the key is published");
    assert_eq!((header["alg"].as_str(), jwk["crv"].as_str()), (Some("ES256"), Some("P-256")));
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let input = format!("{}.{}", parts[0], parts[1]);
    key.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("the JWT verifies");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["taskId"], task_id.as_str());
    assert_eq!(claims["hash"], Sha256::digest(&hit.raw).iter().map(|b| format!("{b:02x}")).collect::<String>());
    // The config reads back as it was set: Bearer, no credentials.
    let got = blocking(|| {
        call(&base, "/agents/echo", "GetTaskPushNotificationConfig", json!({"taskId": task_id, "id": task_id}), None)
    });
    assert_eq!(got["result"]["authentication"], json!({"scheme": "Bearer"}), "{got}");
}
