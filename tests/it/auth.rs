//! Authenticated callers and operators (`auth.mode = "required"`): API keys created, listed
//! and revoked through the control plane (a revoked key refused on another node of a 3-node
//! cluster within a second), JWTs (HS256 with the shared secret; RS256 and ES256 verified with
//! a JWKS this test serves on loopback; expired, wrong audience, wrong issuer, unknown key),
//! the admin credential against client ones, scoped keys answering alike for a forbidden and
//! a missing agent, both bindings' 401/403, cards declaring the schemes, and an open gateway
//! refused on a non-loopback address. No secret shows in an answer or the node's log.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_agent;
use crate::support::{Cluster, call_as, command, free_port, get, run_to_exit, start, wait_until};

const ADMIN: &str = "admin-token-for-the-auth-tests";
const HS_SECRET: &str = "hs256-secret-for-the-auth-tests-0123456789";
const ISS: &str = "https://idp.test";
const AUD: &str = "superx-test";

fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// An HTTP answer: status, `WWW-Authenticate`, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: Value,
    text: String,
}

fn reply(r: reqwest::blocking::Response) -> Reply {
    let status = r.status().as_u16();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().unwrap();
    Reply { status, challenge, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

/// A JSON-RPC call (A2A 1.0) with these extra headers.
fn rpc(base: &str, path: &str, method: &str, params: Value, headers: &[(&str, &str)]) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let mut req = http().post(format!("{base}{path}")).header("A2A-Version", "1.0").json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send().unwrap())
}

fn message(text: &str) -> Value {
    json!({"message": {"messageId": text, "role": "ROLE_USER", "parts": [{"text": text}]}})
}

fn send_as(base: &str, bearer: &str) -> Reply {
    let auth = format!("Bearer {bearer}");
    rpc(base, "/agents/echo", "SendMessage", message("hi"), &[("authorization", &auth)])
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(exp_in: i64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": (now() as i64 + exp_in) as u64, "iat": now()})
}

fn compact(header: Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let signed =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn hs256(claims: &Value) -> String {
    compact(json!({"alg": "HS256", "typ": "JWT"}), claims, |m| {
        let mut mac = Hmac::<Sha256>::new_from_slice(HS_SECRET.as_bytes()).unwrap();
        mac.update(m);
        mac.finalize().into_bytes().to_vec()
    })
}

/// The test's identity provider: an RSA and a P-256 key, and their JWKS.
struct Idp {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    jwks: Value,
}

impl Idp {
    fn new() -> Idp {
        // ring makes no RSA keys; openssl does (DER on stdout: PKCS#1 from OpenSSL 3.0).
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER"])
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl genpkey failed");
        let rsa = RsaKeyPair::from_der(&out.stdout).or_else(|_| RsaKeyPair::from_pkcs8(&out.stdout)).unwrap();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let n_e = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
        let point = ec.public_key().as_ref();
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b(&n_e.n), "e": b(&n_e.e)},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b(&point[1..33]), "y": b(&point[33..])},
        ]});
        Idp { rsa, ec, jwks }
    }

    fn rs256(&self, kid: &str, claims: &Value) -> String {
        compact(json!({"alg": "RS256", "kid": kid}), claims, |m| {
            let mut sig = vec![0; self.rsa.public().modulus_len()];
            self.rsa.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut sig).unwrap();
            sig
        })
    }

    fn es256(&self, kid: &str, claims: &Value) -> String {
        compact(json!({"alg": "ES256", "kid": kid}), claims, |m| {
            self.ec.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec()
        })
    }
}

/// Serves `jwks` at `/jwks.json` on loopback; answers the URL.
async fn serve_jwks(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn auth_env(jwks_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SUPERX_AUTH__MODE", "required".into()),
        ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN.into()),
        ("SUPERX_AUTH__JWT_HS256_SECRET", HS_SECRET.into()),
        ("SUPERX_AUTH__JWKS_URL", jwks_url.into()),
        ("SUPERX_AUTH__JWT_ISSUER", ISS.into()),
        ("SUPERX_AUTH__JWT_AUDIENCES", format!("other,{AUD}")),
        ("SUPERX_AUTH__JWT_ADMIN_SCOPE", "superx:admin".into()),
        ("SUPERX_AUTH__JWKS_REFETCH_MIN_SECONDS", "1".into()),
        ("LOG_LEVEL", "debug".into()),
    ]
}

fn create_key(base: &str, params: Value) -> (String, String) {
    let r = call_as(base, "/rpc", "keys/create", params, Some(ADMIN));
    let result = &r["result"];
    (result["id"].as_str().expect("a key id").to_owned(), result["key"].as_str().expect("the key").to_owned())
}

