//! Configuration: one tree, loaded once at startup.
//!
//! Layers, later ones winning: built-in defaults, the TOML file (`--config`), environment
//! variables (`SUPERX_SECTION__KEY`, then the SuperX variables such as `PORT` or
//! `AGENT_CALL_TIMEOUT`), then command-line flags. The environment is passed in as a map, never
//! read globally, so loading is testable. Unknown keys are rejected, and every problem found is
//! reported together.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Value as Toml;

use crate::agents::spec::{AgentSpec, load_agents_file};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub agents: AgentsConfig,
    pub cards: CardsConfig,
    pub tasks: TasksConfig,
    pub archive: ArchiveConfig,
    pub streams: StreamsConfig,
    pub push: PushSection,
    pub raft: RaftSection,
    pub cluster: ClusterSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub ui: UiSection,
    pub log: LogConfig,
    /// The agents registered at startup (from the agents file and `A2A_REMOTE_URL`); not a
    /// config key.
    #[serde(skip)]
    pub initial_agents: Vec<AgentSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public API listener. `PORT` sets its port. Loopback by default: a gateway reachable from
    /// elsewhere needs auth configured, or `auth.allow_open` (a container sets 0.0.0.0).
    pub listen: String,
    /// The base URL clients reach this gateway at (e.g. `https://a2a.example.com`), used in
    /// agent cards. Empty: taken from `X-Forwarded-*` headers, else the `Host` header.
    pub public_url: String,
    /// Whether `X-Forwarded-Proto`/`X-Forwarded-Host` are believed (true behind a load
    /// balancer that sets them; set false when clients reach the gateway directly).
    pub trust_forwarded_headers: bool,
    /// Local state (raft log and snapshots).
    pub data_dir: String,
    /// This node's id in the cluster. 0: automatic (1 for a single node with static peers;
    /// else the id stored in the data dir, else a StatefulSet ordinal + 1 from `HOSTNAME` with
    /// the dns and kubernetes strategies, else a new random id, stored in the data dir).
    pub node_id: u64,
    /// Largest request body accepted. 4 MiB fits messages with inline files; larger bodies
    /// are refused before they are read in full.
    pub body_bytes_max: usize,
    /// Admission control: API requests this node serves at once (a stream counts until its
    /// response starts). Past it a request is refused before its body is read: HTTP 503 with
    /// Retry-After and the retryable overloaded error. Bounds the node's memory under any
    /// overload; at a few milliseconds per request, 1024 is far above what a node completes.
    pub requests_in_flight_max: usize,
    /// Admission control: open client streams (SendStreamingMessage, SubscribeToTask) on
    /// this node; past it a new stream is refused like a request over the limit.
    pub streams_in_flight_max: usize,
    /// On SIGTERM: new requests are refused (retryable), in-flight ones finish, open streams
    /// end with a retryable error, raft stops; all within this long, then the process exits
    /// whatever is left. Below Kubernetes' termination grace period (25 s in k8s/).
    pub drain_timeout_ms: u64,
    /// TLS on the public listener: the certificate chain (PEM, leaf first). Set both files or
    /// neither; empty: plain HTTP (TLS ends at a load balancer in front).
    pub tls_cert_file: String,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: String,
    /// How often both files are read again: a changed pair is served to new connections
    /// without a restart (open connections keep theirs).
    pub tls_reload_ms: u64,
}

impl ServerConfig {
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert_file.is_empty()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// YAML file of agents to register at startup (`AGENTS_FILE`).
    pub file: String,
    /// Calls in flight to one agent before new ones are refused (per node).
    pub max_in_flight: u32,
    /// Failures within `failure_window_ms` that open an agent's circuit breaker.
    pub failure_threshold: u32,
    pub failure_window_ms: u64,
    /// How long an open breaker refuses calls before it lets a probe through.
    pub cooldown_ms: u64,
    /// Deadline of one call to an agent. A blocking SendMessage waits for the agent up to
    /// this long; 15 s as SuperX had.
    pub call_timeout_ms: u64,
    /// Deadline of one agent card fetch.
    pub card_timeout_ms: u64,
    /// TCP connect deadline to an agent: loopback and LAN agents connect in well under this.
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept per agent host (each closed after 60 s unused). Keep
    /// it at least the calls one node makes to one agent host at once (its agents'
    /// `maxInFlight`, at most `server.requests_in_flight_max`): a call beyond it finds no idle
    /// connection, opens one and closes it afterwards, so every call pays a TCP handshake.
    /// The default matches the default `server.requests_in_flight_max`; idle connections never
    /// outnumber the most calls that were ever in flight at once.
    pub pool_idle_per_host: usize,
    /// Largest response body accepted from an agent.
    pub response_bytes_max: usize,
    /// Largest agent card accepted.
    pub card_bytes_max: usize,
    /// An agent's OAuth2 token (`oauth2` in its spec) is fetched again this long before it
    /// expires (at most half its lifetime), so the agent never gets one about to expire.
    pub oauth_refresh_margin_ms: u64,
    /// Deadline of one token request to an agent's token endpoint.
    pub oauth_timeout_ms: u64,
    /// CIDRs agent and card URLs may reach although they are link-local (cloud metadata),
    /// multicast or reserved addresses, refused by default on the address actually connected
    /// to. Loopback and private addresses are allowed without it: agents on a laptop, a LAN or
    /// a Kubernetes cluster are the normal case for a gateway. In the environment,
    /// comma-separated.
    pub allow_cidrs: Vec<String>,
    /// Redirects followed on an agent call or card fetch, each hop checked like the first
    /// address; one more is an error.
    pub redirects_max: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CardsConfig {
    /// `Cache-Control: max-age` of served cards.
    pub max_age_secs: u64,
    /// Serve strict A2A 1.0 cards (no 0.3 fields or interfaces).
    pub strict_v10: bool,
    /// Name of the gateway's own card.
    pub gateway_name: String,
    /// After a card fetch for a card-less agent failed, card requests for it answer 502 from
    /// this node's negative cache for this long instead of fetching again (so a client polling
    /// the card of a down agent costs no outbound fetch per request). `agents/refreshCard`
    /// always fetches.
    pub miss_ttl_ms: u64,
    /// Agents remembered in that negative cache (one entry per card-less registered agent);
    /// past it the oldest entry goes.
    pub misses_max: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Tasks kept in memory on every node. When full, the task that became terminal longest
    /// ago is evicted (with the archive on: the oldest archived one; if none is archived yet,
    /// new tasks are refused with a retryable overload error). 100k tasks of a few KiB each
    /// stay well under a GiB.
    pub memory_max: usize,
}

/// The Postgres archive of terminal tasks. Off unless a database URL is given.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// `postgres://user:password@host:port/db`; `DATABASE_URL` sets it. Empty: no archive,
    /// and a terminal task evicted from memory is gone.
    pub database_url: String,
    /// Connections per node (`DB_POOL_SIZE`). The archiver uses one at a time; the rest serve
    /// reads of archived tasks.
    pub pool_max: u32,
    /// Longest wait for a connection (and for the server's answer to connect).
    pub connect_timeout_ms: u64,
    /// Postgres `statement_timeout` on every connection: a slow database fails a statement
    /// rather than holding a request or the archiver.
    pub statement_timeout_ms: u64,
    /// At startup, how long an unreachable database is retried before the node gives up.
    /// A wrong password, a missing database or a newer schema fail at once.
    pub startup_timeout_ms: u64,
    /// Tasks written per archive batch (one statement, one transaction).
    pub batch_max: usize,
    /// Batches the archiver writes at once, each on its own connection; one round archives
    /// up to `writers` x `batch_max` tasks and commits them in one `Archived` entry. Must be
    /// below `pool_max`, which also serves reads.
    pub writers: u32,
    /// Longest pause between retries while the database fails (doubling from 100 ms).
    pub retry_backoff_max_ms: u64,
    /// `archive.memory_retention`, by age: an archived task leaves memory this long after it
    /// was last updated. Reads of it then go to Postgres.
    pub memory_retention_ms: u64,
    /// `archive.memory_retention`, by count: at most this many archived tasks stay in memory
    /// (the oldest leave first).
    pub memory_retention_count: usize,
    /// Rows archived longer ago than this many days are deleted (0: kept forever).
    pub retention_days: u64,
    /// Rows deleted per retention statement, so deleting never holds long locks.
    pub retention_batch: usize,
    /// How often the archiver deletes expired rows (at most 100 statements each time).
    pub retention_interval_ms: u64,
}

