//! superx-raft: the replicated state machine under superx.
//!
//! It will own everything consensus: openraft, the durable log store, snapshots, the internal
//! raft RPC listener, write forwarding and read modes, generic over the application's state
//! machine (apply, snapshot, restore). It never sees A2A JSON, tasks or sqlx.
//!
//! Today a superx node is a cluster of one and applies commands locally (see
//! `superx::state::Replica`); the replicated-state issue moves consensus in here.
#![forbid(unsafe_code)]
