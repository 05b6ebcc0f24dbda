//! The replica: the one door through which commands reach the tables, and reads leave them.
//!
//! Today a node is a cluster of one and a proposal is applied as soon as it is proposed; the
//! replicated-state issue puts the raft log (crate `superx-raft`) behind `propose` without
//! changing its callers: `propose` answers only once the command is committed and applied,
//! and reads see every command proposed before them.

use std::sync::{Arc, RwLock};

use super::{Command, Refusal, TableLimits, Tables};
use crate::tasks::Subscriptions;

/// Why a proposal did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

pub struct Replica {
    node_id: u64,
    tables: RwLock<Tables>,
    subscriptions: Arc<Subscriptions>,
}

/// A point-in-time view of replication, for `cluster/status`.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub node_id: u64,
    pub role: &'static str,
    pub leader: Option<u64>,
    pub applied_index: u64,
    pub members: Vec<u64>,
}

impl Replica {
    pub fn new(node_id: u64, limits: TableLimits, subscriptions: Arc<Subscriptions>) -> Self {
        Replica { node_id, tables: RwLock::new(Tables::new(limits)), subscriptions }
    }

    /// The subscriptions that applied task events are published to.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Commits and applies a command; answers after it is applied.
    pub async fn propose(&self, command: Command) -> Result<(), ProposeError> {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        // Published under the write lock, so subscribers see events in apply order.
        if let Some(event) = tables.apply(command)? {
            self.subscriptions.publish(event);
        }
        Ok(())
    }

    /// Runs a read against the local tables.
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        f(&tables)
    }

    /// True once the node can serve: state loaded and a leader known (always, for one node).
    pub fn is_ready(&self) -> bool {
        true
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            node_id: self.node_id,
            role: "leader",
            leader: Some(self.node_id),
            applied_index: self.read(|t| t.applied_commands()),
            members: vec![self.node_id],
        }
    }
}
