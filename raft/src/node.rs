//! [`Replicated`]: one raft node around the application's state machine.
//!
//! `start` opens the storage, starts openraft, the internal listener, the write batcher and the
//! membership reconciler, and initializes the cluster if this node is the one to. Writes go
//! through `propose.rs`, linearizable reads through `read.rs`; local reads take the state
//! machine's read lock directly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::ServerState;
use parking_lot::Mutex;
use redb::Database;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bootstrap;
use crate::codec::Blob;
use crate::config::{MembershipControl, RaftConfig};
use crate::error::{MembershipError, ProposeError, ReadError, StartError};
use crate::membership::{self, MembershipView};
use crate::network::auth::ServerAuth;
use crate::network::client::{NetworkFactory, PeerClient};
use crate::network::server;
use crate::propose::{self, Proposal};
use crate::read::{self, ReadWaiter};
use crate::route::{REPLY_MARGIN, Routing};
use crate::status::RaftStatus;
use crate::storage::log_store::LogStore;
use crate::storage::sm_store::{SmShared, SmStore};
use crate::storage::{open_db, open_snapshot_db};
use crate::types::{Raft, Request};
use crate::{NodeId, PeerAddr, StateMachine};

/// A running raft node replicating `SM`. Cheap to clone; all clones share the node.
pub struct Replicated<SM: StateMachine> {
    inner: Arc<Inner<SM>>,
}

impl<SM: StateMachine> Clone for Replicated<SM> {
    fn clone(&self) -> Self {
        Replicated { inner: self.inner.clone() }
    }
}

struct Inner<SM> {
    node_id: NodeId,
    config: Arc<RaftConfig>,
    raft: Raft,
    routing: Arc<Routing>,
    sm: Arc<SmShared<SM>>,
    committed: Arc<AtomicU64>,
    proposals: mpsc::Sender<Proposal>,
    reads: mpsc::Sender<ReadWaiter>,
    /// The write batcher, the read batcher and the reconciler.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Stops the raft listener, and the task serving it.
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    /// The database, to know when openraft's tasks have let go of it.
    /// The log's and the snapshot's databases: closed once nothing holds them.
    dbs: [Weak<Database>; 2],
    stopped: AtomicBool,
    /// The storage was empty when the node started.
    pristine_at_start: bool,
}

impl<SM> Drop for Inner<SM> {
    fn drop(&mut self) {
        // Without `shutdown`, stop what we spawned; openraft stops once its handles are gone.
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
        if let Some((stop, _)) = self.server.get_mut().take() {
            let _ = stop.send(());
        }
    }
}