impl ArchiveConfig {
    pub fn enabled(&self) -> bool {
        !self.database_url.is_empty()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Largest single SSE event accepted from an agent.
    pub event_bytes_max: usize,
    /// Events a subscriber may fall behind before it is cut off with an error. 256 events
    /// covers a burst of artifact chunks; a subscriber further behind is not keeping up.
    pub subscriber_buffer_events: usize,
    /// Subscribers of one task on one node.
    pub task_subscribers_max: usize,
    /// Events buffered between an agent's stream and the client that started it; when the
    /// client reads slower, the gateway stops forwarding to it but keeps recording.
    pub client_buffer_events: usize,
    /// A keep-alive comment is sent on a stream idle this long.
    pub keepalive_ms: u64,
    /// Reconnections (SubscribeToTask to the agent) after an agent's stream drops early.
    pub upstream_resubscribe_attempts: u32,
    /// Deadline for an agent to answer a stream request with its headers.
    pub upstream_open_timeout_ms: u64,
    /// Longest silence accepted from an agent's stream before it counts as dropped.
    pub upstream_idle_timeout_ms: u64,
    /// Events of one stream that arrived together and are committed in one log entry (each is
    /// still committed before the client sees it). 1 commits every event on its own.
    pub commit_batch_events_max: usize,
    /// Bytes (as the agent sent them) of the events committed together, at most; a batch ends
    /// once it reaches this, so one entry stays far below raft's command limit.
    pub commit_batch_bytes_max: usize,
    /// Tasks whose recent events a node keeps, so that a client reconnecting with
    /// `Last-Event-ID` (on any node) gets what it missed replayed. The oldest task's history is
    /// dropped first; a task created already terminal keeps none (there is nothing to resume).
    /// 0 turns replay off: a resumed stream then starts from the current task.
    pub resume_history_tasks_max: usize,
    /// Events kept per task for replay; a client further behind gets the current task.
    pub resume_history_events_max: usize,
    /// Estimated bytes of all events kept for replay on a node (artifact chunks can be
    /// large); past it, the oldest task's history is dropped.
    pub resume_history_bytes_max: usize,
    /// Tasks one node follows upstream at once by itself: tasks answered active to a
    /// non-streaming send (`returnImmediately`), and streams the agent dropped for good. A
    /// task past the limit is not followed (its subscribers see it change when a client or
    /// another node brings news).
    pub follow_tasks_max: usize,
    /// First pause between GetTask polls of a followed task (agents that do not stream); it
    /// doubles after every poll that brings nothing new, up to `follow_poll_max_ms`.
    pub follow_poll_initial_ms: u64,
    pub follow_poll_max_ms: u64,
    /// How long a task is followed at most; it is left as it is after that.
    pub follow_budget_ms: u64,
}

/// Push notifications: webhook delivery from the leader (`crate::push`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Attempts per event before it is given up on record (`PUSH_MAX_ATTEMPTS`; SuperX's 3).
    /// A 4xx answer other than 408 and 429 gives up at once.
    pub max_attempts: u32,
    /// Pause before the first retry (`PUSH_RETRY_BASE_MS`; SuperX's 200); it doubles per
    /// attempt, with up to half of it added at random so retries do not arrive in step.
    pub retry_base_ms: u64,
    /// Longest pause between attempts; a receiver's `Retry-After` is honoured up to it.
    pub retry_max_ms: u64,
    /// One attempt, connect to last byte (the spec suggests 10-30 s; SuperX used 15 s).
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Attempts in flight to one destination (host and port) at once, so one slow receiver
    /// cannot hold every delivery slot.
    pub destination_in_flight_max: usize,
    /// (task, config) lanes delivering at once on the leader; each delivers its events in
    /// order, one at a time.
    pub deliveries_in_flight_max: usize,
    /// Delivery outcomes committed together in one log entry at most.
    pub commit_batch_max: usize,
    /// A SuperX HS256 JWT's lifetime: `exp` = `iat` + this (`PUSH_JWT_TTL_SECONDS`).
    pub jwt_ttl_seconds: u64,
    /// A SuperX HS256 JWT's clock skew allowance: `nbf` = `iat` - this
    /// (`PUSH_JWT_SKEW_SECONDS`).
    pub jwt_skew_seconds: u64,
    /// CIDRs webhooks may reach although they are loopback, private, link-local or metadata
    /// addresses (refused by default, on the address actually connected to): for tests and
    /// private deployments. In the config file, a list (`["10.0.0.0/8"]`); in the
    /// environment, comma-separated.
    pub allow_cidrs: Vec<String>,
}

impl Default for PushSection {
    fn default() -> Self {
        PushSection {
            max_attempts: 3,
            retry_base_ms: 200,
            retry_max_ms: 30_000,
            timeout_ms: 15_000,
            connect_timeout_ms: 5_000,
            destination_in_flight_max: 8,
            deliveries_in_flight_max: 256,
            commit_batch_max: 256,
            jwt_ttl_seconds: 300,
            jwt_skew_seconds: 120,
            allow_cidrs: vec![],
        }
    }
}

/// Replication: the internal raft listener, the static peers, and the timing of elections.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Internal raft listener (never the public API port).
    pub listen: String,
    /// `host:port` other nodes reach this node's raft listener at; empty: `listen`.
    pub advertise: String,
    /// `host:port` other nodes reach this node's public API at; empty: `server.listen`.
    pub api_advertise: String,
    /// Static cluster: `1=host:raftport@host:apiport,2=...`, this node included. Empty: a
    /// cluster of one.
    pub peers: String,
    /// Voters at most (3 or 5); further nodes stay learners.
    pub voters_max: u64,
    /// Election timeout range. 400-800 ms with 100 ms heartbeats elects a new leader well
    /// inside the 2 s budget for writes to resume after a leader dies.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_ms: u64,
    /// A snapshot is taken after this many log entries, and the log before it is purged.
    pub snapshot_logs_since_last: u64,
    /// Log entries kept behind the latest snapshot, so a briefly lagging node catches up
    /// from the log instead of a snapshot.
    pub snapshot_logs_keep: u64,
    /// How long a write waits for a leader (during an election) before a retryable error.
    pub write_timeout_ms: u64,
    /// How long a linearizable read waits for the leader's confirmation.
    pub read_timeout_ms: u64,
}

