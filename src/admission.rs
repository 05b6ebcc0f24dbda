//! Admission control: how much work this node takes on at once, and its drain on shutdown.
//!
//! Every API request takes a request permit before its body is read, and every client stream
//! a stream permit for as long as it is open (`server.requests_in_flight_max`,
//! `server.streams_in_flight_max`). Past either limit the request is refused at once with the
//! retryable overloaded error, so an overloaded node keeps serving what it admitted at full
//! speed and its memory stays bounded, instead of queueing every request until all of them
//! time out. Writes have their own cap further in (the raft proposal queue).
//!
//! Draining (SIGTERM): new requests are refused with the retryable unavailable error, open
//! streams are told to end, and in-flight requests finish.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::ServerConfig;
use crate::jsonrpc::RpcError;

pub struct Admission {
    requests: Arc<Semaphore>,
    requests_max: usize,
    streams: Arc<Semaphore>,
    streams_max: usize,
    draining: watch::Sender<bool>,
}

/// Held while a request is served (or a stream is open); the slot frees on drop.
pub type Permit = OwnedSemaphorePermit;

/// Why a request got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `server.requests_in_flight_max` requests are in flight.
    Full,
    /// The node is shutting down.
    Draining,
}

fn draining() -> RpcError {
    RpcError::Unavailable("this node is shutting down; retry (another node serves)".into())
}

impl Admission {
    pub fn new(c: &ServerConfig) -> Admission {
        Admission {
            requests: Arc::new(Semaphore::new(c.requests_in_flight_max)),
            requests_max: c.requests_in_flight_max,
            streams: Arc::new(Semaphore::new(c.streams_in_flight_max)),
            streams_max: c.streams_in_flight_max,
            draining: watch::channel(false).0,
        }
    }

    /// A slot for one request, or the reason there is none.
    pub fn request(&self) -> Result<Permit, RpcError> {
        self.try_request().map_err(|r| self.refusal(r))
    }

    /// A slot for one request, or which refusal: the caller of the hot path answers a full
    /// node with bytes it rendered once ([`Admission::refusal`] of [`Refused::Full`] never
    /// changes for the life of the node).
    pub fn try_request(&self) -> Result<Permit, Refused> {
        if self.is_draining() {
            return Err(Refused::Draining);
        }
        self.requests.clone().try_acquire_owned().map_err(|_| Refused::Full)
    }

    /// The error a refused request is answered with.
    pub fn refusal(&self, refused: Refused) -> RpcError {
        match refused {
            Refused::Draining => draining(),
            Refused::Full => RpcError::Overloaded(format!(
                "this node is serving {} requests, its limit (server.requests_in_flight_max); retry later",
                self.requests_max
            )),
        }
    }

    /// A slot for one client stream, or the reason there is none.
    pub fn stream(&self) -> Result<Permit, RpcError> {
        self.refuse_if_draining()?;
        self.streams.clone().try_acquire_owned().map_err(|_| {
            RpcError::Overloaded(format!(
                "this node has {} streams open, its limit (server.streams_in_flight_max); retry later",
                self.streams_max
            ))
        })
    }

    fn refuse_if_draining(&self) -> Result<(), RpcError> {
        match self.is_draining() {
            true => Err(draining()),
            false => Ok(()),
        }
    }

    /// Requests and streams in flight now.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.requests_max - self.requests.available_permits(), self.streams_max - self.streams.available_permits())
    }

    /// Starts the drain: new requests are refused and open streams end.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Completes once the drain started (at once if it has).
    pub async fn drained(&self) {
        let mut rx = self.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// For streams to end when the drain starts.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(requests: usize, streams: usize) -> Admission {
        Admission::new(&ServerConfig {
            requests_in_flight_max: requests,
            streams_in_flight_max: streams,
            ..ServerConfig::default()
        })
    }

    #[test]
    fn past_the_limit_requests_are_refused_at_once_until_a_slot_frees() {
        let a = admission(2, 1);
        let (r1, r2) = (a.request().unwrap(), a.request().unwrap());
        assert!(matches!(a.request(), Err(RpcError::Overloaded(m)) if m.contains("requests_in_flight_max")));
        let s1 = a.stream().unwrap();
        assert!(matches!(a.stream(), Err(RpcError::Overloaded(m)) if m.contains("streams_in_flight_max")));
        assert_eq!(a.in_flight(), (2, 1));
        drop(r1);
        let _r3 = a.request().expect("a slot freed");
        drop((r2, s1));
        assert_eq!(a.in_flight(), (1, 0));
    }

    #[tokio::test]
    async fn a_draining_node_refuses_new_work_as_unavailable() {
        let a = admission(4, 4);
        let held = a.request().unwrap();
        let mut streams = a.watch();
        a.drain();
        a.drained().await;
        assert!(streams.has_changed().unwrap() && *streams.borrow_and_update());
        assert!(matches!(a.request(), Err(RpcError::Unavailable(_))));
        assert!(matches!(a.stream(), Err(RpcError::Unavailable(_))));
        assert_eq!(a.in_flight().0, 1, "what was admitted keeps its slot");
        drop(held);
    }
}
