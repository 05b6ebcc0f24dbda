//! Benchmark tools for superx: shared helpers for the `superx-echo-agent` and
//! `superx-load` binaries (see `src/bin`).
#![forbid(unsafe_code)]

pub mod ids;
pub mod sse;
