//! Calls to agents on the binding and version the agent's card offers (`state::Upstream`):
//! JSON-RPC, or HTTP+JSON when that is all the card lists, in 1.0 or 0.3 (translating the
//! gateway's 1.0 model both ways), and agent card fetches.
//!
//! Every call carries `A2A-Version`, the agent's bearer, a deadline, the client's
//! `A2A-Extensions`, and a `traceparent` continuing the client's trace; answers are
//! size-limited and checked before anything is believed. Both bindings end in the same
//! outcomes: an [`Answer`], the agent's own A2A error as `RpcError::Upstream` (an answer, not
//! a failure), or a failure (`AgentUnavailable`, `InvalidAgentResponse`) for transport
//! errors, timeouts, HTTP errors the agent gives no A2A reason for, 5xx and malformed answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use super::oauth::Token;
use super::spec::{CardSource, card_source};
use super::stream::UpstreamStream;
use crate::a2a::interface::Binding;
use crate::a2a::rest_client::{self, RestRequest, Verb};
use crate::a2a::task::task_from_wire;
use crate::a2a::v03;
use crate::a2a::{A2A_EXTENSIONS, A2A_VERSION, ProtocolVersion, X_A2A_EXTENSIONS};
use crate::config::{AgentsConfig, StreamsConfig};
use crate::guard::{Guard, GuardedResolver, Policy};
use crate::jsonrpc::RpcError;
use crate::state::{AgentAuth, AgentRecord, OAuth2Client, Task, Upstream};
use crate::telemetry::trace::{TRACEPARENT, TRACESTATE, TraceContext};

/// The media type of JSON bodies sent to agents. A2A 1.0.1 prefers `application/a2a+json`
/// for HTTP+JSON, but 1.0.0 servers know only `application/json`, which every version accepts.
const JSON_MEDIA_TYPE: &str = "application/json";

/// The agent-side operations the gateway performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamMethod {
    SendMessage,
    GetTask,
    CancelTask,
    SendStreamingMessage,
    SubscribeToTask,
    GetExtendedAgentCard,
    /// Registers the gateway's own webhook for a task (`rpc::inbound`).
    CreatePushConfig,
}

impl UpstreamMethod {
    /// The 1.0 name, the `method` label of agent call metrics.
    pub fn label(self) -> &'static str {
        self.name(ProtocolVersion::V10)
    }

    fn name(self, version: ProtocolVersion) -> &'static str {
        match (self, version) {
            (Self::SendMessage, ProtocolVersion::V10) => "SendMessage",
            (Self::SendMessage, ProtocolVersion::V03) => "message/send",
            (Self::GetTask, ProtocolVersion::V10) => "GetTask",
            (Self::GetTask, ProtocolVersion::V03) => "tasks/get",
            (Self::CancelTask, ProtocolVersion::V10) => "CancelTask",
            (Self::CancelTask, ProtocolVersion::V03) => "tasks/cancel",
            (Self::SendStreamingMessage, ProtocolVersion::V10) => "SendStreamingMessage",
            (Self::SendStreamingMessage, ProtocolVersion::V03) => "message/stream",
            (Self::SubscribeToTask, ProtocolVersion::V10) => "SubscribeToTask",
            (Self::SubscribeToTask, ProtocolVersion::V03) => "tasks/resubscribe",
            (Self::GetExtendedAgentCard, ProtocolVersion::V10) => "GetExtendedAgentCard",
            (Self::GetExtendedAgentCard, ProtocolVersion::V03) => "agent/getAuthenticatedExtendedCard",
            (Self::CreatePushConfig, ProtocolVersion::V10) => "CreateTaskPushNotificationConfig",
            (Self::CreatePushConfig, ProtocolVersion::V03) => "tasks/pushNotificationConfig/set",
        }
    }
}