/// Cluster formation: gossip, seed discovery and the membership rules.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `static` (raft.peers), `gossip` (cluster.seeds), `dns` or `kubernetes`
    /// (`CLUSTER_STRATEGY`).
    pub strategy: String,
    /// Nodes gossip only with nodes of the same cluster id.
    pub cluster_id: String,
    /// UDP gossip listener (`CLUSTER_PORT` sets its port). Never the public API.
    pub gossip_listen: String,
    /// `host:port` other nodes reach this node's gossip at; empty: `gossip_listen`.
    pub gossip_advertise: String,
    /// Period of a gossip round: a dead node is noticed after a few seconds at 200 ms.
    pub gossip_interval_ms: u64,
    /// Gossip addresses (`host:port,...`) of the `gossip` strategy.
    pub seeds: String,
    /// First boot without static peers: found the cluster once this many nodes see each
    /// other (Consul's bootstrap_expect). 0: never found one, only join an existing cluster.
    pub bootstrap_expect: u64,
    /// `dns` strategy: a name whose A/AAAA records are the nodes (each at `dns_port`), or an
    /// SRV name (starting with `_`) (`CLUSTER_DNS_QUERY`).
    pub dns_query: String,
    /// Name server to ask (`host:port`); empty: the system's resolver.
    pub dns_server: String,
    /// Gossip port of the addresses A/AAAA records give; 0: this node's gossip port.
    pub dns_port: u64,
    /// How often the name is resolved again (`CLUSTER_DNS_POLLING_INTERVAL`).
    pub dns_interval_ms: u64,
    /// `kubernetes` strategy: the API server; empty: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    pub k8s_api_url: String,
    /// Namespace of the EndpointSlices (`CLUSTER_K8S_NAMESPACE`); empty: the pod's own.
    pub k8s_namespace: String,
    /// Label selector of the EndpointSlices (`CLUSTER_K8S_SELECTOR`).
    pub k8s_selector: String,
    /// Name of the EndpointSlice port that carries gossip; absent: this node's gossip port.
    pub k8s_port_name: String,
    /// Service-account token, read again on every call (it rotates).
    pub k8s_token_file: String,
    /// CA bundle the API server's certificate must chain to.
    pub k8s_ca_file: String,
    /// How often EndpointSlices are listed again.
    pub k8s_interval_ms: u64,
    /// A learner becomes a voter only after it has been live and caught up this long
    /// (Consul autopilot's server stabilization time), so a flapping node never votes.
    pub stabilization_ms: u64,
    /// A voter dead this long is replaced by a healthy learner, or removed (never below a
    /// majority of `raft.voters_max`). Longer than a rolling restart of one node takes.
    pub dead_voter_timeout_ms: u64,
    /// A file holding the cluster secret (at least 32 bytes; surrounding whitespace ignored),
    /// the same on every node: raft RPCs, forwarded writes and gossip datagrams are tagged
    /// with it (HMAC-SHA256), and nothing untagged is heard. In Kubernetes, a Secret mounted
    /// as a file. Read again every `secret_reload_ms`; see `secret_grace_ms`. Empty (and no
    /// `secret`): the raft and gossip listeners are open to anyone who reaches them.
    pub secret_file: String,
    /// The cluster secret itself, for setups without files (`SUPERX_CLUSTER__SECRET`); not
    /// reloadable. Set this or `secret_file`, not both.
    pub secret: Secret,
    /// How often `secret_file` is read again.
    pub secret_reload_ms: u64,
    /// After `secret_file` changes, the previous secret stays accepted this long, and this
    /// node keeps tagging with it for the first half: a rolling change works when every node
    /// reads the new file within half of it (a Kubernetes Secret reaches pods within a couple
    /// of minutes).
    pub secret_grace_ms: u64,
    /// Lets raft and gossip listen on a non-loopback address without a cluster secret (a
    /// private network nothing else reaches). Without it, that is a startup error.
    pub allow_open: bool,
}

/// A secret in the config: serialized as is (the config tree is TOML), never shown by `Debug`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<set>" })
    }
}

/// Who may call the gateway (`crate::auth`). Off (`mode = "open"`) unless configured; an open
/// gateway refuses to listen on a non-loopback address unless `allow_open` says so.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `open` (anyone who reaches the port may do anything: a laptop, a test) or `required`
    /// (every A2A call needs a client credential, the control plane an admin one).
    pub mode: String,
    /// Lets an open gateway listen on a non-loopback address (behind something else that
    /// authenticates, or on a private network). Without it, that is a startup error.
    pub allow_open: bool,
    /// The admin credential: sent as `Authorization: Bearer <token>` or `X-API-Key: <token>`,
    /// it may call everything, the control plane included (`keys/create` makes the first API
    /// keys with it). At least 16 characters; compared by SHA-256, never logged. From a
    /// Secret: `SUPERX_AUTH__ADMIN_TOKEN`.
    pub admin_token: String,
    /// HS256 JWTs: the shared secret (at least 32 bytes). Empty: HS256 tokens are refused.
    pub jwt_hs256_secret: String,
    /// RS256/ES256 JWTs: the key set's URL. Empty with `jwt_oidc_discovery`: found through the
    /// issuer's discovery document.
    pub jwks_url: String,
    /// Find the key set at `{jwt_issuer}/.well-known/openid-configuration` (its `jwks_uri`).
    pub jwt_oidc_discovery: bool,
    /// The `iss` every JWT must carry (required with any JWT source).
    pub jwt_issuer: String,
    /// The `aud` values accepted: a token must name one (required with any JWT source). In the
    /// environment, comma-separated.
    pub jwt_audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, at most 300 s.
    pub jwt_leeway_seconds: u64,
    /// A scope (`scope`/`scp`) or role (`roles`) that makes a JWT's holder an admin. Empty: no
    /// JWT is an admin.
    pub jwt_admin_scope: String,
    /// How often the key set is fetched again.
    pub jwks_refresh_seconds: u64,
    /// A token naming a key the cached set lacks fetches the set again, at most this often,
    /// so made-up key ids cannot make the gateway hammer the identity provider.
    pub jwks_refetch_min_seconds: u64,
    /// Deadline of one key set (or discovery) fetch.
    pub jwks_timeout_ms: u64,
    /// `/metrics` without credentials (Prometheus scrapers usually carry none, and no label
    /// holds a secret or a client-chosen value). False: it needs the admin credential.
    pub metrics_public: bool,
}

impl AuthSection {
    pub fn required(&self) -> bool {
        self.mode == "required"
    }

    fn jwt_configured(&self) -> bool {
        !self.jwt_hs256_secret.is_empty() || !self.jwks_url.is_empty() || self.jwt_oidc_discovery
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: "open".into(),
            allow_open: false,
            admin_token: String::new(),
            jwt_hs256_secret: String::new(),
            jwks_url: String::new(),
            jwt_oidc_discovery: false,
            jwt_issuer: String::new(),
            jwt_audiences: vec![],
            jwt_leeway_seconds: 60,
            jwt_admin_scope: String::new(),
            jwks_refresh_seconds: 300,
            jwks_refetch_min_seconds: 10,
            jwks_timeout_ms: 5_000,
            metrics_public: true,
        }
    }
}

/// Secrets never show: `Config` is logged at debug level and printed in test failures.
impl fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<set>" };
        f.debug_struct("AuthSection")
            .field("mode", &self.mode)
            .field("allow_open", &self.allow_open)
            .field("admin_token", &set(&self.admin_token))
            .field("jwt_hs256_secret", &set(&self.jwt_hs256_secret))
            .field("jwks_url", &self.jwks_url)
            .field("jwt_oidc_discovery", &self.jwt_oidc_discovery)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audiences", &self.jwt_audiences)
            .field("jwt_leeway_seconds", &self.jwt_leeway_seconds)
            .field("jwt_admin_scope", &self.jwt_admin_scope)
            .field("metrics_public", &self.metrics_public)
            .finish_non_exhaustive()
    }
}

/// Rate limits per credential and per agent, held cluster-wide (`crate::limits`). A rate of 0
/// is no limit; a burst of 0 is one second's worth.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Requests per second one credential (an API key, a JWT subject) may make, cluster-wide,
    /// unless its key sets its own (`keys/create` `rateLimit`). The admin token and open
    /// gateways have none.
    pub credential_rate: f64,
    /// Requests a credential may make at once above its rate.
    pub credential_burst: u64,
    /// Requests per second one agent may be sent, cluster-wide, unless its spec sets its own
    /// (`rateLimit` in the agents file or `agents/upsert`).
    pub agent_rate: f64,
    /// Requests an agent may be sent at once above its rate.
    pub agent_burst: u64,
    /// Limited keys (credentials and agents) one node tracks at most; past it the least
    /// recently seen are forgotten (they start again with a full bucket).
    pub keys_max: usize,
    /// A key without requests for this long is forgotten.
    pub idle_ms: u64,
    /// How often each node measures its demand per key, publishes it in gossip and
    /// recomputes its share of every rate.
    pub share_interval_ms: u64,
    /// Keys one node publishes at most (those nearest their limit first); a key a node does
    /// not publish counts as no demand there.
    pub gossip_keys_max: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            credential_rate: 0.0,
            credential_burst: 0,
            agent_rate: 0.0,
            agent_burst: 0,
            keys_max: 10_000,
            idle_ms: 60_000,
            share_interval_ms: 100,
            gossip_keys_max: 128,
        }
    }
}

/// Most tasks a dashboard's feed may start with (`ui.feed_snapshot_tasks`).
const UI_SNAPSHOT_TASKS_MAX: usize = 1_000;

