//! Credentials toward agents, with a token endpoint and agents in the test process that check
//! what they get: OAuth2 client credentials (one token fetch shared by concurrent callers, a
//! 401 from the agent answered by one new token and one retry, a token refreshed before it
//! expires, a token endpoint that fails answered as a retryable agent-unavailable error), and
//! a client's own credentials forwarded to the one agent configured for it and to no other.
//! No secret or token shows in `agents/list`, `agents/get` or the node's log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::owner::{ADMIN, create_key};
use crate::support::{call_as, start, wait_until};

const CLIENT_ID: &str = "superx-gw";
const CLIENT_SECRET: &str = "client-secret-for-the-agent-auth-tests";

/// What one agent got: its name, `Authorization`, `X-API-Key`.
type Seen = (String, Option<String>, Option<String>);

/// A token the endpoint issued.
struct Issued {
    expires: Instant,
}

#[derive(Default)]
struct Idp {
    fetches: AtomicU64,
    /// `expires_in` of the next tokens.
    lifetime_secs: AtomicU64,
    /// Answer 500 to token requests.
    down: AtomicBool,
    tokens: Mutex<HashMap<String, Issued>>,
    /// The agent refuses tokens issued before this fetch number.
    refuse_below: AtomicU64,
    /// Tokens the agent got after they had expired.
    expired_seen: AtomicU64,
    /// Every (agent path, Authorization, X-API-Key) the agents got.
    seen: Mutex<Vec<Seen>>,
}