fn assert_refused(r: &Reply, status: u16, code: i64) {
    assert_eq!((r.status, r.body["error"]["code"].as_i64()), (status, Some(code)), "{r:?}");
    assert_eq!(r.challenge.is_some(), status == 401, "WWW-Authenticate on 401 only: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_jwts_and_the_admin_credential() {
    let agent = fake_agent::start(0, 0).await;
    let idp = Idp::new();
    let jwks_url = serve_jwks(idp.jwks.clone()).await;
    tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let agents = tmp.path().join("agents.yml");
        std::fs::write(&agents, format!("agents:\n  echo:\n    url: {}\n", agent.url)).unwrap();
        let env = auth_env(&jwks_url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = tmp.path().join("node");
        let node = start(&data, &["--agents-file", agents.to_str().unwrap()], &env);
        let base = node.base.as_str();
        let mut secrets = vec![ADMIN.to_owned(), HS_SECRET.to_owned()];

        // Public: health, cards (which declare the schemes).
        assert_eq!(get(&format!("{base}/health")).unwrap().0, 200);
        let card: Value =
            serde_json::from_str(&get(&format!("{base}/agents/echo/.well-known/agent-card.json")).unwrap().1).unwrap();
        assert_eq!(card["securitySchemes"]["apiKey"]["name"], "X-API-Key", "{card}");
        assert_eq!(card["security"], json!([{"apiKey": []}, {"bearer": []}]));
        let strict = http()
            .get(format!("{base}/agents/echo/.well-known/agent-card.json"))
            .header("A2A-Version", "1.0")
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap();
        assert_eq!(strict["securitySchemes"]["apiKey"]["apiKeySecurityScheme"]["location"], "header", "{strict}");
        assert_eq!(strict["securityRequirements"][1]["schemes"]["bearer"], json!({"list": []}));

        // No credential: 401 on both bindings, with a challenge.
        assert_refused(&rpc(base, "/agents/echo", "SendMessage", message("x"), &[]), 401, -32030);
        let rest = reply(
            http()
                .post(format!("{base}/agents/echo/message:send"))
                .header("A2A-Version", "1.0")
                .json(&message("x"))
                .send()
                .unwrap(),
        );
        assert_eq!((rest.status, rest.body["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")), "{rest:?}");
        assert!(rest.challenge.is_some());
        assert_eq!(reply(http().get(format!("{base}/cluster")).send().unwrap()).status, 401);

        // The admin token: the control plane and every agent.
        let admin_list = call_as(base, "/rpc", "agents/list", json!({}), Some(ADMIN));
        assert_eq!(admin_list["result"][0]["id"], "echo", "{admin_list}");
        assert_eq!(send_as(base, ADMIN).status, 200);

        // Client keys: A2A yes (X-API-Key or bearer), control plane no.
        let (client_id, client) = create_key(base, json!({"name": "ci"}));
        let (_, scoped) = create_key(base, json!({"name": "scoped", "agents": ["other"]}));
        let (_, admin_key) = create_key(base, json!({"name": "ops", "role": "admin"}));
        secrets.extend([client.clone(), scoped.clone(), admin_key.clone()]);
        let by_header = rpc(base, "/agents/echo", "SendMessage", message("k"), &[("x-api-key", &client)]);
        assert_eq!(by_header.status, 200, "{by_header:?}");
        assert!(by_header.body["result"]["task"]["id"].is_string(), "{by_header:?}");
        assert_eq!(send_as(base, &client).status, 200);
        assert_refused(&rpc(base, "/rpc", "agents/list", json!({}), &[("x-api-key", &client)]), 403, -32031);
        assert_refused(&rpc(base, "/rpc", "keys/create", json!({}), &[("x-api-key", &client)]), 403, -32031);
        assert_eq!(call_as(base, "/rpc", "agents/list", json!({}), Some(&admin_key))["result"][0]["id"], "echo");
        let listed = call_as(base, "/rpc", "keys/list", json!({}), Some(ADMIN));
        assert_eq!(listed["result"].as_array().unwrap().len(), 3, "{listed}");
        let shown = listed.to_string();
        assert!(secrets.iter().all(|s| !shown.contains(s.as_str())) && !shown.contains("hash"), "{shown}");

        // A scoped key: another agent and a missing one answer alike; /rpc is refused.
        let forbidden = rpc(base, "/agents/echo", "SendMessage", message("s"), &[("x-api-key", &scoped)]);
        let missing = rpc(base, "/agents/nosuch", "SendMessage", message("s"), &[("x-api-key", &scoped)]);
        assert_refused(&forbidden, 403, -32031);
        assert_eq!((forbidden.status, &forbidden.text), (missing.status, &missing.text));
        let rest_forbidden = reply(
            http()
                .get(format!("{base}/agents/echo/tasks/t1"))
                .header("A2A-Version", "1.0")
                .header("x-api-key", &scoped)
                .send()
                .unwrap(),
        );
        assert_eq!(rest_forbidden.status, 403, "{rest_forbidden:?}");
        let mut via_rpc = message("s");
        via_rpc["agentId"] = json!("other");
        assert_refused(&rpc(base, "/rpc", "SendMessage", via_rpc, &[("x-api-key", &scoped)]), 403, -32031);

        // JWTs.
        assert_eq!(send_as(base, &hs256(&claims(300))).status, 200);
        assert_refused(&send_as(base, &hs256(&claims(-300))), 401, -32030);
        for (member, value) in [("aud", json!("someone-else")), ("iss", json!("https://evil.test"))] {
            let mut c = claims(300);
            c[member] = value;
            assert_refused(&send_as(base, &hs256(&c)), 401, -32030);
        }
        assert_eq!(send_as(base, &idp.rs256("rsa-1", &claims(300))).status, 200, "RS256 from the JWKS");
        assert_eq!(send_as(base, &idp.es256("ec-1", &claims(300))).status, 200, "ES256 from the JWKS");
        assert_refused(&send_as(base, &idp.es256("unknown", &claims(300))), 401, -32030);
        assert_refused(&send_as(base, &idp.rs256("ec-1", &claims(300))), 401, -32030);
        let jwt = idp.rs256("rsa-1", &claims(300));
        assert_refused(
            &rpc(base, "/rpc", "agents/list", json!({}), &[("authorization", &format!("Bearer {jwt}"))]),
            403,
            -32031,
        );
        let mut admin_claims = claims(300);
        admin_claims["scope"] = json!("openid superx:admin");
        let admin_jwt = idp.es256("ec-1", &admin_claims);
        assert_eq!(call_as(base, "/rpc", "agents/list", json!({}), Some(&admin_jwt))["result"][0]["id"], "echo");
        secrets.push(jwt);

        // Revoked: refused from then on.
        assert_eq!(call_as(base, "/rpc", "keys/revoke", json!({"id": client_id}), Some(ADMIN))["result"], true);
        assert_refused(&send_as(base, &client), 401, -32030);

        let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
        assert!(log.contains("API key created"), "the log records key changes");
        for secret in &secrets {
            assert!(!log.contains(secret.as_str()), "a secret in the node's log");
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_on_another_node_within_a_second() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let env = [("SUPERX_AUTH__MODE", "required"), ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN)];
        let cluster = Cluster::new(3, &agent.url, &env);
        let leader = cluster.leader();
        let (via, other) = (leader % 3 + 1, (leader + 1) % 3 + 1);
        let (id, key) = create_key(&cluster.base(via), json!({"name": "roaming"}));
        // Authenticated means past auth: a missing task, not a refusal.
        let code = |node: u64| {
            call_as(&cluster.base(node), "/agents/echo", "GetTask", json!({"id": "none"}), Some(&key))["error"]["code"]
                .as_i64()
        };
        wait_until(Duration::from_secs(5), || code(other) == Some(-32001));
        let revoked = call_as(&cluster.base(via), "/rpc", "keys/revoke", json!({"id": id}), Some(ADMIN));
        assert_eq!(revoked["result"], true, "{revoked}");
        let at = Instant::now();
        wait_until(Duration::from_secs(5), || code(other) == Some(-32030));
        let took = at.elapsed();
        assert!(took < Duration::from_secs(1), "node {other} still took the key {took:?} after its revocation");
        assert_eq!(code(via), Some(-32030));
    })
    .await
    .unwrap();
}

#[test]
fn an_open_gateway_is_refused_on_a_non_loopback_address_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let raft = format!("127.0.0.1:{}", free_port());
    let args = ["--listen", listen.as_str(), "--raft-listen", raft.as_str()];
    let out = run_to_exit(command(&data, &args, &[]), Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.allow_open") && stderr.contains("not a loopback address"), "{stderr}");
    assert!(!data.exists(), "refused before the data dir was made");
    let out = run_to_exit(command(&data, &args, &[("SUPERX_AUTH__ADMIN_TOKEN", ADMIN)]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "credentials with auth.mode open are a mistake");
    let mut node = command(&data, &args, &[("SUPERX_AUTH__ALLOW_OPEN", "true")]).spawn().unwrap();
    let ready = format!("http://127.0.0.1:{port}/ready");
    wait_until(Duration::from_secs(20), || get(&ready).is_some_and(|(s, _)| s == 200));
    node.kill().unwrap();
    node.wait().unwrap();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(log.contains("AUTH IS OFF"), "an open gateway says so at start:\n{log}");
}
