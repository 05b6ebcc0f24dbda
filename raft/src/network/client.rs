//! The client side of the raft network: one pooled HTTP client for every peer.
//!
//! openraft's replication and election tasks reach peers through [`NetworkFactory`]; the write
//! and read paths use [`PeerClient::call`] directly for forward-write and read-index. A refused
//! connection is reported as `Unreachable` (openraft then backs off for
//! `unreachable_backoff_ms`); an append whose body would exceed `rpc_body_bytes_max` is reported
//! as `PayloadTooLarge` with an entry-count hint, so openraft resends it in smaller pieces.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::atomic::AtomicU64;

use superx_keyring::Keyring;

use super::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH, auth};
use crate::codec;
use crate::config::RaftConfig;
use crate::error::StartError;
use crate::types::{PeerNode, TypeConfig};

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("request body of {0} bytes exceeds rpc_body_bytes_max")]
    TooLarge(usize),
    #[error("peer call timed out")]
    Timeout,
    #[error("peer call failed: {0}")]
    Failed(String),
}

/// One pooled HTTP client for all peers.
#[derive(Clone)]
pub(crate) struct PeerClient {
    http: reqwest::Client,
    body_bytes_max: usize,
    /// Tags requests and checks answers (`auth.rs`); None in an open cluster.
    keyring: Option<Keyring>,
}

impl PeerClient {
    pub(crate) fn new(config: &RaftConfig) -> Result<Self, StartError> {
        // reqwest is built without a bundled crypto provider and refuses to build a client
        // until one is installed, even for plain http. Installing fails harmlessly when the
        // application installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_millis(config.rpc_connect_timeout_ms))
            .tcp_nodelay(true);
        // Outgoing raft traffic leaves from the listener's address when that is a specific
        // one, so a node is one address on the network in both directions (firewall rules
        // and partitions by address then cover all of a node's raft traffic).
        let listen_ip = config.raft_listen.ip();
        if !listen_ip.is_unspecified() {
            builder = builder.local_address(listen_ip);
        }
        let http = builder.build().map_err(|e| StartError::Raft(format!("http client: {e}")))?;
        Ok(PeerClient { http, body_bytes_max: config.rpc_body_bytes_max, keyring: config.keyring.clone() })
    }

    /// POSTs `request` to `http://{addr}{path}` and decodes the answer.
    pub(crate) async fn call<Req, Resp>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = codec::encode(request).map_err(|e| CallError::Failed(e.to_string()))?;
        if body.len() > self.body_bytes_max {
            return Err(CallError::TooLarge(body.len()));
        }
        let mut request = self
            .http
            .post(format!("http://{addr}{path}"))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        let mut tag = None;
        if let Some(keyring) = &self.keyring {
            let stamp = auth::next_stamp();
            let signed = auth::request_tag(keyring, stamp, path, &body);
            request = request.header(auth::AUTH_HEADER, auth::header_value(stamp, &signed));
            tag = Some(signed);
        }
        let response = request.body(body).send().await.map_err(classify)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED && self.keyring.is_some() {
            warn_refused(addr, "the peer refused this node's cluster tag (does it hold another cluster.secret?)");
            return Err(CallError::Failed("refused by the peer's cluster authentication".into()));
        }
        if !status.is_success() {
            return Err(CallError::Failed(format!("http status {status}")));
        }
        let answer_tag = response.headers().get(auth::AUTH_HEADER).cloned();
        let bytes = response.bytes().await.map_err(classify)?;
        if let (Some(keyring), Some(tag)) = (&self.keyring, &tag)
            && !auth::verify_response(keyring, tag, status.as_u16(), answer_tag.as_ref(), &bytes)
        {
            keyring.refused(superx_keyring::Purpose::RaftResponse);
            warn_refused(addr, "an answer without a valid tag of this cluster's secret was dropped");
            return Err(CallError::Failed("answer without a valid cluster tag".into()));
        }
        codec::decode(&bytes).map_err(|e| CallError::Failed(e.to_string()))
    }
}

/// Warns about a refusal on the calling side, at most once per `auth::WARN_EVERY_MS`.
fn warn_refused(addr: &str, what: &str) {
    static LAST_WARN: AtomicU64 = AtomicU64::new(0);
    if auth::due(&LAST_WARN) {
        tracing::warn!(peer = addr, "raft call: {what}");
    }
}

fn classify(e: reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError::Unreachable(e.to_string())
    } else if e.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Failed(e.to_string())
    }
}

/// Hands openraft a connection to each peer.
pub(crate) struct NetworkFactory {
    client: PeerClient,
    unreachable_backoff: Duration,
}

impl NetworkFactory {
    pub(crate) fn new(client: PeerClient, config: &RaftConfig) -> Self {
        NetworkFactory { client, unreachable_backoff: Duration::from_millis(config.unreachable_backoff_ms) }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> PeerNetwork {
        PeerNetwork {
            client: self.client.clone(),
            target,
            addr: node.raft.clone(),
            unreachable_backoff: self.unreachable_backoff,
        }
    }
}

/// openraft's view of one peer.
pub(crate) struct PeerNetwork {
    client: PeerClient,
    target: u64,
    addr: String,
    unreachable_backoff: Duration,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, PeerNode, RaftError<u64, E>>>;

impl PeerNetwork {
    /// Calls the peer; `entries` is the append's entry count (1 for other RPCs).
    async fn send<Req, Resp, E>(&self, path: &str, request: &Req, timeout: Duration, entries: u64) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply: Result<Resp, RaftError<u64, E>> =
            self.client.call(&self.addr, path, request, timeout).await.map_err(|e| rpc_error(e, entries))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Maps a failed call to openraft's error; `entries` is the append's entry count.
fn rpc_error<E: std::error::Error>(e: CallError, entries: u64) -> RPCError<u64, PeerNode, E> {
    match e {
        CallError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::TooLarge(_) => RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2).max(1))),
        CallError::Timeout | CallError::Failed(_) => RPCError::Network(NetworkError::new(&e)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let entries = rpc.entries.len() as u64;
        self.send(APPEND_PATH, &rpc, option.hard_ttl(), entries).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.send(SNAPSHOT_PATH, &rpc, option.hard_ttl(), 1).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.send(VOTE_PATH, &rpc, option.hard_ttl(), 1).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.unreachable_backoff))
    }
}
