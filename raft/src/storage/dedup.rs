//! The idempotency map: request id → the response its first application gave.
//!
//! Part of the replicated state: it changes only inside `apply`, in log order, and travels in
//! snapshots, so every node answers a retried request id the same way. Eviction is FIFO by
//! count (`dedup_entries_max`), deterministic because it depends only on the applied sequence.

use std::collections::{HashMap, VecDeque};

use crate::codec::Blob;

pub(crate) struct Dedup {
    entries_max: usize,
    responses: HashMap<u128, Blob>,
    /// Request ids in the order they were first applied; the front is evicted first.
    order: VecDeque<u128>,
}

impl Dedup {
    pub(crate) fn new(entries_max: usize) -> Self {
        Dedup { entries_max, responses: HashMap::new(), order: VecDeque::new() }
    }

    /// Rebuilds the map from a snapshot's entries (oldest first).
    pub(crate) fn from_entries(entries_max: usize, entries: Vec<(u128, Blob)>) -> Self {
        let mut dedup = Dedup::new(entries_max);
        for (id, response) in entries {
            dedup.insert(id, response);
        }
        dedup
    }

    pub(crate) fn entries_max(&self) -> usize {
        self.entries_max
    }

    pub(crate) fn get(&self, id: u128) -> Option<&Blob> {
        self.responses.get(&id)
    }

    /// Remembers the first response for `id`, evicting the oldest ids beyond the limit.
    pub(crate) fn insert(&mut self, id: u128, response: Blob) {
        if self.responses.contains_key(&id) {
            return;
        }
        self.responses.insert(id, response);
        self.order.push_back(id);
        while self.order.len() > self.entries_max {
            if let Some(oldest) = self.order.pop_front() {
                self.responses.remove(&oldest);
            }
        }
        debug_assert_eq!(self.order.len(), self.responses.len(), "order and map must agree");
    }

    /// The entries, oldest first, for a snapshot.
    pub(crate) fn entries(&self) -> Vec<(u128, Blob)> {
        self.order.iter().filter_map(|id| self.responses.get(id).map(|r| (*id, r.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_response_and_evicts_oldest() {
        let mut dedup = Dedup::new(2);
        dedup.insert(1, Blob(vec![1]));
        dedup.insert(1, Blob(vec![9]));
        assert_eq!(dedup.get(1), Some(&Blob(vec![1])));
        dedup.insert(2, Blob(vec![2]));
        dedup.insert(3, Blob(vec![3]));
        assert_eq!(dedup.get(1), None);
        assert_eq!(dedup.entries(), vec![(2, Blob(vec![2])), (3, Blob(vec![3]))]);
        let rebuilt = Dedup::from_entries(2, dedup.entries());
        assert_eq!(rebuilt.entries(), dedup.entries());
    }
}
