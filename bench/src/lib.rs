//! Benchmark tools for superx: shared helpers for the `superx-echo-agent`,
//! `superx-load` and `superx-fanout` binaries (see `src/bin`).
#![forbid(unsafe_code)]

pub mod http;
pub mod ids;
pub mod sse;
