//! The gateway: the state every request handler shares (config, replica, agent client,
//! per-agent counters and protection) and the operations that combine them (registering
//! agents, fetching cards, calling agents and opening their streams through their breaker and
//! in-flight limit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;

use crate::agents::card_misses::CardMisses;
use crate::agents::client::UpstreamReply;
use crate::agents::spec::AgentSpec;
use crate::agents::{AgentClient, AgentStats, CallTarget, Outcome, Permit, UpstreamMethod, UpstreamStream};
use crate::codec::Json;
use crate::config::Config;
use crate::jsonrpc::RpcError;
use crate::state::{AgentAuth, CachedCard, Command, LimitCommand, ProposeError, Replica, TableLimits, raft_config};
use crate::tasks::{HistoryLimits, Subscriptions};

/// Pause between attempts to register a startup agent while the cluster has no leader.
const STARTUP_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Startup card fetches run this many at a time.
const STARTUP_CARD_FETCHES_MAX: usize = 16;

pub struct Gateway {
    pub config: Config,
    pub replica: Replica,
    pub client: AgentClient,
    pub stats: AgentStats,
    /// This node's negative cache of card fetches (`cards.miss_ttl_ms`, `cards.misses_max`).
    pub card_misses: CardMisses,
    /// Requests and streams this node admits at once; the drain on shutdown.
    pub admission: crate::admission::Admission,
    /// The Postgres archive of terminal tasks; `None` without a database URL.
    pub archive: Option<Arc<crate::archive::Archive>>,
    /// Gossip membership; `None` with the static strategy.
    pub cluster: Option<superx_cluster::Cluster>,
    /// How other nodes reach this node (raft listener and public API).
    pub advertise: superx_raft::PeerAddr,
    /// The tasks this node follows upstream by itself.
    pub followed: Arc<crate::tasks::Followed>,
    /// Webhook delivery (its client behind the SSRF guard, limits, counters).
    pub push: Arc<crate::push::Push>,
    /// Who may call (`auth`): credential checks, the JWT key set.
    pub auth: crate::auth::Auth,
    /// The cluster secret raft and gossip are closed with; `None` in an open cluster.
    pub keyring: Option<superx_keyring::Keyring>,
    /// Rate limits per credential and per agent: this node's buckets and shares.
    pub limiter: crate::limits::Limiter,
    ready: AtomicBool,
    /// Set when the node should stop by itself (after leaving the cluster).
    stop: tokio::sync::watch::Sender<bool>,
}

/// What [`Gateway::card_to_serve`] found.
pub enum CardLookup {
    NotFound,
    Card(CachedCard),
    /// No card, and none could be fetched (the error, maybe remembered from a recent fetch).
    Unavailable(String),
}

