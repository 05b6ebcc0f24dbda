//! The cluster secret: read from `cluster.secret_file` (or `cluster.secret`) into the
//! [`Keyring`] that raft and gossip share, and the file read again every
//! `cluster.secret_reload_ms` so a changed secret takes over without a restart (the previous
//! one stays accepted for `cluster.secret_grace_ms`; `superx_keyring` says how).

use std::path::{Path, PathBuf};
use std::time::Duration;

use superx_keyring::Keyring;

use crate::config::ClusterSection;

/// The secret the config names, if any; an unreadable file or a short secret is an error.
pub fn read(c: &ClusterSection) -> Result<Option<Vec<u8>>, String> {
    let secret = if !c.secret_file.is_empty() {
        read_file(Path::new(&c.secret_file)).map_err(|e| format!("cluster.secret_file: {e}"))?
    } else if !c.secret.is_empty() {
        c.secret.0.trim().as_bytes().to_vec()
    } else {
        return Ok(None);
    };
    if secret.len() < superx_keyring::SECRET_BYTES_MIN {
        let source = if c.secret_file.is_empty() { "cluster.secret" } else { "cluster.secret_file" };
        return Err(format!(
            "{source}: the cluster secret must be at least {} bytes (it has {}); e.g. `openssl rand -base64 32`",
            superx_keyring::SECRET_BYTES_MIN,
            secret.len()
        ));
    }
    Ok(Some(secret))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes.trim_ascii().to_vec())
}

/// The keyring of this node, or None for an open cluster; with a file, starts its reloader.
pub fn load(c: &ClusterSection) -> anyhow::Result<Option<Keyring>> {
    let Some(secret) = read(c).map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let keyring = Keyring::new(&secret).map_err(|e| anyhow::anyhow!("cluster secret: {e}"))?;
    let source = if c.secret_file.is_empty() { "cluster.secret" } else { c.secret_file.as_str() };
    tracing::info!(fingerprint = %keyring.fingerprint(), source, "cluster secret loaded: raft and gossip are closed");
    if !c.secret_file.is_empty() {
        let reload = Reload {
            keyring: keyring.clone(),
            path: PathBuf::from(&c.secret_file),
            interval: Duration::from_millis(c.secret_reload_ms),
            grace: Duration::from_millis(c.secret_grace_ms),
        };
        tokio::spawn(reload.run());
    }
    Ok(Some(keyring))
}

/// Says loudly that the cluster listeners are open (config loading refused that on a
/// non-loopback address unless `cluster.allow_open`).
pub fn warn_open(raft_listen: &str, gossip_listen: Option<&str>, allow_open: bool) {
    tracing::warn!(
        raft_listen,
        gossip_listen,
        allow_open,
        "CLUSTER IS OPEN: no cluster secret, so anyone who reaches the raft or gossip listener can send raft \
         messages or join the cluster. Give every node the same cluster.secret_file (README, \"Security\")"
    );
}

/// Reads the secret file every `interval` and rotates the keyring when it changed.
struct Reload {
    keyring: Keyring,
    path: PathBuf,
    interval: Duration,
    grace: Duration,
}

impl Reload {
    async fn run(self) {
        let mut last_error: Option<String> = None;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let outcome = read_file(&self.path).and_then(|secret| {
                let before = self.keyring.fingerprint();
                let rotated = self.keyring.rotate(&secret, self.grace).map_err(|e| e.to_string())?;
                Ok(rotated.then_some(before))
            });
            match outcome {
                Ok(Some(before)) => {
                    tracing::info!(
                        path = %self.path.display(),
                        previous = %before,
                        fingerprint = %self.keyring.fingerprint(),
                        grace = ?self.grace,
                        "cluster secret changed: the previous one stays accepted for the grace period"
                    );
                    last_error = None;
                }
                Ok(None) => last_error = None,
                Err(e) => {
                    // Keep the secret in use; say so once per distinct problem.
                    if last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(path = %self.path.display(), error = %e, "cluster secret file unusable; keeping the current secret");
                    }
                    last_error = Some(e);
                }
            }
        }
    }
}