/// Where one call goes, with what it needs.
pub struct CallTarget<'a> {
    pub agent_id: &'a str,
    pub upstream: &'a Upstream,
    pub bearer: Option<&'a str>,
    pub timeout: Duration,
    /// The client's `A2A-Extensions`, forwarded.
    pub extensions: Option<&'a HeaderValue>,
    /// The client's `Authorization`, sent instead of the bearer (GetExtendedAgentCard only).
    pub authorization: Option<&'a HeaderValue>,
    /// The client's own credentials, for an agent configured to get them
    /// (`forwardCredentials`): sent instead of any bearer, and a 401/403 is the caller's.
    pub forwarded: Option<&'a ClientCredentials>,
    /// The agent's OAuth2 client: its token is the bearer.
    pub oauth2: Option<&'a OAuth2Client>,
    /// The client request's trace: each call sends a child span's `traceparent`.
    pub trace: Option<&'a TraceContext>,
    /// The agent's breaker and in-flight knobs, from its record at resolution.
    pub limits: super::Limits,
}

/// The credentials a client sent the gateway, kept for an agent that gets them forwarded.
/// The values are marked sensitive: `Debug` shows none.
#[derive(Clone, Debug, Default)]
pub struct ClientCredentials {
    pub authorization: Option<HeaderValue>,
    pub api_key: Option<HeaderValue>,
}

impl ClientCredentials {
    pub fn of(headers: &reqwest::header::HeaderMap) -> ClientCredentials {
        let sensitive = |name: &str| {
            headers.get(name).cloned().map(|mut v| {
                v.set_sensitive(true);
                v
            })
        };
        ClientCredentials {
            authorization: sensitive(reqwest::header::AUTHORIZATION.as_str()),
            api_key: sensitive(crate::auth::API_KEY_HEADER),
        }
    }
}

/// What an agent answered, checked and typed.
#[derive(Debug)]
pub enum Answer {
    Task(Task),
    /// A 1.0 `Message` (SendMessage only).
    Message(Value),
    /// An agent card, as the agent sent it (GetExtendedAgentCard only).
    Card(Value),
    /// A push notification config, as the agent stored it (CreatePushConfig only).
    Config(Value),
}

/// A successful answer.
pub struct UpstreamReply {
    pub answer: Answer,
    /// The agent's `A2A-Extensions` response header, passed back to the client.
    pub extensions: Option<HeaderValue>,
}

pub struct AgentClient {
    http: reqwest::Client,
    /// What agent and card URLs may reach (`agents.allow_cidrs`): the client's resolver and
    /// redirect policy enforce it, literal addresses are checked before each request.
    guard: Arc<Guard>,
    limits: AgentsConfig,
    next_id: AtomicU64,
    /// Agents' OAuth2 tokens on this node.
    pub tokens: super::oauth::Tokens,
}

impl AgentClient {
    pub fn new(limits: &AgentsConfig) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS crypto provider; ring is ours. Installing
        // twice is harmless (the second call reports the first provider and changes nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = Arc::new(Guard::new(Policy::Agents, &limits.allow_cidrs));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(limits.connect_timeout_ms))
            .pool_max_idle_per_host(limits.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(GuardedResolver { guard: guard.clone() }))
            // A proxy would resolve the names itself, past the guard.
            .no_proxy()
            .redirect(guard.redirect_policy(limits.redirects_max))
            .user_agent(concat!("superx/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let tokens = super::oauth::Tokens::new(
            http.clone(),
            Duration::from_millis(limits.oauth_refresh_margin_ms),
            Duration::from_millis(limits.oauth_timeout_ms),
        );
        Ok(AgentClient { http, guard, limits: limits.clone(), next_id: AtomicU64::new(1), tokens })
    }

    /// The guard agent and card URLs pass (`agents/upsert` screens with it).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Refuses a call whose interface URL is a literal address the guard refuses (names are
    /// checked by the resolver as they connect).
    fn check_address(&self, target: &CallTarget<'_>) -> Result<(), RpcError> {
        let Ok(url) = reqwest::Url::parse(&target.upstream.url) else { return Ok(()) };
        self.guard
            .check_literal(&url)
            .map_err(|why| RpcError::AgentUnavailable(format!("agent {}: {why}", target.agent_id)))
    }

    /// The agent's binding, or the error that says the card offers none superx calls.
    fn binding(target: &CallTarget<'_>) -> Result<Binding, RpcError> {
        target.upstream.binding.ok_or_else(|| {
            RpcError::UnsupportedOperation(format!(
                "agent {} offers no interface the gateway calls: its card lists neither JSONRPC nor HTTP+JSON",
                target.agent_id
            ))
        })
    }