async fn token(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> Response {
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some("a2a.call tasks")
        || form.get("audience").map(String::as_str) != Some("https://agent.test")
    {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    }
    if idp.down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    // Slow enough that callers arriving together overlap with the fetch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = idp.fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let lifetime = idp.lifetime_secs.load(Ordering::SeqCst);
    let value = format!("tok-{n}-opaque-token-value");
    idp.tokens
        .lock()
        .unwrap()
        .insert(value.clone(), Issued { expires: Instant::now() + Duration::from_secs(lifetime) });
    axum::Json(json!({"access_token": value, "token_type": "Bearer", "expires_in": lifetime})).into_response()
}

/// The number a token was issued as (`tok-N-...`).
fn token_number(token: &str) -> u64 {
    token.strip_prefix("tok-").and_then(|t| t.split('-').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// An agent at `/{name}/`: records what it got; the `oauth` one answers 401 to a token it did
/// not issue, one refused, or an expired one (counting those).
async fn agent(
    State(idp): State<Arc<Idp>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<Value>,
) -> Response {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let authorization = header("authorization");
    idp.seen.lock().unwrap().push((name.clone(), authorization.clone(), header("x-api-key")));
    if name == "oauth" {
        let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let expired = idp.tokens.lock().unwrap().get(token).map(|t| Instant::now() >= t.expires);
        if expired == Some(true) {
            idp.expired_seen.fetch_add(1, Ordering::SeqCst);
        }
        if expired != Some(false) || token_number(token) < idp.refuse_below.load(Ordering::SeqCst) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let task = json!({"task": {"id": format!("{name}-{}", uuid::Uuid::new_v4()), "contextId": "c",
        "status": {"state": "TASK_STATE_COMPLETED"}}});
    axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": task})).into_response()
}

async fn serve(idp: Arc<Idp>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route("/{name}/", axum::routing::post(agent))
        .with_state(idp);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// An agents file entry with its card inline (no card fetch).
fn agent_yaml(base: &str, name: &str, extra: &str) -> String {
    let card = json!({"name": name, "description": "d", "version": "1",
        "supportedInterfaces": [{"url": format!("{base}/{name}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": []});
    format!("  {name}:\n    url: {base}/{name}/\n    metadata: {{agentCard: {card}}}\n{extra}")
}

fn send(base: &str, agent: &str, headers: &[(&str, &str)]) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}});
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut req = client.post(format!("{base}/agents/{agent}")).header("A2A-Version", "1.0").json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap().json().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_and_forwarded_credentials_reach_only_their_agent() {
    let idp = Arc::new(Idp::default());
    idp.lifetime_secs.store(3600, Ordering::SeqCst);
    let server = serve(idp.clone()).await;
    tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let agents = tmp.path().join("agents.yml");
        let oauth = format!(
            "    oauth2:\n      tokenUrl: {server}/token\n      clientId: {CLIENT_ID}\n      clientSecretEnv: AGENT_OAUTH_SECRET\n      scopes: [a2a.call, tasks]\n      audience: https://agent.test\n"
        );
        let literal = format!(
            "    oauth2:\n      tokenUrl: {server}/token\n      clientId: other\n      clientSecret: literal-secret-never-shown\n"
        );
        let file = format!(
            "agents:\n{}{}{}{}",
            agent_yaml(&server, "oauth", &oauth),
            agent_yaml(&server, "fwd", "    forwardCredentials: true\n"),
            agent_yaml(&server, "plain", ""),
            agent_yaml(&server, "literal", &literal),
        );
        std::fs::write(&agents, file).unwrap();
        let env = [
            ("SUPERX_AUTH__MODE", "required"),
            ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN),
            ("AGENT_OAUTH_SECRET", CLIENT_SECRET),
            ("LOG_LEVEL", "debug"),
        ];
        let data = tmp.path().join("node");
        let node = start(&data, &["--agents-file", agents.to_str().unwrap()], &env);
        let base = node.base.clone();
        let key = create_key(&base, "alice");
        let ok = |r: &Value| r["result"]["task"]["id"].is_string();

        // Callers arriving together share one token fetch.
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let (base, key) = (base.clone(), key.clone());
                std::thread::spawn(move || send(&base, "oauth", &[("x-api-key", &key)]))
            })
            .collect();
        for c in calls {
            let r = c.join().unwrap();
            assert!(ok(&r), "{r}");
        }
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "one fetch for six callers");

        // The agent refuses the token: one new token, one retry, shared by callers refused alike.
        idp.refuse_below.store(2, Ordering::SeqCst);
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (base, key) = (base.clone(), key.clone());
                std::thread::spawn(move || send(&base, "oauth", &[("x-api-key", &key)]))
            })
            .collect();
        for c in calls {
            let r = c.join().unwrap();
            assert!(ok(&r), "{r}");
        }
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 2, "one refetch after the 401s");

        // Short-lived tokens are replaced before they expire: the agent never gets an expired one.
        idp.lifetime_secs.store(2, Ordering::SeqCst);
        idp.refuse_below.store(3, Ordering::SeqCst);
        assert!(ok(&send(&base, "oauth", &[("x-api-key", &key)])));
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 3);
        let third_expires = idp.tokens.lock().unwrap().iter().find(|(t, _)| token_number(t) == 3).unwrap().1.expires;
        wait_until(Duration::from_secs(10), || {
            assert!(ok(&send(&base, "oauth", &[("x-api-key", &key)])));
            idp.fetches.load(Ordering::SeqCst) >= 4
        });
        let fourth_expires = idp.tokens.lock().unwrap().iter().find(|(t, _)| token_number(t) == 4).unwrap().1.expires;
        // Issued with a 2 s lifetime: the fourth came before the third expired.
        assert!(fourth_expires - Duration::from_secs(2) < third_expires, "refreshed only after expiry");
        assert_eq!(idp.expired_seen.load(Ordering::SeqCst), 0, "the agent got an expired token");

        // No token to be had: a retryable agent-unavailable answer, not an internal error.
        idp.down.store(true, Ordering::SeqCst);
        idp.refuse_below.store(1000, Ordering::SeqCst);
        let r = send(&base, "oauth", &[("x-api-key", &key)]);
        assert_eq!(r["error"]["code"], -32099, "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains("OAuth2 token") && message.contains("HTTP 500"), "{message}");
        idp.down.store(false, Ordering::SeqCst);
        idp.refuse_below.store(0, Ordering::SeqCst);
        assert!(ok(&send(&base, "oauth", &[("x-api-key", &key)])), "recovers once the endpoint does");

        // The client's credential: to the agent configured for it, in either header; never to another.
        idp.seen.lock().unwrap().clear();
        assert!(ok(&send(&base, "fwd", &[("x-api-key", &key)])));
        let bearer = format!("Bearer {key}");
        assert!(ok(&send(&base, "fwd", &[("authorization", &bearer)])));
        assert!(ok(&send(&base, "plain", &[("x-api-key", &key)])));
        assert!(ok(&send(&base, "plain", &[("authorization", &bearer)])));
        assert!(ok(&send(&base, "oauth", &[("authorization", &bearer)])));
        let seen = idp.seen.lock().unwrap().clone();
        let at = |name: &str| seen.iter().filter(|(n, _, _)| n == name).cloned().collect::<Vec<_>>();
        assert_eq!(
            at("fwd"),
            vec![("fwd".into(), None, Some(key.clone())), ("fwd".into(), Some(bearer.clone()), None)]
        );
        assert_eq!(at("plain"), vec![("plain".into(), None, None), ("plain".into(), None, None)]);
        let oauth_seen = at("oauth");
        assert!(
            oauth_seen.iter().all(|(_, a, k)| k.is_none() && a.as_deref().is_some_and(|a| a.starts_with("Bearer tok-"))),
            "{oauth_seen:?}"
        );

        // Shown without secrets; the log has none either.
        let listed = call_as(&base, "/rpc", "agents/list", json!({}), Some(ADMIN)).to_string();
        let one = call_as(&base, "/rpc", "agents/get", json!({"id": "literal"}), Some(ADMIN));
        assert_eq!(one["result"]["oauth2"]["clientSecret"], json!({"from": "value"}), "{one}");
        let oauth = call_as(&base, "/rpc", "agents/get", json!({"id": "oauth"}), Some(ADMIN));
        assert_eq!(oauth["result"]["oauth2"]["clientSecret"], json!({"from": "env", "name": "AGENT_OAUTH_SECRET"}));
        assert_eq!(oauth["result"]["oauth2"]["scopes"], json!(["a2a.call", "tasks"]));
        let fwd = call_as(&base, "/rpc", "agents/get", json!({"id": "fwd"}), Some(ADMIN));
        assert_eq!(fwd["result"]["forwardCredentials"], true, "{fwd}");
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
        let tokens: Vec<String> = idp.tokens.lock().unwrap().keys().cloned().collect();
        for secret in [CLIENT_SECRET, "literal-secret-never-shown", key.as_str()].into_iter().chain(tokens.iter().map(String::as_str)) {
            assert!(!listed.contains(secret) && !one.to_string().contains(secret), "a secret in agents/*");
            assert!(!log.contains(secret), "a secret in the node's log");
        }
        assert!(log.contains("OAuth2 token fetch failed"), "the failed fetch is logged (without secrets)");
    })
    .await
    .unwrap();
}