/// The dashboard at `/ui` (`crate::http::ui`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UiSection {
    /// Serve the dashboard (its pages, and the task feed it reads).
    pub enabled: bool,
    /// Show the buttons that change something (cancel a task, remove an agent). Off: the
    /// dashboard only reads.
    pub admin_actions: bool,
    /// Task changes buffered for one dashboard's feed; a dashboard further behind is told to
    /// reload its list (`event: resync`) and goes on from the newest.
    pub feed_buffer_events: usize,
    /// Dashboards following this node's feed at once; one more is refused (503).
    pub feed_clients_max: usize,
    /// Most recent tasks a feed starts with.
    pub feed_snapshot_tasks: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter (`superx=debug`).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:4000".into(),
            public_url: String::new(),
            trust_forwarded_headers: true,
            data_dir: "./superx-data".into(),
            node_id: 0,
            body_bytes_max: 4 << 20,
            requests_in_flight_max: 1024,
            streams_in_flight_max: 4096,
            drain_timeout_ms: 15_000,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_reload_ms: 5_000,
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            file: String::new(),
            max_in_flight: 10,
            failure_threshold: 5,
            failure_window_ms: 30_000,
            cooldown_ms: 30_000,
            call_timeout_ms: 15_000,
            card_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            pool_idle_per_host: 1024,
            response_bytes_max: 8 << 20,
            card_bytes_max: 1 << 20,
            oauth_refresh_margin_ms: 30_000,
            oauth_timeout_ms: 5_000,
            allow_cidrs: vec![],
            redirects_max: 3,
        }
    }
}

impl Default for CardsConfig {
    fn default() -> Self {
        CardsConfig {
            max_age_secs: 60,
            strict_v10: false,
            gateway_name: "superx".into(),
            miss_ttl_ms: 30_000,
            misses_max: 1024,
        }
    }
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig { memory_max: 100_000 }
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            database_url: String::new(),
            pool_max: 10,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 5_000,
            startup_timeout_ms: 30_000,
            batch_max: 1_000,
            writers: 2,
            retry_backoff_max_ms: 10_000,
            memory_retention_ms: 600_000,
            memory_retention_count: 10_000,
            retention_days: 0,
            retention_batch: 5_000,
            retention_interval_ms: 60_000,
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            event_bytes_max: 1 << 20,
            subscriber_buffer_events: 256,
            task_subscribers_max: 4096,
            client_buffer_events: 64,
            keepalive_ms: 15_000,
            upstream_resubscribe_attempts: 3,
            upstream_open_timeout_ms: 15_000,
            upstream_idle_timeout_ms: 300_000,
            commit_batch_events_max: 64,
            commit_batch_bytes_max: 256 << 10,
            resume_history_tasks_max: 8192,
            resume_history_events_max: 256,
            resume_history_bytes_max: 64 << 20,
            follow_tasks_max: 1024,
            follow_poll_initial_ms: 250,
            follow_poll_max_ms: 15_000,
            follow_budget_ms: 3_600_000,
        }
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            listen: "127.0.0.1:4100".into(),
            advertise: String::new(),
            api_advertise: String::new(),
            peers: String::new(),
            voters_max: 3,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            heartbeat_ms: 100,
            snapshot_logs_since_last: 20_000,
            snapshot_logs_keep: 1000,
            write_timeout_ms: 3000,
            read_timeout_ms: 3000,
        }
    }
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            strategy: "static".into(),
            cluster_id: "superx".into(),
            gossip_listen: "127.0.0.1:4200".into(),
            gossip_advertise: String::new(),
            gossip_interval_ms: 200,
            seeds: String::new(),
            bootstrap_expect: 0,
            dns_query: String::new(),
            dns_server: String::new(),
            dns_port: 0,
            dns_interval_ms: 5000,
            k8s_api_url: String::new(),
            k8s_namespace: String::new(),
            k8s_selector: "app=superx".into(),
            k8s_port_name: "gossip".into(),
            k8s_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            k8s_ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            k8s_interval_ms: 5000,
            stabilization_ms: 10_000,
            dead_voter_timeout_ms: 30_000,
            secret_file: String::new(),
            secret: Secret::default(),
            secret_reload_ms: 5_000,
            secret_grace_ms: 600_000,
            allow_open: false,
        }
    }
}

/// The discovery strategies `cluster.strategy` accepts.
pub const STRATEGIES: [&str; 4] = ["static", "gossip", "dns", "kubernetes"];

/// One peer of a static cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub raft: String,
    pub api: String,
}

/// Parses `1=host:raftport@host:apiport,2=...`.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, String> {
    let mut peers: Vec<Peer> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("peer {item:?} must look like 1=host:raftport@host:apiport");
        let (id, addrs) = item.split_once('=').ok_or_else(bad)?;
        let (raft, api) = addrs.split_once('@').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let has_port = |a: &str| a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !has_port(raft) || !has_port(api) {
            return Err(bad());
        }
        if peers.iter().any(|p| p.id == id) {
            return Err(format!("peer id {id} appears twice"));
        }
        peers.push(Peer { id, raft: raft.to_owned(), api: api.to_owned() });
    }
    Ok(peers)
}

impl Default for UiSection {
    fn default() -> Self {
        UiSection {
            enabled: true,
            admin_actions: false,
            feed_buffer_events: 1024,
            feed_clients_max: 64,
            feed_snapshot_tasks: 100,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into() }
    }
}

/// Command-line values that override everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub node_id: Option<u64>,
    pub raft_listen: Option<String>,
    pub peers: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub agents_file: Option<String>,
    pub gossip_listen: Option<String>,
    pub strategy: Option<String>,
    pub seeds: Option<String>,
    pub bootstrap_expect: Option<u64>,
}

/// Every problem found in a configuration.
#[derive(Debug, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// SuperX's variables and the config key each one sets.
const LEGACY_ENV: [(&str, &str); 19] = [
    ("DATABASE_URL", "archive.database_url"),
    ("DB_POOL_SIZE", "archive.pool_max"),
    ("CLUSTER_STRATEGY", "cluster.strategy"),
    ("CLUSTER_DNS_QUERY", "cluster.dns_query"),
    ("CLUSTER_DNS_POLLING_INTERVAL", "cluster.dns_interval_ms"),
    ("CLUSTER_K8S_SELECTOR", "cluster.k8s_selector"),
    ("CLUSTER_K8S_NAMESPACE", "cluster.k8s_namespace"),
    ("AGENTS_FILE", "agents.file"),
    ("SUPERX_AGENTS_FILE", "agents.file"),
    ("AGENT_MAX_IN_FLIGHT", "agents.max_in_flight"),
    ("AGENT_FAILURE_THRESHOLD", "agents.failure_threshold"),
    ("AGENT_FAILURE_WINDOW_MS", "agents.failure_window_ms"),
    ("AGENT_COOLDOWN_MS", "agents.cooldown_ms"),
    ("AGENT_CALL_TIMEOUT", "agents.call_timeout_ms"),
    ("PUSH_MAX_ATTEMPTS", "push.max_attempts"),
    ("PUSH_RETRY_BASE_MS", "push.retry_base_ms"),
    ("PUSH_JWT_TTL_SECONDS", "push.jwt_ttl_seconds"),
    ("PUSH_JWT_SKEW_SECONDS", "push.jwt_skew_seconds"),
    ("LOG_LEVEL", "log.level"),
];

