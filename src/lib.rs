//! superx: a clustered gateway for the Agent2Agent (A2A) protocol.
//!
//! Layout, in the order a request meets it:
//! - [`http`]: the axum router, the JSON-RPC edge, card endpoints, health.
//! - [`admission`]: how many requests and streams a node takes at once; the drain.
//! - [`auth`]: who is calling (API keys, JWTs, the admin token) and what they may call.
//! - [`jsonrpc`]: the envelope and [`jsonrpc::RpcError`], the one place error codes are chosen.
//! - [`rpc`]: the closed `Method` enum and one file per method.
//! - [`a2a`]: A2A wire JSON (1.0 and 0.3), translation, card rewriting.
//! - [`agents`]: agent specs, the upstream client, per-agent counters.
//! - [`gateway`]: the shared state handlers work with.
//! - [`tasks`]: subscriptions to tasks' committed events.
//! - [`membership`]: cluster formation: node identity, bootstrap, the autopilot, leave.
//! - [`state`]: `Command`, the deterministic `apply`, the in-memory tables, the replica.
//! - [`archive`]: terminal tasks into Postgres (the archiver on the leader) and back.
//! - [`push`]: webhook delivery of committed task updates (the deliverer on the leader).
//! - [`guard`]: the SSRF guard of outbound URLs (webhooks, agents, cards).
//! - [`limits`]: rate limits per credential and per agent, shared cluster-wide through gossip.
//! - [`codec`]: the one bincode codec for stored bytes.
//! - [`config`]: the config tree, loaded once at startup.
//! - [`telemetry`]: logs, `/metrics`, request ids and trace context.
//! - [`probe`]: `superx probe`, the health check of the shell-less container image.
#![forbid(unsafe_code)]

pub mod a2a;
pub mod admission;
pub mod agents;
pub mod archive;
pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod guard;
pub mod http;
pub mod jsonrpc;
pub mod limits;
pub mod membership;
pub mod probe;
pub mod push;
pub mod rpc;
pub mod sse;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod tls;

/// This binary's version, gossiped to the other nodes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