    /// The request for one call on the agent's binding.
    fn request(
        &self,
        target: &CallTarget<'_>,
        token: Option<&Token>,
        method: UpstreamMethod,
        params: Value,
        id: u64,
    ) -> Result<reqwest::RequestBuilder, RpcError> {
        self.check_address(target)?;
        let request = match Self::binding(target)? {
            Binding::JsonRpc => self.jsonrpc_request(target, method, params, id),
            Binding::HttpJson => self.rest_request(target, method, params)?,
        };
        Ok(self.with_headers(request, target, token))
    }

    /// A JSON-RPC POST to the agent: its version's method name and params.
    fn jsonrpc_request(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
        id: u64,
    ) -> reqwest::RequestBuilder {
        let version = target.upstream.version;
        let params = match (method, version) {
            (UpstreamMethod::SendMessage | UpstreamMethod::SendStreamingMessage, ProtocolVersion::V03) => {
                v03::send_params_from_v10(params)
            }
            (UpstreamMethod::CreatePushConfig, ProtocolVersion::V03) => crate::a2a::push::create_params_to_v03(params),
            _ => params,
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method.name(version), "params": params});
        self.http
            .post(&target.upstream.url)
            .header(CONTENT_TYPE, JSON_MEDIA_TYPE)
            .body(serde_json::to_vec(&body).expect("JSON values serialize"))
    }

    /// An HTTP+JSON call: the operation's route under the interface URL, its query and body.
    fn rest_request(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<reqwest::RequestBuilder, RpcError> {
        let version = target.upstream.version;
        let rest = match method {
            UpstreamMethod::SendMessage => Ok(rest_client::send_message(version, params, false)),
            UpstreamMethod::SendStreamingMessage => Ok(rest_client::send_message(version, params, true)),
            UpstreamMethod::GetTask => rest_client::get_task(version, &params),
            UpstreamMethod::CancelTask => rest_client::cancel_task(version, &params),
            UpstreamMethod::SubscribeToTask => rest_client::subscribe_to_task(version, &params),
            UpstreamMethod::GetExtendedAgentCard => Ok(rest_client::extended_agent_card(version)),
            UpstreamMethod::CreatePushConfig => rest_client::create_push_config(version, params),
        }
        // The methods build these params themselves: a missing task id is a gateway bug.
        .map_err(|e| RpcError::Internal(format!("{} params for agent {}: {e}", method.label(), target.agent_id)))?;
        let url = rest_url(target, &rest)?;
        let request = match rest.verb {
            Verb::Get => self.http.get(url),
            Verb::Post => self.http.post(url),
        };
        Ok(match rest.body {
            Some(body) => request
                .header(CONTENT_TYPE, JSON_MEDIA_TYPE)
                .body(serde_json::to_vec(&body).expect("JSON values serialize")),
            None => request,
        })
    }

    /// `A2A-Version`, the credentials, the client's extensions and the trace, on either
    /// binding. Credentials: the client's own for an agent that gets them forwarded (only
    /// those), else the client's `Authorization` on the extended card, else the agent's OAuth2
    /// token, else its bearer.
    fn with_headers(
        &self,
        mut request: reqwest::RequestBuilder,
        target: &CallTarget<'_>,
        token: Option<&Token>,
    ) -> reqwest::RequestBuilder {
        let version = target.upstream.version;
        request = request.header(A2A_VERSION, version.header_value());
        if let Some(forwarded) = target.forwarded {
            if let Some(authorization) = &forwarded.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
            }
            if let Some(key) = &forwarded.api_key {
                request = request.header(crate::auth::API_KEY_HEADER, key.clone());
            }
        } else if let Some(authorization) = target.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        } else if let Some(token) = token {
            request = request.bearer_auth(token.as_str());
        } else if let Some(bearer) = target.bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(ext) = target.extensions {
            let name = if version == ProtocolVersion::V03 { X_A2A_EXTENSIONS } else { A2A_EXTENSIONS };
            request = request.header(name, ext.clone());
        }
        if let Some(trace) = target.trace {
            let (span_id, traceparent) = trace.child_traceparent();
            tracing::debug!(agent_id = target.agent_id, agent_span_id = %format!("{span_id:016x}"), "calling the agent");
            request = request.header(TRACEPARENT, traceparent);
            if let Some(state) = &trace.tracestate {
                request = request.header(TRACESTATE, state.clone());
            }
        }
        request
    }

    /// Opens a stream (SendStreamingMessage or SubscribeToTask) on an agent. Errors the agent
    /// answers before streaming (a JSON-RPC error or an HTTP+JSON error status instead of
    /// `text/event-stream`) come back as `Err`, like a unary call's.
    pub async fn open_stream(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
        limits: &StreamsConfig,
    ) -> Result<UpstreamStream, RpcError> {
        let Some(oauth2) = target.oauth2 else {
            return self.open_stream_once(target, None, method, params, limits).await;
        };
        let token = self.tokens.bearer(target.agent_id, oauth2).await?;
        match self.open_stream_once(target, Some(&token), method, params.clone(), limits).await {
            Err(e) if is_token_refused(&e) => {
                let token = self.retry_token(target, oauth2, &token).await?;
                self.open_stream_once(target, Some(&token), method, params, limits).await.map_err(token_refused_again)
            }
            other => other,
        }
    }

    /// A new token after the agent refused `refused` (one the other callers refused alike
    /// share).
    async fn retry_token(
        &self,
        target: &CallTarget<'_>,
        oauth2: &OAuth2Client,
        refused: &Token,
    ) -> Result<Token, RpcError> {
        tracing::info!(agent_id = target.agent_id, "agent refused its OAuth2 token (HTTP 401): fetching a new one");
        self.tokens.invalidate(target.agent_id, refused).await;
        self.tokens.bearer(target.agent_id, oauth2).await
    }

    async fn open_stream_once(
        &self,
        target: &CallTarget<'_>,
        token: Option<&Token>,
        method: UpstreamMethod,
        params: Value,
        limits: &StreamsConfig,
    ) -> Result<UpstreamStream, RpcError> {
        let binding = Self::binding(target)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request =
            self.request(target, token, method, params, id)?.header(reqwest::header::ACCEPT, "text/event-stream");
        let open = Duration::from_millis(limits.upstream_open_timeout_ms);
        let response = match tokio::time::timeout(open, request.send()).await {
            Err(_) => {
                return Err(RpcError::AgentUnavailable(format!(
                    "agent {} did not open its stream within {} ms",
                    target.agent_id, limits.upstream_open_timeout_ms
                )));
            }
            Ok(r) => r.map_err(|e| transport_error(target, e))?,
        };
        refused_credentials(target, token, method, &response)?;
        if binding == Binding::HttpJson && !response.status().is_success() {
            let status = response.status();
            let bytes = self.read_answer(target, response).await?;
            return Err(rest_error(target, status, &bytes));
        }
        check_status(target, &response)?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_sse {
            let bytes = read_limited(response, self.limits.response_bytes_max)
                .await
                .map_err(|_| invalid(target, "stream request answered without a stream".into()))?;
            if binding == Binding::JsonRpc {
                parse_reply(target, &bytes, id)?;
            }
            return Err(invalid(target, "stream request answered without a stream".into()));
        }
        Ok(UpstreamStream::new(target.agent_id, target.upstream.version, binding, response, limits))
    }

    /// Calls one method on an agent. `params` are 1.0-shaped; the reply is 1.0-shaped.
    pub async fn call(
        &self,
        target: &CallTarget<'_>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<UpstreamReply, RpcError> {
        let Some(oauth2) = target.oauth2 else {
            return self.call_once(target, None, method, params).await;
        };
        let token = self.tokens.bearer(target.agent_id, oauth2).await?;
        match self.call_once(target, Some(&token), method, params.clone()).await {
            Err(e) if is_token_refused(&e) => {
                let token = self.retry_token(target, oauth2, &token).await?;
                self.call_once(target, Some(&token), method, params).await.map_err(token_refused_again)
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        target: &CallTarget<'_>,
        token: Option<&Token>,
        method: UpstreamMethod,
        params: Value,
    ) -> Result<UpstreamReply, RpcError> {
        let binding = Self::binding(target)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = self.request(target, token, method, params, id)?.timeout(target.timeout);
        let response = request.send().await.map_err(|e| transport_error(target, e))?;
        refused_credentials(target, token, method, &response)?;
        let status = response.status();
        if binding == Binding::JsonRpc {
            check_status(target, &response)?;
        }
        let extensions =
            response.headers().get(A2A_EXTENSIONS).or_else(|| response.headers().get(X_A2A_EXTENSIONS)).cloned();
        let bytes = self.read_answer(target, response).await?;
        let answer = match binding {
            Binding::JsonRpc => {
                let result = parse_reply(target, &bytes, id)?;
                to_answer(method, target.upstream.version, result)
            }
            Binding::HttpJson if !status.is_success() => return Err(rest_error(target, status, &bytes)),
            Binding::HttpJson => rest_answer(method, target.upstream.version, &bytes),
        };
        Ok(UpstreamReply { answer: answer.map_err(|e| invalid(target, e.0))?, extensions })
    }

    /// An answer's body, within `response_bytes_max`.
    async fn read_answer(&self, target: &CallTarget<'_>, response: reqwest::Response) -> Result<Vec<u8>, RpcError> {
        read_limited(response, self.limits.response_bytes_max).await.map_err(|e| match e {
            ReadError::TooLarge => {
                invalid(target, format!("response exceeds {} bytes", self.limits.response_bytes_max))
            }
            ReadError::Transport(e) => transport_error(target, e),
        })
    }

    /// An agent's card and where it came from: the operator's `metadata.agentCard` as it is,
    /// else fetched from the card URL override, else from `/.well-known/agent-card.json`, then
    /// the pre-0.3 `/.well-known/agent.json`. A fetched card must be a JSON object.
    pub async fn fetch_card(&self, agent: &AgentRecord, auth: &AgentAuth) -> Result<(Value, String), String> {
        let metadata = agent.metadata.as_ref().map(|m| &m.0);
        let urls = match card_source(metadata) {
            CardSource::Inline(card) => return Ok((card, "metadata.agentCard".into())),
            CardSource::Url(url) => vec![url],
            CardSource::WellKnown => {
                let base = agent.url.trim_end_matches('/');
                vec![format!("{base}/.well-known/agent-card.json"), format!("{base}/.well-known/agent.json")]
            }
        };
        // The agent's OAuth2 token when it has a client (a card fetched without one, if none
        // can be had: cards are usually public), else its bearer.
        let token = match &auth.oauth2 {
            Some(oauth2) => self.tokens.bearer(&agent.id, oauth2).await.ok(),
            None => None,
        };
        let bearer = token.as_ref().map(Token::as_str).or(agent.bearer.as_deref());
        let mut last_error = String::new();
        for url in urls {
            match self.fetch_card_at(&url, bearer).await? {
                Some(card) => return Ok((card, url)),
                None => last_error = format!("{url} answered HTTP 404"),
            }
        }
        Err(last_error)
    }

    /// One card GET: the card, `None` for a 404 (try the next location), or the error.
    async fn fetch_card_at(&self, url: &str, bearer: Option<&str>) -> Result<Option<Value>, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("card URL {url:?}: {e}"))?;
        self.guard.check_literal(&parsed).map_err(|why| format!("fetching {url}: {why}"))?;
        let mut request = self.http.get(url).timeout(Duration::from_millis(self.limits.card_timeout_ms));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.map_err(|e| format!("fetching {url}: {}", describe(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{url} answered HTTP {}", status.as_u16()));
        }
        let bytes = read_limited(response, self.limits.card_bytes_max).await.map_err(|e| match e {
            ReadError::TooLarge => format!("{url}: card exceeds {} bytes", self.limits.card_bytes_max),
            ReadError::Transport(e) => format!("reading {url}: {}", describe(&e)),
        })?;
        let card: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: card is not JSON: {e}"))?;
        // What the card lacks is filled when it is served (`a2a::card::fill_required`).
        if !card.is_object() {
            return Err(format!("{url}: card is not a JSON object"));
        }
        Ok(Some(card))
    }
}

/// A 401/403 to a call made with the caller's credentials (the extended card, an agent that
/// gets them forwarded): the caller is refused, the agent did not fail. A 401 to the
/// gateway's OAuth2 token: the token is refused ([`is_token_refused`]; a new one is fetched).
fn refused_credentials(
    target: &CallTarget<'_>,
    token: Option<&Token>,
    method: UpstreamMethod,
    response: &reqwest::Response,
) -> Result<(), RpcError> {
    let callers = method == UpstreamMethod::GetExtendedAgentCard || target.forwarded.is_some();
    match response.status().as_u16() {
        status @ (401 | 403) if callers => {
            Err(RpcError::AgentAuthRefused { agent: target.agent_id.to_owned(), status })
        }
        401 if token.is_some() => Err(RpcError::AgentAuthRefused { agent: target.agent_id.to_owned(), status: 401 }),
        _ => Ok(()),
    }
}

/// The agent refused the gateway's OAuth2 token.
fn is_token_refused(e: &RpcError) -> bool {
    matches!(e, RpcError::AgentAuthRefused { status: 401, .. })
}

/// The agent refused a new token too: the gateway cannot call it (its client or the agent is
/// misconfigured), which is the agent being unavailable, not the caller's fault.
fn token_refused_again(e: RpcError) -> RpcError {
    match e {
        RpcError::AgentAuthRefused { agent, status } => {
            RpcError::AgentUnavailable(format!("agent {agent} refused the gateway's OAuth2 token (HTTP {status})"))
        }
        other => other,
    }
}

/// The interface URL with an HTTP+JSON route's escaped segments and query appended.
fn rest_url(target: &CallTarget<'_>, rest: &RestRequest) -> Result<reqwest::Url, RpcError> {
    let unusable =
        || RpcError::AgentUnavailable(format!("agent {}: its interface URL is not an http(s) URL", target.agent_id));
    let mut url = reqwest::Url::parse(&target.upstream.url).map_err(|_| unusable())?;
    url.path_segments_mut().map_err(|()| unusable())?.pop_if_empty().extend(&rest.segments);
    if !rest.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&rest.query);
    }
    Ok(url)
}

