//! This node's id: given, remembered, derived from a StatefulSet ordinal, or generated once.
//!
//! The id is the node's raft identity, so it must survive restarts: whatever way it was
//! chosen, it is written to `<data_dir>/node-id` and read back on the next start. A data dir
//! that belongs to another id is refused rather than joined under a second identity.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;

/// File in the data dir holding the node's id.
pub const NODE_ID_FILE: &str = "node-id";

/// File in the data dir holding the id of the cluster the node's raft state belongs to.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// Ids generated at random stay below 2^53, so JavaScript clients read them exactly.
const GENERATED_ID_MAX: u64 = (1 << 53) - 1;

/// Works out this node's id and records it in the data dir.
pub fn resolve(config: &Config, env: &HashMap<String, String>) -> anyhow::Result<u64> {
    let dir = Path::new(&config.server.data_dir);
    let path = dir.join(NODE_ID_FILE);
    let stored = read_stored(&path)?;
    let given = config.server.node_id;
    let id = match (given, stored) {
        (0, Some(stored)) => stored,
        (0, None) => derive(config, env),
        (given, Some(stored)) if given != stored => bail!(
            "the data dir {} belongs to node {stored}, but node id {given} was given; \
             use the node's own data dir, or an empty one for a new node",
            dir.display()
        ),
        (given, _) => given,
    };
    if stored != Some(id) {
        std::fs::write(&path, format!("{id}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(id)
}

/// Refuses a data dir whose raft state belongs to another cluster (`cluster.cluster_id`), and
/// records the id in a data dir that has none yet (a new one, or one from before the id was
/// kept). Such a node would otherwise keep its old membership and never hear the new
/// cluster: gossip only talks to nodes of the same id.
pub fn check_cluster_id(config: &Config) -> anyhow::Result<()> {
    let dir = Path::new(&config.server.data_dir);
    let path = dir.join(CLUSTER_ID_FILE);
    let wanted = config.cluster.cluster_id.as_str();
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == wanted => Ok(()),
        Ok(text) => bail!(
            "the data dir {} holds the state of cluster {:?}, but this node is configured for cluster {wanted:?}; \
             start it with an empty --data-dir (a new node of {wanted:?}), or set cluster.cluster_id = {:?} \
             (SUPERX_CLUSTER__CLUSTER_ID) to go on as a node of the old cluster",
            dir.display(),
            text.trim(),
            text.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{wanted}\n")).with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_stored(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id =
                text.trim().parse::<u64>().with_context(|| format!("{} does not hold a node id", path.display()))?;
            if id == 0 {
                bail!("{} holds node id 0, which is not a valid id", path.display());
            }
            Ok(Some(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A new node's id: 1 for a lone static node (as before clustering existed), the StatefulSet
/// ordinal + 1 where pods are named `name-N` (dns and kubernetes strategies), else random.
fn derive(config: &Config, env: &HashMap<String, String>) -> u64 {
    let strategy = config.cluster.strategy.as_str();
    if strategy == "static" && config.raft.peers.is_empty() {
        return 1;
    }
    if matches!(strategy, "dns" | "kubernetes")
        && let Some(ordinal) = env.get("HOSTNAME").and_then(|h| ordinal(h))
    {
        return ordinal + 1;
    }
    let random = uuid::Uuid::new_v4().as_u128() as u64 & GENERATED_ID_MAX;
    random.max(1)
}

/// The ordinal of a StatefulSet pod name (`superx-2` → 2).
fn ordinal(hostname: &str) -> Option<u64> {
    let (name, n) = hostname.rsplit_once('-')?;
    if name.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, strategy: &str, node_id: u64) -> Config {
        let mut c = Config::default();
        c.server.data_dir = dir.to_string_lossy().into_owned();
        c.server.node_id = node_id;
        c.cluster.strategy = strategy.into();
        c
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ordinals_come_from_statefulset_names_only() {
        assert_eq!(ordinal("superx-0"), Some(0));
        assert_eq!(ordinal("my-gateway-12"), Some(12));
        for bad in ["superx", "superx-", "-3", "superx-a1", "laptop"] {
            assert_eq!(ordinal(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_id_once_chosen_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = resolve(&config(dir.path(), "gossip", 0), &env(&[])).unwrap();
        assert!((1..=GENERATED_ID_MAX).contains(&first));
        // The next start reads it back, whatever the hostname says now.
        let again = resolve(&config(dir.path(), "kubernetes", 0), &env(&[("HOSTNAME", "superx-4")])).unwrap();
        assert_eq!(again, first);
        // A different explicit id is refused: the data dir belongs to the first node.
        let err = resolve(&config(dir.path(), "gossip", first + 1), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("belongs to node"), "{err}");
    }

    #[test]
    fn a_data_dir_of_another_cluster_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), "gossip", 0);
        c.cluster.cluster_id = "blue".into();
        check_cluster_id(&c).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(CLUSTER_ID_FILE)).unwrap().trim(), "blue");
        check_cluster_id(&c).unwrap();
        c.cluster.cluster_id = "green".into();
        let err = check_cluster_id(&c).unwrap_err().to_string();
        assert!(err.contains("cluster \"blue\"") && err.contains("empty --data-dir"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(CLUSTER_ID_FILE)).unwrap().trim(), "blue", "unchanged");
    }

    #[test]
    fn new_ids_by_rule() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(&config(dir.path(), "static", 0), &env(&[])).unwrap(), 1);
        let dir = tempfile::tempdir().unwrap();
        let id = resolve(&config(dir.path(), "kubernetes", 0), &env(&[("HOSTNAME", "superx-2")])).unwrap();
        assert_eq!(id, 3);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(&config(dir.path(), "gossip", 7), &env(&[])).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(dir.path().join(NODE_ID_FILE)).unwrap().trim(), "7");
    }
}
