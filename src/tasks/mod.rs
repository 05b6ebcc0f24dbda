//! Tasks seen from outside the state machine: subscriptions to a task's committed events
//! ([`subscriptions`]), fed from the applied log on every node.

pub mod subscriptions;

pub use subscriptions::{SubscribeError, Subscriptions};