/// An agent's HTTP+JSON error answer. A 4xx whose body names an A2A error is that error,
/// judged as the JSON-RPC path judges it (task not found is an answer; a refusal of the
/// gateway's request is a failure); a 5xx, or a status without an A2A reason, is a failure.
fn rest_error(target: &CallTarget<'_>, status: reqwest::StatusCode, bytes: &[u8]) -> RpcError {
    let named = match status.is_client_error() {
        true => serde_json::from_slice::<Value>(bytes).ok().and_then(|body| rest_client::error_object(&body)),
        false => None,
    };
    match named {
        Some(error) => upstream_error(target.agent_id, error),
        None => RpcError::AgentUnavailable(format!("agent {} answered HTTP {}", target.agent_id, status.as_u16())),
    }
}

/// A successful HTTP+JSON answer, typed in the 1.0 model.
fn rest_answer(method: UpstreamMethod, version: ProtocolVersion, bytes: &[u8]) -> Result<Answer, v03::WireError> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|e| v03::WireError(format!("response is not JSON: {e}")))?;
    let result = match method {
        UpstreamMethod::SendMessage => rest_client::wrapped_to_v10(version, body)?,
        // A card is a card in either version: served cards are rewritten from both shapes.
        // Nothing of a stored push config is read but that it is one.
        UpstreamMethod::GetExtendedAgentCard | UpstreamMethod::CreatePushConfig => body,
        _ => rest_client::task_to_v10(version, body)?,
    };
    to_answer(method, ProtocolVersion::V10, result)
}