impl<SM: StateMachine> Replicated<SM> {
    /// Binds `config.raft_listen` and starts the node.
    pub async fn start(config: RaftConfig, sm: SM) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.raft_listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.raft_listen, source })?;
        Self::start_with_listener(config, sm, listener).await
    }

    /// Starts the node on an already bound raft listener (tests bind port 0 first and put the
    /// real port in `advertise` and `peers`); `config.raft_listen` is ignored.
    pub async fn start_with_listener(config: RaftConfig, sm: SM, listener: TcpListener) -> Result<Self, StartError> {
        config.validate()?;
        let raft_config = Arc::new(config.openraft_config()?);
        let config = Arc::new(config);
        let (dbs, log_store, sm_store) = open_storage(&config, sm).await?;
        let pristine = log_store.is_pristine() && sm_store.is_pristine();
        let (committed, sm) = (log_store.committed_index(), sm_store.shared());
        let client = PeerClient::new(&config)?;
        let network = NetworkFactory::new(client.clone(), &config);
        let raft = Raft::new(config.node_id, raft_config, network, log_store, sm_store)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let dbs = dbs.each_ref().map(Arc::downgrade);
        let applied = sm.applied_index_watch();
        let routing = Arc::new(Routing::new(raft.clone(), client.clone(), config.clone(), applied));
        let server = spawn_server(&raft, &routing, &config, listener);
        let (proposals, queue) = mpsc::channel(config.propose_queue_max);
        let batcher = propose::spawn_batcher(routing.clone(), queue);
        let (reads, read_queue) = mpsc::channel(config.read_queue_max);
        let read_batcher = read::spawn_read_batcher(routing.clone(), read_queue);
        let node = Replicated {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                config: config.clone(),
                raft: raft.clone(),
                routing,
                sm,
                committed,
                proposals,
                reads,
                tasks: Mutex::new(vec![batcher, read_batcher]),
                server: Mutex::new(Some(server)),
                dbs,
                stopped: AtomicBool::new(false),
                pristine_at_start: pristine,
            }),
        };
        if config.membership == MembershipControl::Static {
            bootstrap::initialize_if_first(&raft, &config, &client, pristine).await?;
            let reconciler = bootstrap::spawn_reconciler(raft, config);
            node.inner.tasks.lock().push(reconciler);
        }
        Ok(node)
    }

    /// Commits and applies one command, forwarding to the leader if this node is not it (one
    /// hop). `request_id` is an idempotency key: the same id proposed twice (e.g. a client retry
    /// after a leader crash) is applied once; the second call returns the first call's
    /// response, as long as the id is among the last `dedup_entries_max` applied.
    pub async fn propose(&self, request_id: u128, command: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let max = self.inner.config.command_bytes_max;
        if command.len() > max {
            return Err(ProposeError::TooLarge { bytes: command.len(), max });
        }
        let (reply, answer) = oneshot::channel();
        let request = Request { id: request_id, command: Blob(command) };
        let stopped = || ProposeError::Stopped;
        match self.inner.proposals.try_send(Proposal { request, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(ProposeError::Busy { queued: self.inner.config.propose_queue_max });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
        }
        let response = answer.await.map_err(|_| stopped())??;
        Ok(response.0)
    }

    /// Runs `f` on the local state machine after making the read linearizable (read-index: the
    /// leader confirms it is still leader and returns its commit index; this node waits until
    /// it has applied up to it). Works on followers.
    pub async fn read_linearizable<R>(&self, f: impl FnOnce(&SM) -> R) -> Result<R, ReadError> {
        let deadline = Instant::now() + Duration::from_millis(self.inner.config.read_timeout_ms);
        let stopped = || ReadError::Fatal("raft node is shut down".into());
        let (reply, round) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.inner.reads.send(ReadWaiter { deadline, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(stopped()),
            Err(_) => return Err(ReadError::Timeout),
        }
        // The round ends by our deadline at the latest and says why; the margin lets its answer
        // arrive.
        let index = match tokio::time::timeout_at(deadline + REPLY_MARGIN, round).await {
            Ok(answer) => answer.map_err(|_| stopped())??,
            Err(_) => return Err(ReadError::Timeout),
        };
        read::wait_applied(self.inner.sm.applied_index_watch(), index, deadline).await?;
        Ok(self.read_local(f))
    }

    /// Runs `f` on the local state machine now (fast, possibly stale on a follower).
    pub fn read_local<R>(&self, f: impl FnOnce(&SM) -> R) -> R {
        f(&self.inner.sm.state.read().sm)
    }

    /// This node's raft state now.
    pub fn status(&self) -> RaftStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        RaftStatus::new(&metrics, self.committed_index(), self.inner.sm.applied_index())
    }

    fn committed_index(&self) -> u64 {
        self.inner.committed.load(Ordering::Acquire)
    }

    /// True when a leader is known and this node has applied up to the committed index it
    /// knows, give or take `ready_lag_entries_max` (apply always trails commit by a moment).
    /// A leader cut off from its majority is not ready.
    pub fn is_ready(&self) -> bool {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let lag = self.committed_index().saturating_sub(self.inner.sm.applied_index());
        metrics.state != ServerState::Shutdown
            && self.inner.routing.leader_view(&metrics).is_some()
            && lag <= self.inner.config.ready_lag_entries_max
    }

    /// Waits until `pred` holds for the status, or `timeout`; returns the last status seen and
    /// whether `pred` held. Wakes on every raft metrics change and every applied entry.
    pub async fn wait_status(&self, timeout: Duration, pred: impl Fn(&RaftStatus) -> bool) -> (RaftStatus, bool) {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.inner.raft.metrics();
        let mut applied = self.inner.sm.applied_index_watch();
        loop {
            let status = self.status();
            if pred(&status) {
                return (status, true);
            }
            let changed = async {
                tokio::select! {
                    r = metrics.changed() => r.is_ok(),
                    r = applied.changed() => r.is_ok(),
                }
            };
            if !matches!(tokio::time::timeout_at(deadline, changed).await, Ok(true)) {
                let status = self.status();
                let held = pred(&status);
                return (status, held);
            }
        }
    }

    /// If this node leads, hands leadership to a voter that holds the whole log and waits
    /// until it leads, at most `timeout` (see `handoff`). For a planned stop: call it once no
    /// new writes arrive, then `shutdown`.
    pub async fn hand_off_leadership(&self, timeout: Duration) -> crate::HandOff {
        let routing = &self.inner.routing;
        routing.handing_off.store(true, Ordering::Release);
        let outcome = crate::handoff::hand_off(&self.inner.raft, self.inner.node_id, &routing.client, timeout).await;
        // Whatever came of it, this node commits again if it still leads.
        routing.handing_off.store(false, Ordering::Release);
        outcome
    }

    /// The membership as this node sees it now, with replication progress on the leader.
    pub fn membership(&self) -> MembershipView {
        MembershipView::new(&self.inner.raft.metrics().borrow())
    }

    /// Waits until the membership view changes in any way (raft metrics change), or `timeout`.
    pub async fn membership_changed(&self, timeout: Duration) {
        let mut metrics = self.inner.raft.metrics();
        let _ = tokio::time::timeout(timeout, metrics.changed()).await;
    }

    /// Founds a cluster with `voters` as its first membership. Only for
    /// [`MembershipControl::External`]; the caller guarantees that every node that calls this
    /// passes the same set.
    pub async fn initialize(
        &self,
        voters: &std::collections::BTreeMap<NodeId, PeerAddr>,
    ) -> Result<(), MembershipError> {
        membership::initialize(&self.inner.raft, voters).await
    }

    /// On the leader: adds a node as a learner (replication starts; it does not vote).
    pub async fn add_learner(&self, id: NodeId, addr: &PeerAddr) -> Result<(), MembershipError> {
        membership::add_learner(&self.inner.raft, id, addr).await
    }

    /// On the leader: makes `voters` the voter set, in one joint-consensus change. Members
    /// left out are kept as learners when `keep_removed`, removed otherwise.
    pub async fn set_voters(
        &self,
        voters: &std::collections::BTreeSet<NodeId>,
        keep_removed: bool,
    ) -> Result<(), MembershipError> {
        membership::set_voters(&self.inner.raft, voters, keep_removed).await
    }

    /// On the leader: removes learners from the cluster.
    pub async fn remove_learners(&self, ids: &std::collections::BTreeSet<NodeId>) -> Result<(), MembershipError> {
        membership::remove_learners(&self.inner.raft, ids).await
    }

    /// On the leader: updates the stored addresses of members that moved.
    pub async fn set_addresses(
        &self,
        moved: &std::collections::BTreeMap<NodeId, PeerAddr>,
    ) -> Result<(), MembershipError> {
        membership::set_addresses(&self.inner.raft, moved).await
    }

    /// True when this node's storage held no raft state when it started and it has not joined
    /// or founded a cluster since.
    pub fn is_pristine(&self) -> bool {
        !self.membership().initialized && self.inner.pristine_at_start
    }

    /// Applied-index watch, so callers can wait for "applied >= n".
    pub fn applied_index_watch(&self) -> watch::Receiver<u64> {
        self.inner.sm.applied_index_watch()
    }

    /// Stops the node: the batcher and reconciler, openraft, then the raft listener; waits (up
    /// to `shutdown_timeout_ms`) until the storage is closed so the same data dir can be opened
    /// again. Pending proposals fail with `Fatal`. Reads of the local state keep working.
    pub async fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for task in tasks {
            task.abort();
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let deadline = Instant::now() + Duration::from_millis(self.inner.config.shutdown_timeout_ms);
        let server = self.inner.server.lock().take();
        if let Some((stop, handle)) = server {
            let _ = stop.send(());
            let _ = tokio::time::timeout_at(deadline, handle).await;
        }
        for db in &self.inner.dbs {
            wait_released(db, deadline).await;
        }
        tracing::info!(node_id = self.inner.node_id, "raft node stopped");
    }
}