/// Records how an agent call (or stream opening) ended: on its permit for the breaker and
/// `agents/health`, and in the call metrics.
fn record_call<T>(
    permit: &mut Permit,
    agent_id: &str,
    method: UpstreamMethod,
    result: &Result<T, RpcError>,
    took: Duration,
) {
    let outcome = Outcome::of(result);
    let error = match (outcome, result) {
        (Outcome::Failure, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    if let Some(error) = &error {
        tracing::warn!(agent_id, ?method, %error, "agent call failed");
    }
    permit.record(outcome, error.as_deref());
    let (agent, name) = (agent_id.to_owned(), method.label());
    metrics::counter!("superx_agent_calls_total", "agent" => agent.clone(), "method" => name, "outcome" => outcome.label())
        .increment(1);
    metrics::histogram!("superx_agent_call_duration_seconds", "agent" => agent, "method" => name)
        .record(took.as_secs_f64());
}

/// Why calls to an agent with this card will be refused, if they will: the card lists
/// interfaces, none on a binding the gateway calls.
fn unusable_card(id: &str, card: &Value) -> Option<String> {
    match crate::a2a::interface::choose(card, None) {
        crate::a2a::interface::Offer::Unusable(bindings) => {
            let error = format!(
                "agent {id} offers only {} interfaces; the gateway calls agents over JSONRPC or HTTP+JSON, so its calls are refused",
                bindings.join(", ")
            );
            tracing::warn!(agent_id = %id, %error, "agent registered with no callable interface");
            Some(error)
        }
        _ => None,
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl Gateway {
    /// Starts the node's replica (opening its raft storage and joining the cluster).
    pub async fn start(config: Config) -> anyhow::Result<Arc<Gateway>> {
        // Before anything records: the facade drops what arrives before a recorder is set.
        crate::telemetry::metrics::handle();
        let client = AgentClient::new(&config.agents)?;
        let auth = crate::auth::Auth::new(&config.auth)?;
        let push = Arc::new(crate::push::Push::new(&config.push, &config.cards.gateway_name)?);
        // Before raft starts: a database this node cannot use is a startup error, said plainly.
        let archive = match config.archive.enabled() {
            true => Some(Arc::new(
                crate::archive::Archive::open(&config.archive)
                    .await
                    .map_err(|e| anyhow::anyhow!("archive (archive.database_url / DATABASE_URL): {e}"))?,
            )),
            false => None,
        };
        // Every node starts from the same limits; the configured ones arrive through the log
        // (`membership::keep_settings`), so apply stays the same everywhere.
        let limits = TableLimits::default();
        let streams = &config.streams;
        let subscriptions = Arc::new(
            Subscriptions::new(
                streams.subscriber_buffer_events,
                streams.task_subscribers_max,
                HistoryLimits {
                    tasks_max: streams.resume_history_tasks_max,
                    events_max: streams.resume_history_events_max,
                    bytes_max: streams.resume_history_bytes_max,
                },
            )
            .with_feed(crate::tasks::Feed::new(config.ui.feed_buffer_events, config.ui.feed_clients_max)),
        );
        let keyring = crate::membership::secret::load(&config.cluster)?;
        let mut raft = raft_config(&config).map_err(anyhow::Error::msg)?;
        raft.keyring = keyring.clone();
        let advertise = raft.advertise.clone();
        let replica = Replica::start(raft, limits, subscriptions, config.cluster.bootstrap_expect as usize).await?;
        let cluster = match crate::membership::start_gossip(&config, &advertise, keyring.clone()).await {
            Ok(cluster) => cluster,
            Err(e) => {
                replica.shutdown().await;
                return Err(e);
            }
        };
        let admission = crate::admission::Admission::new(&config.server);
        let followed = crate::tasks::Followed::new(config.streams.follow_tasks_max);
        let card_misses = CardMisses::new(Duration::from_millis(config.cards.miss_ttl_ms), config.cards.misses_max);
        // Without gossip, nodes cannot share demand: each takes its fraction of every rate.
        let static_nodes = match cluster {
            Some(_) => 1,
            None => crate::config::parse_peers(&config.raft.peers).map_or(1, |p| p.len().max(1)),
        };
        let limiter = crate::limits::Limiter::new(&config.limits, static_nodes);
        let gw = Arc::new(Gateway {
            config,
            replica,
            client,
            stats: AgentStats::default(),
            card_misses,
            admission,
            archive,
            cluster,
            advertise,
            followed,
            push,
            auth,
            keyring,
            limiter,
            ready: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
        });
        crate::telemetry::metrics::spawn_raft_watch(&gw);
        crate::limits::spawn_sharing(&gw);
        gw.auth.start();
        Ok(gw)
    }

    /// Asks the node to stop by itself (the process exits once in-flight requests finish).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Completes once a stop was requested.
    pub async fn stopping(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Stops gossip and raft (a SIGTERM is a restart: the node stays a member).
    pub async fn stop(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        self.replica.shutdown().await;
    }

    /// Wall-clock time for the proposer to stamp into commands (never read inside apply).
    pub fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    /// True once startup registration is done and the replica can serve, until the drain.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.replica.is_ready() && !self.admission.is_draining()
    }

    /// Admits a call or stream to an agent (its breaker and in-flight limit), or answers
    /// with the retryable error that names the agent.
    pub fn admit(&self, target: &CallTarget<'_>, method: UpstreamMethod) -> Result<Permit, RpcError> {
        let registered = |id: &str| self.replica.read(|t| t.agent(id).is_some());
        let counters = self.stats.get_or_create(target.agent_id, registered);
        self.stats.admit(counters, target.limits).map_err(|rejection| {
            let (agent, name) = (target.agent_id.to_owned(), method.label());
            metrics::counter!("superx_agent_calls_total", "agent" => agent, "method" => name, "outcome" => rejection.label())
                .increment(1);
            rejection.into_error(target.agent_id)
        })
    }

    /// Calls an agent through its protection, counting the call for `agents/health` and
    /// the metrics.
    pub async fn call_agent(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<UpstreamReply, RpcError> {
        let mut permit = self.admit(target, method)?;
        let started = tokio::time::Instant::now();
        let result = self.client.call(target, method, params).await;
        record_call(&mut permit, target.agent_id, method, &result, started.elapsed());
        result
    }

    /// Opens a stream on an agent through its protection. The permit comes back with the
    /// stream: it holds an in-flight slot until the stream ends (the pump drops it).
    pub async fn open_agent_stream(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<(UpstreamStream, Permit), RpcError> {
        let mut permit = self.admit(target, method)?;
        let stream = self.reopen_agent_stream(&mut permit, target, method, params).await?;
        Ok((stream, permit))
    }

    /// Opens a stream under a permit already held (a pump reconnecting), recording the
    /// outcome for the agent's breaker.
    pub async fn reopen_agent_stream(
        &self,
        permit: &mut Permit,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<UpstreamStream, RpcError> {
        let started = tokio::time::Instant::now();
        let result = self.client.open_stream(target, method, params, &self.config.streams).await;
        record_call(permit, target.agent_id, method, &result, started.elapsed());
        if result.is_ok() {
            metrics::counter!("superx_agent_streams_started_total", "agent" => target.agent_id.to_owned()).increment(1);
        }
        result
    }

    /// Registers (or re-registers) an agent, fetching its card first. The agent is registered
    /// even when its card cannot be fetched or offers no binding the gateway calls (gRPC only:
    /// its calls are refused); either problem is returned for the caller to show.
    pub async fn register(&self, spec: AgentSpec) -> Result<Option<String>, ProposeError> {
        // Validated with the spec (a bad rate never gets here).
        let rate = spec.rate().ok().flatten();
        let (record, auth) = spec.into_parts();
        let (id, url) = (record.id.clone(), record.url.clone());
        let card = self.client.fetch_card(&record, &auth).await;
        let now = self.now_ms();
        // Without auth toward the agent the command is the one older nodes know.
        let command = match auth == AgentAuth::default() {
            true => Command::UpsertAgent { agent: record, at_ms: now },
            false => Command::UpsertAgentWithAuth { agent: record, auth, at_ms: now },
        };
        self.replica.propose(command).await?;
        if self.replica.read(|t| t.agent_rate(&id)) != rate {
            self.replica.propose_limits(LimitCommand::AgentRate { id: id.clone(), rate }).await?;
        }
        match card {
            Ok((card, source_url)) => {
                let unusable = unusable_card(&id, &card);
                let card = CachedCard { card: Json(card), source_url, fetched_at_ms: now };
                self.replica.propose(Command::SetAgentCard { id, card }).await?;
                Ok(unusable)
            }
            Err(error) => {
                tracing::warn!(
                    agent_id = %id,
                    %url,
                    %error,
                    "agent registered without a card: is it running at this URL? Calls to it try the card again \
                     (or run `superx agents add` / agents/refreshCard once it is up)"
                );
                Ok(Some(error))
            }
        }
    }

    /// Fetches an agent's card again and caches it.
    pub async fn refresh_card(&self, id: &str) -> Result<(), RpcError> {
        let (record, auth) = self
            .replica
            .read(|t| t.agent(id).map(|e| (e.record.clone(), e.auth.clone())))
            .ok_or_else(|| RpcError::AgentNotFound(id.to_owned()))?;
        let (card, source_url) = self
            .client
            .fetch_card(&record, &auth)
            .await
            .map_err(|e| RpcError::AgentUnavailable(format!("agent {id}: card fetch failed: {e}")))?;
        let card = CachedCard { card: Json(card), source_url, fetched_at_ms: self.now_ms() };
        self.replica.propose(Command::SetAgentCard { id: id.to_owned(), card }).await.map(|_| ()).map_err(
            |e| match e {
                crate::state::ProposeError::Refused(crate::state::Refusal::AgentNotFound(id)) => {
                    RpcError::AgentNotFound(id)
                }
                other => other.into(),
            },
        )?;
        self.card_misses.forget(id);
        Ok(())
    }

    /// The card to serve for agent `id`. A stored card is served as it is, also while the
    /// agent is unreachable: a card request never fetches once a card is stored. An agent
    /// without one is fetched (and the card committed) at most once per `cards.miss_ttl_ms`
    /// on this node; within it, requests get the last fetch error at once.
    pub async fn card_to_serve(&self, id: &str) -> CardLookup {
        match self.replica.read(|t| t.agent(id).map(|e| e.card.clone())) {
            None => return CardLookup::NotFound,
            Some(Some(card)) => return CardLookup::Card(card),
            Some(None) => {}
        }
        let ticket = match self.card_misses.begin(id) {
            Ok(ticket) => ticket,
            Err(error) => return CardLookup::Unavailable(error),
        };
        match self.refresh_card(id).await {
            Ok(()) => ticket.succeeded(),
            Err(RpcError::AgentNotFound(_)) => return CardLookup::NotFound,
            Err(e) => {
                ticket.failed(&e.to_string());
                return CardLookup::Unavailable(e.to_string());
            }
        }
        match self.replica.read(|t| t.agent(id).map(|e| e.card.clone())) {
            Some(Some(card)) => CardLookup::Card(card),
            Some(None) => CardLookup::Unavailable(format!("agent {id} has no card")),
            None => CardLookup::NotFound,
        }
    }

    /// Registers a startup agent, waiting out elections (a node may start before the cluster
    /// has a leader).
    async fn register_until_done(&self, spec: AgentSpec) {
        let id = spec.id.clone();
        loop {
            match self.register(spec.clone()).await {
                Ok(_) => return,
                Err(ProposeError::Unavailable(why)) => {
                    tracing::info!(agent_id = %id, %why, "waiting for the cluster to register the agent");
                    tokio::time::sleep(STARTUP_RETRY_PAUSE).await;
                }
                Err(error) => {
                    tracing::error!(agent_id = %id, %error, "agent registration failed");
                    return;
                }
            }
        }
    }

    /// Registers the agents from the config (file and environment), then marks the node ready.
    pub async fn register_initial_agents(self: &Arc<Self>) {
        let specs = self.config.initial_agents.clone();
        let count = specs.len();
        futures::stream::iter(specs)
            .for_each_concurrent(STARTUP_CARD_FETCHES_MAX, |spec| {
                let gw = self.clone();
                async move { gw.register_until_done(spec).await }
            })
            .await;
        tracing::info!(agents = count, "startup agents registered");
        self.ready.store(true, Ordering::Release);
    }
}