/// An agent's non-2xx HTTP answer is its failure, whatever the body says.
fn check_status(target: &CallTarget<'_>, response: &reqwest::Response) -> Result<(), RpcError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(RpcError::AgentUnavailable(format!("agent {} answered HTTP {}", target.agent_id, status.as_u16())))
}

pub(super) fn invalid(target: &CallTarget<'_>, detail: String) -> RpcError {
    RpcError::InvalidAgentResponse(format!("agent {}: {detail}", target.agent_id))
}

fn describe(e: &reqwest::Error) -> String {
    if let Some(why) = guard_refusal(e) {
        why
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

/// The guard's reason, when the guard refused the request (an address the resolver dropped,
/// a redirect to a refused address, too many redirects): the innermost cause, which names an
/// address and a config key but no credential.
fn guard_refusal(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let why = innermost?;
    let refused = why.contains("may not reach it") || (e.is_redirect() && why.contains("redirects"));
    refused.then_some(why)
}

fn transport_error(target: &CallTarget<'_>, e: reqwest::Error) -> RpcError {
    let id = target.agent_id;
    if let Some(why) = guard_refusal(&e) {
        RpcError::AgentUnavailable(format!("agent {id}: {why}"))
    } else if e.is_timeout() {
        RpcError::AgentUnavailable(format!("agent {id} did not answer within {} ms", target.timeout.as_millis()))
    } else if e.is_connect() {
        RpcError::AgentUnavailable(format!("agent {id} is unreachable"))
    } else {
        RpcError::AgentUnavailable(format!("agent {id}: transport error"))
    }
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(1024).min(max as u64) as usize);
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON-RPC response: its result, or the agent's error as an `RpcError`.
pub(super) fn parse_reply(target: &CallTarget<'_>, bytes: &[u8], id: u64) -> Result<Value, RpcError> {
    let mut reply: serde_json::Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(invalid(target, "response is not a JSON-RPC object".into())),
        Err(e) => return Err(invalid(target, format!("response is not JSON: {e}"))),
    };
    if reply.get("id").and_then(Value::as_u64) != Some(id) && !reply.contains_key("error") {
        return Err(invalid(target, "response id does not match the request".into()));
    }
    if let Some(error) = reply.remove("error") {
        return Err(upstream_error(target.agent_id, error));
    }
    reply.remove("result").ok_or_else(|| invalid(target, "response has neither result nor error".into()))
}

/// An agent's JSON-RPC error. A2A and application codes pass through; codes that describe the
/// gateway's own request to the agent become a clear -32603.
pub(super) fn upstream_error(agent_id: &str, error: Value) -> RpcError {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("agent error").to_owned();
    match code {
        None => RpcError::InvalidAgentResponse(format!("agent {agent_id}: error without a code")),
        Some(c @ (-32700 | -32600 | -32601 | -32009)) => {
            RpcError::AgentUnavailable(format!("agent {agent_id} refused the gateway's request ({c}): {message}"))
        }
        Some(code) => RpcError::Upstream { code, message, data: error.get("data").cloned() },
    }
}

/// Checks a result against what the method returns, in the 1.0 model: SendMessage a task or
/// a message, GetTask and CancelTask a task, CreatePushConfig a config object,
/// GetExtendedAgentCard a card (either version's: it is rewritten for the client like any card).
fn to_answer(method: UpstreamMethod, version: ProtocolVersion, result: Value) -> Result<Answer, v03::WireError> {
    if method == UpstreamMethod::GetExtendedAgentCard {
        return match result {
            card @ Value::Object(_) => Ok(Answer::Card(card)),
            _ => Err(v03::WireError("the extended card is not a JSON object".into())),
        };
    }
    if method == UpstreamMethod::CreatePushConfig {
        return match result {
            config @ Value::Object(_) => Ok(Answer::Config(config)),
            _ => Err(v03::WireError("the push notification config is not a JSON object".into())),
        };
    }
    let result = match (method, version) {
        (_, ProtocolVersion::V10) => result,
        (UpstreamMethod::SendMessage, ProtocolVersion::V03) => v03::result_to_v10(result)?,
        (_, ProtocolVersion::V03) => v03::task_to_v10(result)?,
    };
    if method != UpstreamMethod::SendMessage {
        return task_from_wire(result).map(Answer::Task);
    }
    let Value::Object(mut wrapped) = result else {
        return Err(v03::WireError("result must be an object".into()));
    };
    match (wrapped.remove("task"), wrapped.remove("message")) {
        (Some(task), None) => task_from_wire(task).map(Answer::Task),
        (None, Some(message @ Value::Object(_))) => Ok(Answer::Message(message)),
        _ => Err(v03::WireError("result is neither a task nor a message".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::Outcome;
    use reqwest::StatusCode;

    fn upstream(binding: Option<Binding>) -> Upstream {
        Upstream {
            url: "http://agent:1/rest/".into(),
            version: ProtocolVersion::V10,
            binding,
            streaming: true,
            push: false,
        }
    }

    fn target(upstream: &Upstream) -> CallTarget<'_> {
        CallTarget {
            agent_id: "a",
            upstream,
            bearer: None,
            timeout: Duration::from_secs(1),
            extensions: None,
            trace: None,
            limits: super::super::Limits::of(&AgentsConfig::default(), &Default::default()),
            authorization: None,
            forwarded: None,
            oauth2: None,
        }
    }

    fn status_body(http: u16, reason: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"error": {"code": http, "status": "X", "message": format!("{reason} here"), "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "a2a-protocol.org", "metadata": {}}
        ]}}))
        .unwrap()
    }

    fn outcome(e: RpcError) -> Outcome {
        Outcome::of::<()>(&Err(e))
    }

    #[test]
    fn rest_errors_are_judged_like_jsonrpc_errors() {
        let up = upstream(Some(Binding::HttpJson));
        let t = target(&up);
        // The agent's own A2A errors are answers, passed on with their code and details.
        let not_found = rest_error(&t, StatusCode::NOT_FOUND, &status_body(404, "TASK_NOT_FOUND"));
        assert!(
            matches!(&not_found, RpcError::Upstream { code: -32001, data: Some(d), .. } if d.is_array()),
            "{not_found:?}"
        );
        assert_eq!(outcome(not_found), Outcome::AgentError);
        let terminal = rest_error(&t, StatusCode::BAD_REQUEST, &status_body(400, "UNSUPPORTED_OPERATION"));
        assert_eq!((terminal.code(), outcome(terminal)), (-32004, Outcome::AgentError));
        // A refusal of the gateway's own request, a 5xx (whatever its body), a 4xx without an
        // A2A reason, an unreadable body: failures.
        for (status, body) in [
            (StatusCode::BAD_REQUEST, status_body(400, "INVALID_REQUEST")),
            (StatusCode::BAD_REQUEST, status_body(400, "VERSION_NOT_SUPPORTED")),
            (StatusCode::INTERNAL_SERVER_ERROR, status_body(500, "INTERNAL_ERROR")),
            (StatusCode::BAD_GATEWAY, b"<html>".to_vec()),
            (StatusCode::NOT_FOUND, br#"{"detail":"Not Found"}"#.to_vec()),
            (StatusCode::UNAUTHORIZED, vec![]),
        ] {
            let e = rest_error(&t, status, &body);
            assert!(matches!(e, RpcError::AgentUnavailable(_)), "{status}: {e:?}");
            assert_eq!(outcome(e), Outcome::Failure);
        }
    }

    #[test]
    fn rest_answers_are_typed_in_the_v10_model() {
        let task = json!({"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_COMPLETED"}});
        let body = serde_json::to_vec(&json!({"task": task})).unwrap();
        let answer = rest_answer(UpstreamMethod::SendMessage, ProtocolVersion::V10, &body).unwrap();
        assert!(matches!(answer, Answer::Task(t) if t.id == "t1"));
        let v03 = json!({"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_CANCELLED"}});
        let answer = rest_answer(UpstreamMethod::CancelTask, ProtocolVersion::V03, &serde_json::to_vec(&v03).unwrap());
        assert!(matches!(answer, Ok(Answer::Task(t)) if t.status.state == crate::a2a::TaskState::Canceled));
        assert!(rest_answer(UpstreamMethod::GetTask, ProtocolVersion::V10, b"not json").is_err());
        assert!(rest_answer(UpstreamMethod::SendMessage, ProtocolVersion::V10, br#"{"other": 1}"#).is_err());
    }

    #[test]
    fn rest_urls_escape_segments_under_the_interface_path() {
        let up = upstream(Some(Binding::HttpJson));
        let t = target(&up);
        let get = rest_client::get_task(ProtocolVersion::V10, &json!({"id": "a b/c", "historyLength": 1})).unwrap();
        assert_eq!(rest_url(&t, &get).unwrap().as_str(), "http://agent:1/rest/tasks/a%20b%2Fc?historyLength=1");
        let bad = Upstream { url: "grpc.a:443".into(), ..up.clone() };
        assert!(matches!(rest_url(&target(&bad), &get), Err(RpcError::AgentUnavailable(_))));
    }

    #[tokio::test]
    async fn a_card_without_a_callable_binding_is_refused_before_any_request() {
        let client = AgentClient::new(&AgentsConfig::default()).unwrap();
        let up = upstream(None);
        let refused = client.call(&target(&up), UpstreamMethod::GetTask, json!({"id": "t"})).await;
        let e = refused.err().expect("refused");
        assert_eq!(e.code(), -32004, "{e}");
        assert_eq!(outcome(e), Outcome::AgentError, "not the agent's failure: the breaker stays closed");
    }
}
