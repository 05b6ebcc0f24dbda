//! Tasks seen from outside the state machine: subscriptions to a task's committed events
//! ([`subscriptions`]), fed from the applied log on every node, and the tasks this node
//! follows upstream by itself ([`followed`]).

pub mod feed;
pub mod followed;
pub mod history;
pub mod subscriptions;

pub use feed::{Feed, FeedFull};
pub use followed::Followed;
pub use history::HistoryLimits;

pub use subscriptions::{SubscribeError, Subscriptions};