/// Opens the database and both stores on it.
async fn open_storage<SM: StateMachine>(
    config: &RaftConfig,
    sm: SM,
) -> Result<([Arc<Database>; 2], LogStore, SmStore<SM>), StartError> {
    let storage = |e: &dyn std::fmt::Display| StartError::Storage(e.to_string());
    let db = open_db(&config.data_dir)?;
    let snapshot_db = open_snapshot_db(&config.data_dir)?;
    let log_store = LogStore::open(db.clone()).await.map_err(|e| storage(&e))?;
    let sm_store =
        SmStore::open(snapshot_db.clone(), &db, sm, config.dedup_entries_max).await.map_err(|e| storage(&e))?;
    Ok(([db, snapshot_db], log_store, sm_store))
}

fn spawn_server(
    raft: &Raft,
    routing: &Routing,
    config: &RaftConfig,
    listener: TcpListener,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let forward_timeout = Duration::from_millis(config.forward_timeout_ms);
    let handing_off = routing.handing_off.clone();
    let auth = config.keyring.clone().map(|k| ServerAuth::new(k, config.rpc_body_bytes_max));
    let router = server::router(raft.clone(), handing_off, forward_timeout, config.rpc_body_bytes_max, auth);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

/// Pause between checks that openraft's tasks dropped their handles on the database.
const RELEASE_POLL_MS: u64 = 5;

/// Waits until nothing holds the database any more, or `deadline`.
async fn wait_released(db: &Weak<Database>, deadline: Instant) {
    while db.strong_count() > 0 {
        if Instant::now() >= deadline {
            tracing::warn!("raft storage still in use after shutdown timeout");
            return;
        }
        tokio::time::sleep(Duration::from_millis(RELEASE_POLL_MS)).await;
    }
}
