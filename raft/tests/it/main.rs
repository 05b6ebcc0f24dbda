//! superx-raft's integration tests, one binary: a single node, crash recovery with a killed
//! child process, and in-process clusters on loopback.

mod cluster;
mod crash;
mod single_node;
mod support;
mod throughput;
