//! TLS on the public listener: a node serves certificate A to an HTTPS client that trusts the
//! test CA; the files are replaced with certificate B and new connections get B, with no
//! restart (same process), while a connection opened before keeps working.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use superx_cluster::testsuite::TestCa;

use crate::support::{command, free_port};

const DEADLINE: Duration = Duration::from_secs(20);

/// An HTTPS client trusting only `ca`. A client made for one request has no connection and no
/// TLS session to reuse (a resumed session shows the certificate of the session's first
/// handshake), so its request sees the certificate served now.
fn client(ca: &TestCa) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let builder = reqwest::blocking::Client::builder().tls_certs_only([ca]).tls_info(true).no_proxy();
    builder.timeout(DEADLINE).build().unwrap()
}

/// The DER of the certificate the server presented, with the response's status and body.
fn get(client: &reqwest::blocking::Client, url: &str) -> Option<(Vec<u8>, u16, String)> {
    let response = client.get(url).send().ok()?;
    let der = response.extensions().get::<reqwest::tls::TlsInfo>()?.peer_certificate()?.to_vec();
    let status = response.status().as_u16();
    Some((der, status, response.text().ok()?))
}

/// Writes both files the way an operator's tooling (or a Kubernetes Secret) swaps them: each
/// written aside, then renamed into place.
fn install(dir: &Path, cert: &str, key: &str) {
    for (name, pem) in [("tls.key", key), ("tls.crt", cert)] {
        let aside = dir.join(format!(".{name}.new"));
        std::fs::write(&aside, pem).unwrap();
        std::fs::rename(&aside, dir.join(name)).unwrap();
    }
}

#[test]
fn https_certificate_is_reloaded_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new("public listener");
    let (cert_a, key_a, der_a) = ca.server_cert(&["127.0.0.1", "localhost"], "superx-a");
    let (cert_b, key_b, der_b) = ca.server_cert(&["127.0.0.1", "localhost"], "superx-b");
    install(tmp.path(), &cert_a, &key_a);
    let (cert_file, key_file) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    let listen = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let env = [
        ("SUPERX_SERVER__TLS_CERT_FILE", cert_file.to_str().unwrap()),
        ("SUPERX_SERVER__TLS_KEY_FILE", key_file.to_str().unwrap()),
        ("SUPERX_SERVER__TLS_RELOAD_MS", "100"),
    ];
    let mut child = command(&tmp.path().join("data"), &["--listen", &listen, "--raft-listen", &raft], &env)
        .spawn()
        .expect("spawn superx");
    let base = format!("https://{listen}");
    let kept = client(&ca);

    let start = Instant::now();
    let first = loop {
        if let Some(answer) = get(&client(&ca), &format!("{base}/ready")).filter(|(_, status, _)| *status == 200) {
            break answer;
        }
        assert!(child.try_wait().unwrap().is_none(), "superx exited");
        assert!(start.elapsed() < DEADLINE, "no HTTPS /ready within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.0, der_a, "certificate A served");
    // A kept-alive connection opened on A, and the gateway card names the https base.
    let (der, status, body) = get(&kept, &format!("{base}/.well-known/agent-card.json")).unwrap();
    assert_eq!((der.as_slice(), status), (der_a.as_slice(), 200));
    let card: Value = serde_json::from_str(&body).unwrap();
    assert!(card.to_string().contains(&format!("https://{listen}")), "card names the https base: {card}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://{listen}/health")).send().is_err(), "plain HTTP answered on the TLS port");

    install(tmp.path(), &cert_b, &key_b);
    let reloaded = Instant::now();
    loop {
        let (der, status, _) = get(&client(&ca), &format!("{base}/health")).expect("HTTPS answer during the reload");
        assert_eq!(status, 200);
        if der == der_b {
            break;
        }
        assert_eq!(der, der_a, "a certificate that is neither A nor B");
        assert!(reloaded.elapsed() < DEADLINE, "certificate B not served within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("certificate B served {:?} after the files changed", reloaded.elapsed());
    assert!(child.try_wait().unwrap().is_none(), "the same process serves B");
    // JSON-RPC over TLS on a new connection.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "agents/list", "params": {}});
    let reply: Value = client(&ca).post(format!("{base}/rpc")).json(&body).send().unwrap().json().unwrap();
    assert!(reply.get("result").is_some(), "{reply}");
    // The connection opened on A still works (it keeps its certificate).
    let (der, status, _) = get(&kept, &format!("{base}/health")).unwrap();
    assert_eq!(status, 200);
    eprintln!("kept-alive connection still on {}", if der == der_a { "A" } else { "B (reconnected)" });

    // A broken pair (B's certificate with a key that does not match) is refused; B stays.
    let (_, key_c, _) = ca.server_cert(&["127.0.0.1"], "superx-c");
    install(tmp.path(), &cert_b, &key_c);
    let log = tmp.path().join("data.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("TLS files unusable") {
        assert!(start.elapsed() < DEADLINE, "the broken pair was not reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (der, status, _) = get(&client(&ca), &format!("{base}/health")).unwrap();
    assert_eq!((der, status), (der_b, 200), "B kept after a broken pair");
    let _ = child.kill();
    let _ = child.wait();
}