impl Config {
    /// Loads the whole configuration, or every problem with it.
    pub fn load(overrides: &Overrides, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let defaults = Toml::try_from(Config::default()).expect("defaults serialize");
        let mut tree = defaults.clone();
        if let Some(path) = &overrides.config_file {
            match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| text.parse::<toml::Table>().map_err(|e| e.to_string()))
            {
                Ok(file) => merge_file(&mut tree, &defaults, file, &mut errors),
                Err(e) => errors.push(format!("config file {}: {e}", path.display())),
            }
        }
        apply_env(&mut tree, &defaults, env, &mut errors);
        apply_flags(&mut tree, overrides);
        let mut config: Config = match tree.try_into() {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                return Err(ConfigErrors(errors));
            }
        };
        config.validate(&mut errors);
        config.fill_kubernetes_defaults(env, &mut errors);
        config.initial_agents = config.load_initial_agents(env, &mut errors);
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    fn validate(&self, errors: &mut Vec<String>) {
        if self.server.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!("server.listen: {:?} is not an address like 0.0.0.0:4000", self.server.listen));
        }
        let s = &self.server;
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            errors.push("server.tls_cert_file and server.tls_key_file: set both (TLS) or neither".into());
        }
        if s.tls_enabled() && s.tls_reload_ms == 0 {
            errors.push("server.tls_reload_ms: must be greater than 0".into());
        }
        let url = self.server.public_url.trim_end_matches('/');
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!("server.public_url: {url:?} must start with http:// or https://"));
        }
        let positive: [(&str, u64); 43] = [
            ("push.jwt_ttl_seconds", self.push.jwt_ttl_seconds),
            ("push.max_attempts", self.push.max_attempts.into()),
            ("push.retry_base_ms", self.push.retry_base_ms),
            ("push.timeout_ms", self.push.timeout_ms),
            ("push.connect_timeout_ms", self.push.connect_timeout_ms),
            ("push.destination_in_flight_max", self.push.destination_in_flight_max as u64),
            ("push.deliveries_in_flight_max", self.push.deliveries_in_flight_max as u64),
            ("push.commit_batch_max", self.push.commit_batch_max as u64),
            ("cards.miss_ttl_ms", self.cards.miss_ttl_ms),
            ("cards.misses_max", self.cards.misses_max as u64),
            ("streams.commit_batch_bytes_max", self.streams.commit_batch_bytes_max as u64),
            ("streams.event_bytes_max", self.streams.event_bytes_max as u64),
            ("streams.commit_batch_events_max", self.streams.commit_batch_events_max as u64),
            ("streams.subscriber_buffer_events", self.streams.subscriber_buffer_events as u64),
            ("streams.task_subscribers_max", self.streams.task_subscribers_max as u64),
            ("streams.client_buffer_events", self.streams.client_buffer_events as u64),
            ("streams.keepalive_ms", self.streams.keepalive_ms),
            ("streams.follow_poll_initial_ms", self.streams.follow_poll_initial_ms),
            ("streams.follow_poll_max_ms", self.streams.follow_poll_max_ms),
            ("server.body_bytes_max", self.server.body_bytes_max as u64),
            ("server.requests_in_flight_max", self.server.requests_in_flight_max as u64),
            ("server.streams_in_flight_max", self.server.streams_in_flight_max as u64),
            ("server.drain_timeout_ms", self.server.drain_timeout_ms),
            ("agents.max_in_flight", self.agents.max_in_flight.into()),
            ("agents.failure_threshold", self.agents.failure_threshold.into()),
            ("agents.call_timeout_ms", self.agents.call_timeout_ms),
            ("agents.card_timeout_ms", self.agents.card_timeout_ms),
            ("agents.oauth_timeout_ms", self.agents.oauth_timeout_ms),
            ("agents.connect_timeout_ms", self.agents.connect_timeout_ms),
            ("agents.response_bytes_max", self.agents.response_bytes_max as u64),
            ("agents.card_bytes_max", self.agents.card_bytes_max as u64),
            ("tasks.memory_max", self.tasks.memory_max as u64),
            ("archive.pool_max", self.archive.pool_max.into()),
            ("archive.connect_timeout_ms", self.archive.connect_timeout_ms),
            ("archive.statement_timeout_ms", self.archive.statement_timeout_ms),
            ("archive.batch_max", self.archive.batch_max as u64),
            ("archive.writers", self.archive.writers.into()),
            ("archive.retry_backoff_max_ms", self.archive.retry_backoff_max_ms),
            ("archive.retention_batch", self.archive.retention_batch as u64),
            ("archive.retention_interval_ms", self.archive.retention_interval_ms),
            ("ui.feed_buffer_events", self.ui.feed_buffer_events as u64),
            ("ui.feed_clients_max", self.ui.feed_clients_max as u64),
            ("ui.feed_snapshot_tasks", self.ui.feed_snapshot_tasks as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if self.ui.feed_snapshot_tasks > UI_SNAPSHOT_TASKS_MAX {
            errors.push(format!(
                "ui.feed_snapshot_tasks: {} is more than {UI_SNAPSHOT_TASKS_MAX}",
                self.ui.feed_snapshot_tasks
            ));
        }
        if self.push.retry_max_ms < self.push.retry_base_ms {
            errors.push("push.retry_max_ms must be at least push.retry_base_ms".into());
        }
        for (key, cidrs) in
            [("push.allow_cidrs", &self.push.allow_cidrs), ("agents.allow_cidrs", &self.agents.allow_cidrs)]
        {
            for cidr in cidrs {
                if let Err(e) = crate::guard::Cidr::parse(cidr) {
                    errors.push(format!("{key}: {e}"));
                }
            }
        }
        if self.agents.redirects_max > 10 {
            errors.push(format!("agents.redirects_max: {} is more than 10", self.agents.redirects_max));
        }
        self.validate_limits(errors);
        if self.archive.writers > 16 {
            errors.push(format!("archive.writers: {} is more than 16", self.archive.writers));
        }
        if self.archive.writers >= self.archive.pool_max {
            errors.push(format!(
                "archive.writers: {} must be below archive.pool_max ({}): reads of archived tasks need connections too",
                self.archive.writers, self.archive.pool_max
            ));
        }
        if self.raft.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!("raft.listen: {:?} is not an address like 127.0.0.1:4100", self.raft.listen));
        }
        match parse_peers(&self.raft.peers) {
            Err(e) => errors.push(format!("raft.peers: {e}")),
            Ok(peers) if !peers.is_empty() && !peers.iter().any(|p| p.id == self.server.node_id) => {
                errors.push(format!("raft.peers: must include this node (server.node_id = {})", self.server.node_id))
            }
            Ok(_) => {}
        }
        let r = &self.raft;
        if r.election_timeout_min_ms == 0 || r.election_timeout_min_ms >= r.election_timeout_max_ms {
            errors.push("raft.election_timeout_min_ms must be above 0 and below election_timeout_max_ms".into());
        }
        if r.heartbeat_ms == 0 || r.heartbeat_ms >= r.election_timeout_min_ms {
            errors.push("raft.heartbeat_ms must be above 0 and below election_timeout_min_ms".into());
        }
        self.validate_cluster(errors);
        self.validate_cluster_secret(errors);
        self.validate_auth(errors);
        if self.archive.enabled()
            && let Err(e) = crate::archive::connect_options(&self.archive)
        {
            errors.push(format!("archive.database_url (DATABASE_URL): {e}"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            errors.push(format!("log.format: {:?} must be text or json", self.log.format));
        }
        if tracing_subscriber::EnvFilter::try_new(crate::telemetry::filter_directive(&self.log.level)).is_err() {
            errors.push(format!("log.level: {:?} is not a level or filter", self.log.level));
        }
    }

    /// The kubernetes strategy's API server and namespace default to the pod's own (from the
    /// environment Kubernetes sets and the service-account files); the files are checked now,
    /// so a bad mount is reported at start rather than in every discovery round.
    fn fill_kubernetes_defaults(&mut self, env: &HashMap<String, String>, errors: &mut Vec<String>) {
        let c = &mut self.cluster;
        if c.strategy != "kubernetes" {
            return;
        }
        if c.k8s_api_url.is_empty() {
            match superx_cluster::discovery::api_url_from_env(env) {
                Some(url) => c.k8s_api_url = url,
                None => errors.push(
                    "cluster.k8s_api_url: not set, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are absent"
                        .into(),
                ),
            }
        }
        if c.k8s_namespace.is_empty() {
            let from_pod = std::fs::read_to_string(superx_cluster::discovery::SERVICE_ACCOUNT_NAMESPACE_FILE).ok();
            c.k8s_namespace =
                from_pod.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).unwrap_or("default".into());
        }
        if let Ok(strategy) = crate::membership::strategy(self)
            && let Err(e) = superx_cluster::discovery::check(&strategy)
        {
            errors.push(format!("cluster ({} strategy): {e}", self.cluster.strategy));
        }
    }

    fn validate_auth(&self, errors: &mut Vec<String>) {
        let a = &self.auth;
        match a.mode.as_str() {
            "open" => {
                if !a.admin_token.is_empty() || a.jwt_configured() {
                    errors.push(
                        "auth: credentials are configured but auth.mode is \"open\"; set auth.mode = \"required\" \
                         (SUPERX_AUTH__MODE=required)"
                            .into(),
                    );
                }
                // An address that does not parse is reported once, by its own check.
                let exposed = self.server.listen.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
                if exposed && !a.allow_open {
                    errors.push(format!(
                        "server.listen {:?} is not a loopback address and auth is off: anyone reaching it could call \
                         every agent and the control plane. Configure auth (auth.mode = \"required\", README \
                         \"Security\") or say it is meant: auth.allow_open = true (SUPERX_AUTH__ALLOW_OPEN=true)",
                        self.server.listen
                    ));
                }
            }
            "required" => {
                let jwt_admin = a.jwt_configured() && !a.jwt_admin_scope.is_empty();
                if a.admin_token.is_empty() && !jwt_admin {
                    errors.push(
                        "auth.mode = \"required\" needs an admin credential: auth.admin_token, or a JWT source with \
                         auth.jwt_admin_scope"
                            .into(),
                    );
                }
            }
            other => errors.push(format!("auth.mode: {other:?} must be open or required")),
        }
        if !a.admin_token.is_empty() && a.admin_token.len() < 16 {
            errors.push("auth.admin_token: must be at least 16 characters".into());
        }
        if !a.jwt_hs256_secret.is_empty() && a.jwt_hs256_secret.len() < 32 {
            errors.push("auth.jwt_hs256_secret: must be at least 32 bytes".into());
        }
        if a.jwt_configured() && (a.jwt_issuer.is_empty() || a.jwt_audiences.is_empty()) {
            errors.push("auth: JWTs need auth.jwt_issuer and auth.jwt_audiences".into());
        }
        if a.jwt_oidc_discovery && !a.jwks_url.is_empty() {
            errors.push("auth: set either auth.jwks_url or auth.jwt_oidc_discovery, not both".into());
        }
        let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !a.jwks_url.is_empty() && !is_url(&a.jwks_url) {
            errors.push(format!("auth.jwks_url: {:?} must start with http:// or https://", a.jwks_url));
        }
        if a.jwt_oidc_discovery && !is_url(&a.jwt_issuer) {
            errors.push(format!("auth.jwt_issuer: {:?} must be an http(s) URL for OIDC discovery", a.jwt_issuer));
        }
        if a.jwt_leeway_seconds > 300 {
            errors.push(format!("auth.jwt_leeway_seconds: {} is more than 300", a.jwt_leeway_seconds));
        }
        for (key, value) in [
            ("auth.jwks_refresh_seconds", a.jwks_refresh_seconds),
            ("auth.jwks_refetch_min_seconds", a.jwks_refetch_min_seconds),
            ("auth.jwks_timeout_ms", a.jwks_timeout_ms),
        ] {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
    }

    /// The cluster secret's source, and no open raft or gossip listener on a non-loopback
    /// address unless `cluster.allow_open`.
    fn validate_cluster_secret(&self, errors: &mut Vec<String>) {
        let c = &self.cluster;
        if !c.secret.is_empty() && !c.secret_file.is_empty() {
            errors.push("cluster: set cluster.secret or cluster.secret_file, not both".into());
        } else if let Err(e) = crate::membership::secret::read(c) {
            errors.push(e);
        }
        for (key, value) in [("cluster.secret_reload_ms", c.secret_reload_ms)] {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if c.allow_open || !c.secret.is_empty() || !c.secret_file.is_empty() {
            return;
        }
        let exposed = |addr: &str| addr.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
        let mut listeners = vec![("raft.listen", &self.raft.listen)];
        if c.strategy != "static" {
            listeners.push(("cluster.gossip_listen", &c.gossip_listen));
        }
        for (key, addr) in listeners.into_iter().filter(|(_, addr)| exposed(addr)) {
            errors.push(format!(
                "{key} {addr:?} is not a loopback address and there is no cluster secret: anyone reaching it could \
                 join the cluster or send it raft messages. Give every node the same secret (cluster.secret_file, \
                 or SUPERX_CLUSTER__SECRET; README \"Security\") or say it is meant: cluster.allow_open = true \
                 (SUPERX_CLUSTER__ALLOW_OPEN=true)"
            ));
        }
    }

    fn validate_limits(&self, errors: &mut Vec<String>) {
        let l = &self.limits;
        for (key, rate) in [("limits.credential_rate", l.credential_rate), ("limits.agent_rate", l.agent_rate)] {
            if !(rate >= 0.0 && rate.is_finite()) {
                errors.push(format!("{key}: {rate} must be a number of requests per second, 0 or more"));
            }
        }
        for (key, value) in [
            ("limits.keys_max", l.keys_max as u64),
            ("limits.idle_ms", l.idle_ms),
            ("limits.share_interval_ms", l.share_interval_ms),
            ("limits.gossip_keys_max", l.gossip_keys_max as u64),
        ] {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if l.gossip_keys_max > superx_cluster::keys::RATE_DIGEST_KEYS_MAX {
            errors.push(format!(
                "limits.gossip_keys_max: {} is more than {}",
                l.gossip_keys_max,
                superx_cluster::keys::RATE_DIGEST_KEYS_MAX
            ));
        }
    }

    fn validate_cluster(&self, errors: &mut Vec<String>) {
        let c = &self.cluster;
        if !STRATEGIES.contains(&c.strategy.as_str()) {
            errors.push(format!("cluster.strategy: {:?} is not one of {}", c.strategy, STRATEGIES.join(", ")));
            return;
        }
        let dynamic = c.strategy != "static";
        if c.bootstrap_expect > 0 && !dynamic {
            errors.push(
                "cluster.bootstrap_expect needs a discovery strategy (gossip, dns or kubernetes); \
                 with static raft.peers the lowest id founds the cluster"
                    .into(),
            );
        }
        if dynamic && !self.raft.peers.is_empty() {
            errors.push(format!("raft.peers is for the static strategy, not {:?}", c.strategy));
        }
        if self.raft.voters_max == 0 || self.raft.voters_max.is_multiple_of(2) {
            errors.push(format!("raft.voters_max: {} must be odd (1, 3, 5...)", self.raft.voters_max));
        }
        if c.bootstrap_expect > self.raft.voters_max {
            errors.push(format!(
                "cluster.bootstrap_expect ({}) cannot exceed raft.voters_max ({})",
                c.bootstrap_expect, self.raft.voters_max
            ));
        }
        if !dynamic {
            return;
        }
        for (key, addr) in
            [("cluster.gossip_listen", &c.gossip_listen), ("cluster.gossip_advertise", &c.gossip_advertise)]
        {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                errors.push(format!("{key}: {addr:?} is not an address like 10.0.0.5:4200"));
            }
        }
        let positive = [
            ("cluster.gossip_interval_ms", c.gossip_interval_ms),
            ("cluster.dns_interval_ms", c.dns_interval_ms),
            ("cluster.k8s_interval_ms", c.k8s_interval_ms),
            ("cluster.dead_voter_timeout_ms", c.dead_voter_timeout_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if c.dns_port > u64::from(u16::MAX) {
            errors.push(format!("cluster.dns_port: {} is not a port number", c.dns_port));
        }
    }

    fn load_initial_agents(&self, env: &HashMap<String, String>, errors: &mut Vec<String>) -> Vec<AgentSpec> {
        let mut agents = Vec::new();
        if !self.agents.file.is_empty() {
            match load_agents_file(std::path::Path::new(&self.agents.file)) {
                Ok(list) => agents.extend(list),
                Err(file_errors) => errors.extend(file_errors),
            }
        }
        if let Some(url) = env.get("A2A_REMOTE_URL").filter(|u| !u.is_empty()) {
            let spec = AgentSpec::from_env(url, env.get("A2A_REMOTE_BEARER").cloned());
            match spec.validate() {
                Ok(()) => agents.push(spec),
                Err(e) => errors.push(format!("A2A_REMOTE_URL: {e}")),
            }
        }
        let guard = crate::guard::Guard::new(crate::guard::Policy::Agents, &self.agents.allow_cidrs);
        for a in &agents {
            for url in a.urls() {
                let refused = reqwest::Url::parse(&url).ok().and_then(|u| guard.check_literal(&u).err());
                if let Some(why) = refused {
                    errors.push(format!("agent {}: url {url:?}: {why}", a.id));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for a in &agents {
            if !seen.insert(a.id.clone()) {
                errors.push(format!("agent {:?} is defined more than once", a.id));
            }
        }
        agents
    }
}

/// Merges the file into the tree, refusing keys the defaults do not have and values of the
/// wrong type.
fn merge_file(tree: &mut Toml, defaults: &Toml, file: toml::Table, errors: &mut Vec<String>) {
    for (section, value) in file {
        let Some(default_section) = defaults.get(&section).and_then(Toml::as_table) else {
            errors.push(format!("unknown config section [{section}]"));
            continue;
        };
        let Toml::Table(entries) = value else {
            errors.push(format!("[{section}] must be a table"));
            continue;
        };
        for (key, value) in entries {
            match default_section.get(&key) {
                None => errors.push(format!("unknown config key {section}.{key}")),
                Some(d) if d.type_str() != value.type_str() => {
                    errors.push(format!("{section}.{key}: expected {}, found {}", d.type_str(), value.type_str()))
                }
                Some(_) => set(tree, &section, &key, value),
            }
        }
    }
}

fn set(tree: &mut Toml, section: &str, key: &str, value: Toml) {
    if let Some(Toml::Table(t)) = tree.get_mut(section) {
        t.insert(key.to_owned(), value);
    }
}

/// Parses an environment string as the type of the default at that key.
fn parse_like(default: &Toml, raw: &str) -> Result<Toml, String> {
    match default {
        Toml::Integer(_) => {
            raw.trim().parse::<i64>().map(Toml::Integer).map_err(|_| format!("{raw:?} is not an integer"))
        }
        Toml::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Toml::Boolean(true)),
            "false" | "0" | "no" => Ok(Toml::Boolean(false)),
            _ => Err(format!("{raw:?} is not a boolean")),
        },
        Toml::Array(_) => Ok(Toml::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Toml::String(s.to_owned())).collect(),
        )),
        _ => Ok(Toml::String(raw.to_owned())),
    }
}

fn apply_env(tree: &mut Toml, defaults: &Toml, env: &HashMap<String, String>, errors: &mut Vec<String>) {
    let mut assignments: BTreeMap<String, (String, String)> = BTreeMap::new();
    // SuperX variables first, so SUPERX_* (more specific) win over them.
    for (var, key) in LEGACY_ENV {
        if let Some(raw) = env.get(var) {
            let raw = if var == "LOG_LEVEL" && raw == "warning" { "warn".to_owned() } else { raw.clone() };
            assignments.insert(key.to_owned(), (var.to_owned(), raw));
        }
    }
    let mut superx: Vec<_> = env.iter().filter(|(k, _)| k.starts_with("SUPERX_")).collect();
    superx.sort();
    for (var, raw) in superx {
        if LEGACY_ENV.iter().any(|(v, _)| v == var) {
            continue;
        }
        // Only SUPERX_SECTION__KEY names are config; other SUPERX_ variables belong to
        // tools around superx (test runners, scripts) and are left alone.
        let Some((section, key)) = var["SUPERX_".len()..].split_once("__") else {
            continue;
        };
        let key = format!("{}.{}", section.to_ascii_lowercase(), key.to_ascii_lowercase());
        assignments.insert(key, (var.clone(), raw.clone()));
    }
    for (key, (var, raw)) in assignments {
        let (section, name) = key.split_once('.').expect("keys are section.key");
        let Some(default) = defaults.get(section).and_then(|s| s.get(name)) else {
            errors.push(format!("{var}: unknown config key {key}"));
            continue;
        };
        match parse_like(default, &raw) {
            Ok(value) => set(tree, section, name, value),
            Err(e) => errors.push(format!("{var} ({key}): {e}")),
        }
    }
    if let Some(port) = env.get("CLUSTER_PORT") {
        match port.trim().parse::<u16>() {
            Ok(port) => {
                let listen = tree["cluster"]["gossip_listen"].as_str().unwrap_or_default().to_owned();
                let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or("0.0.0.0");
                set(tree, "cluster", "gossip_listen", Toml::String(format!("{host}:{port}")));
            }
            Err(_) => errors.push(format!("CLUSTER_PORT: {port:?} is not a port number")),
        }
    }
    if let Some(port) = env.get("PORT") {
        match port.trim().parse::<u16>() {
            Ok(port) => {
                let listen = tree["server"]["listen"].as_str().unwrap_or_default().to_owned();
                let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or("0.0.0.0");
                set(tree, "server", "listen", Toml::String(format!("{host}:{port}")));
            }
            Err(_) => errors.push(format!("PORT: {port:?} is not a port number")),
        }
    }
}

fn apply_flags(tree: &mut Toml, o: &Overrides) {
    if let Some(listen) = &o.listen {
        set(tree, "server", "listen", Toml::String(listen.clone()));
    }
    if let Some(dir) = &o.data_dir {
        set(tree, "server", "data_dir", Toml::String(dir.clone()));
    }
    if let Some(file) = &o.agents_file {
        set(tree, "agents", "file", Toml::String(file.clone()));
    }
    if let Some(id) = o.node_id {
        set(tree, "server", "node_id", Toml::Integer(id as i64));
    }
    if let Some(listen) = &o.raft_listen {
        set(tree, "raft", "listen", Toml::String(listen.clone()));
    }
    if let Some(peers) = &o.peers {
        set(tree, "raft", "peers", Toml::String(peers.clone()));
    }
    if let Some(listen) = &o.gossip_listen {
        set(tree, "cluster", "gossip_listen", Toml::String(listen.clone()));
    }
    if let Some(strategy) = &o.strategy {
        set(tree, "cluster", "strategy", Toml::String(strategy.clone()));
    }
    if let Some(seeds) = &o.seeds {
        set(tree, "cluster", "seeds", Toml::String(seeds.clone()));
    }
    if let Some(n) = o.bootstrap_expect {
        set(tree, "cluster", "bootstrap_expect", Toml::Integer(n as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_load() {
        let c = Config::load(&Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:4000");
        assert!(!c.auth.required(), "open on loopback with nothing configured");
        assert_eq!(c.server.data_dir, "./superx-data");
        assert!(c.initial_agents.is_empty());
    }

    /// The documented example file sets every key to its default, so it stays true.
    #[test]
    fn example_file_is_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/superx.example.toml");
        let o = Overrides { config_file: Some(path), ..Default::default() };
        assert_eq!(Config::load(&o, &env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn layers_override_in_order() {
        let f = file("[agents]\ncall_timeout_ms = 1000\nmax_in_flight = 3\n[server]\nlisten = \"127.0.0.1:5000\"\n");
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        let c = Config::load(&o, &env(&[("AGENT_CALL_TIMEOUT", "2000"), ("PORT", "6000")])).unwrap();
        assert_eq!(c.agents.call_timeout_ms, 2000, "env overrides file");
        assert_eq!(c.agents.max_in_flight, 3, "file overrides default");
        assert_eq!(c.server.listen, "127.0.0.1:6000", "PORT sets the port only");
        let c = Config::load(&o, &env(&[("AGENT_CALL_TIMEOUT", "2000"), ("SUPERX_AGENTS__CALL_TIMEOUT_MS", "3000")]))
            .unwrap();
        assert_eq!(c.agents.call_timeout_ms, 3000, "SUPERX_ overrides SuperX variables");
        let o = Overrides { listen: Some("127.0.0.1:7000".into()), ..o };
        let c = Config::load(&o, &env(&[("PORT", "6000")])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7000", "flags override env");
    }

    #[test]
    fn every_error_is_reported_together() {
        let f = file("[server]\nlisten = \"nonsense\"\nbogus = 1\n[agents]\nmax_in_flight = \"ten\"\n[nope]\nx = 1\n");
        let o = Overrides {
            config_file: Some(f.path().into()),
            agents_file: Some("/nonexistent/agents.yml".into()),
            ..Default::default()
        };
        let e = Config::load(
            &o,
            &env(&[
                ("SUPERX_TASKS__MEMORY_MAX", "lots"),
                ("SUPERX_WHAT__EVER", "1"),
                ("SUPERX_BIN", "ignored"),
                ("PORT", "x"),
                ("A2A_REMOTE_URL", "ftp://x"),
            ]),
        )
        .unwrap_err();
        let text = e.to_string();
        for needle in [
            "server.bogus",
            "agents.max_in_flight: expected integer",
            "[nope]",
            "SUPERX_TASKS__MEMORY_MAX",
            "SUPERX_WHAT__EVER",
            "PORT",
            "server.listen",
            "/nonexistent/agents.yml",
            "A2A_REMOTE_URL",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(e.0.len(), 9, "{text}");
    }

    #[test]
    fn push_knobs_from_file_and_superx_variables() {
        let f = file("[push]\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nmax_attempts = 7\n");
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        let c = Config::load(&o, &env(&[("PUSH_RETRY_BASE_MS", "50")])).unwrap();
        assert_eq!(c.push.allow_cidrs, ["127.0.0.0/8", "::1/128"]);
        assert_eq!((c.push.max_attempts, c.push.retry_base_ms), (7, 50));
        let c =
            Config::load(&o, &env(&[("PUSH_MAX_ATTEMPTS", "2"), ("SUPERX_PUSH__ALLOW_CIDRS", "10.0.0.0/8, fd00::/8")]))
                .unwrap();
        assert_eq!((c.push.max_attempts, c.push.allow_cidrs.len()), (2, 2));
        let e =
            Config::load(&Overrides::default(), &env(&[("SUPERX_PUSH__ALLOW_CIDRS", "10.0.0.0/33,nope")])).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
    }

    #[test]
    fn an_open_cluster_listener_off_loopback_needs_a_secret_or_allow_open() {
        const SECRET: &str = "0123456789abcdef0123456789abcdef";
        let exposed = Overrides { raft_listen: Some("0.0.0.0:4100".into()), ..Default::default() };
        let e = Config::load(&exposed, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("raft.listen") && e.to_string().contains("cluster.allow_open"), "{e}");
        assert!(Config::load(&exposed, &env(&[("SUPERX_CLUSTER__ALLOW_OPEN", "true")])).is_ok());
        let c = Config::load(&exposed, &env(&[("SUPERX_CLUSTER__SECRET", SECRET)])).unwrap();
        assert!(!format!("{c:?}").contains(SECRET), "the secret never shows in Debug");
        // Gossip counts only with a strategy that gossips.
        let gossip = Overrides {
            gossip_listen: Some("0.0.0.0:4200".into()),
            strategy: Some("gossip".into()),
            ..Default::default()
        };
        let e = Config::load(&gossip, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("cluster.gossip_listen"), "{e}");
        let f = file(&format!("  {SECRET}\n"));
        let from_file = [("SUPERX_CLUSTER__SECRET_FILE", f.path().to_str().unwrap())];
        assert!(Config::load(&gossip, &env(&from_file)).is_ok());
    }

    #[test]
    fn cluster_secret_mistakes_are_reported() {
        let short = Config::load(&Overrides::default(), &env(&[("SUPERX_CLUSTER__SECRET", "too short")])).unwrap_err();
        assert!(short.to_string().contains("at least 32 bytes"), "{short}");
        let missing = env(&[("SUPERX_CLUSTER__SECRET_FILE", "/nonexistent/superx-secret")]);
        let e = Config::load(&Overrides::default(), &missing).unwrap_err();
        assert!(e.to_string().contains("cluster.secret_file: /nonexistent/superx-secret"), "{e}");
        let both = env(&[
            ("SUPERX_CLUSTER__SECRET_FILE", "/nonexistent/superx-secret"),
            ("SUPERX_CLUSTER__SECRET", "0123456789abcdef0123456789abcdef"),
        ]);
        assert!(Config::load(&Overrides::default(), &both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn tls_needs_both_files() {
        let e = Config::load(&Overrides::default(), &env(&[("SUPERX_SERVER__TLS_CERT_FILE", "/x.pem")])).unwrap_err();
        assert!(e.to_string().contains("set both"), "{e}");
    }

    #[test]
    fn auth_from_the_environment_and_its_mistakes() {
        let exposed = Overrides { listen: Some("0.0.0.0:4000".into()), ..Default::default() };
        let e = Config::load(&exposed, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("auth.allow_open"), "{e}");
        assert!(Config::load(&exposed, &env(&[("SUPERX_AUTH__ALLOW_OPEN", "true")])).is_ok());
        let c = Config::load(
            &exposed,
            &env(&[
                ("SUPERX_AUTH__MODE", "required"),
                ("SUPERX_AUTH__ADMIN_TOKEN", "0123456789abcdef"),
                ("SUPERX_AUTH__JWT_HS256_SECRET", "0123456789abcdef0123456789abcdef"),
                ("SUPERX_AUTH__JWT_ISSUER", "https://idp"),
                ("SUPERX_AUTH__JWT_AUDIENCES", "a, b"),
            ]),
        )
        .unwrap();
        assert_eq!((c.auth.required(), c.auth.jwt_audiences.len()), (true, 2));
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "Debug shows no secret");
        for (pairs, needle) in [
            (vec![("SUPERX_AUTH__MODE", "required")], "needs an admin credential"),
            (vec![("SUPERX_AUTH__ADMIN_TOKEN", "0123456789abcdef")], "auth.mode is \"open\""),
            (vec![("SUPERX_AUTH__MODE", "sometimes")], "must be open or required"),
            (vec![("SUPERX_AUTH__MODE", "required"), ("SUPERX_AUTH__ADMIN_TOKEN", "short")], "at least 16 characters"),
            (
                vec![
                    ("SUPERX_AUTH__MODE", "required"),
                    ("SUPERX_AUTH__ADMIN_TOKEN", "0123456789abcdef"),
                    ("SUPERX_AUTH__JWKS_URL", "http://idp/jwks"),
                ],
                "need auth.jwt_issuer and auth.jwt_audiences",
            ),
        ] {
            let e = Config::load(&Overrides::default(), &env(&pairs)).unwrap_err();
            assert!(e.to_string().contains(needle), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn peers_parse_and_errors() {
        let peers = parse_peers("1=127.0.0.1:4101@127.0.0.1:4001, 2=h2:4101@h2:4001").unwrap();
        assert_eq!(peers[1], Peer { id: 2, raft: "h2:4101".into(), api: "h2:4001".into() });
        assert!(parse_peers("").unwrap().is_empty());
        for bad in ["1=a:1", "x=a:1@b:2", "1=a@b:2", "1=a:1@b:2,1=c:1@d:2", "1=:1@b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
        let o = Overrides { node_id: Some(3), peers: Some("1=a:1@a:2,2=b:1@b:2".into()), ..Default::default() };
        let e = Config::load(&o, &env(&[])).unwrap_err();
        assert!(e.to_string().contains("must include this node"), "{e}");
    }

    #[test]
    fn agents_from_file_and_env() {
        let f = file("agents:\n  echo:\n    url: http://127.0.0.1:9/\n    bearer: s3cret\n    maxInFlight: 4\n");
        let o = Overrides { agents_file: Some(f.path().to_string_lossy().into()), ..Default::default() };
        let c =
            Config::load(&o, &env(&[("A2A_REMOTE_URL", "http://127.0.0.1:8/"), ("A2A_REMOTE_BEARER", "b")])).unwrap();
        let ids: Vec<_> = c.initial_agents.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["echo", "default"]);
        assert_eq!(c.initial_agents[0].max_in_flight, Some(4));
        assert_eq!(c.initial_agents[1].bearer.as_deref(), Some("b"));
    }
}
