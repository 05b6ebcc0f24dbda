//! Integration tests that run the real `superx` binary as a process on loopback.
//!
//! One test binary with modules (fast to link); each test starts its own node on a free port
//! and waits on conditions with deadlines, never on guessed sleeps.

mod agent_auth;
mod archive;
mod auth;
mod bad_config;
mod closed;
mod cluster;
mod config;
mod dns;
mod drain;
mod fake_agent;
mod formation;
mod gossip_cluster;
mod inbound;
mod kubernetes;
mod limits;
mod owner;
mod partition;
mod postgres;
mod protect;
mod push;
mod resume;
mod streaming;
mod support;
mod telemetry;
mod tls;
