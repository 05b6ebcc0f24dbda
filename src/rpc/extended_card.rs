//! `GetExtendedAgentCard` (1.0) / `agent/getAuthenticatedExtendedCard` (0.3): the agent's
//! extended card, passed through.
//!
//! Offered exactly when the agent's card declares it (1.0 `capabilities.extendedAgentCard`,
//! 0.3 `supportsAuthenticatedExtendedCard`); otherwise -32004, as A2A §3.3.4 says (an agent
//! that declares it but has none answers -32007 itself, passed on). The client's
//! `Authorization` goes to the agent for this call only (the card is about the caller), in
//! place of the agent's configured bearer; without one the bearer is sent, as on every other
//! call. The answer is served like any card: filled, rewritten to the gateway, strict 1.0
//! for a 1.0 client. A 401/403 from the agent is the caller's problem, not the agent's
//! failure: -32014, and the breaker does not count it.

use serde::Deserialize;
use serde_json::json;

use super::{Call, Reply, RpcError, resolve_agent};
use crate::a2a::ProtocolVersion;
use crate::a2a::card::{CardOptions, offers_extended_card, served_agent_card};
use crate::agents::{Answer, UpstreamMethod};
use crate::gateway::Gateway;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The agent, on `/rpc`.
    #[serde(default)]
    pub(super) agent_id: Option<String>,
}

pub async fn run(gw: &Gateway, call: &Call, p: Params) -> Result<Reply, RpcError> {
    let target = resolve_agent(gw, call, p.agent_id.as_deref()).await?;
    let id = target.agent_id.as_str();
    let offered =
        gw.replica.read(|t| t.agent(id).and_then(|e| e.card.as_ref().map(|c| offers_extended_card(&c.card.0))));
    if offered != Some(true) {
        return Err(RpcError::UnsupportedOperation(format!("agent {id} does not offer an extended agent card")));
    }
    let mut agent_target = target.call_target(call);
    agent_target.authorization = call.authorization.as_ref();
    let reply = gw.call_agent(&agent_target, UpstreamMethod::GetExtendedAgentCard, json!({})).await?;
    let Answer::Card(card) = reply.answer else {
        return Err(RpcError::InvalidAgentResponse(format!("agent {id} answered without a card")));
    };
    let strict_v10 = call.version == ProtocolVersion::V10 || gw.config.cards.strict_v10;
    let agent_url = format!("{}/agents/{id}", call.base_url);
    let result = served_agent_card(&card, id, &agent_url, CardOptions { strict_v10, secured: gw.auth.required() });
    Ok(Reply { result, extensions: reply.extensions })
}
