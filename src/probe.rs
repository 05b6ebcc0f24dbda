//! `superx probe`: asks a node's own `/health` (or `/ready`) and exits 0 only on HTTP 200.
//!
//! The container image has no shell and no curl, so this is what a Docker `HEALTHCHECK` (and
//! any exec probe) runs: `superx probe` checks liveness, `superx probe --path /ready` checks
//! that the node knows a leader and has applied what it knows is committed.

use std::time::Duration;

/// A probe that takes longer than this failed: orchestrators run probes every few seconds,
/// and a node that cannot answer its own health endpoint in 2 s is not healthy.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The URL probed when none is given: this node's API on loopback, at `$PORT` if set (the
/// same variable `superx serve` takes its port from), else 4000; https when `tls` (the node
/// was given `SUPERX_SERVER__TLS_CERT_FILE`).
pub fn default_url(port: Option<&str>, tls: bool) -> String {
    let port = port.and_then(|p| p.trim().parse::<u16>().ok()).unwrap_or(4000);
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}

/// The node's own certificate names its public host, not 127.0.0.1, and a probe of the
/// node's own loopback address has nothing to fear from it: only that URL skips checking it.
const OWN_LOOPBACK: &str = "https://127.0.0.1:";

/// GETs `base` + `path` once; Ok with a one-line summary on 200, Err otherwise.
pub async fn check(base: &str, path: &str) -> Result<String, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    // reqwest is built without a default TLS provider; it needs one even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .danger_accept_invalid_certs(url.starts_with(OWN_LOOPBACK))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::OK {
        Ok(format!("{url}: {status} {body}"))
    } else {
        Err(format!("{url}: {status} {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_follows_port() {
        assert_eq!(default_url(None, false), "http://127.0.0.1:4000");
        assert_eq!(default_url(Some("8080"), false), "http://127.0.0.1:8080");
        assert_eq!(default_url(Some("not a port"), false), "http://127.0.0.1:4000");
        assert_eq!(default_url(Some("8443"), true), "https://127.0.0.1:8443");
    }
}
