//! This node's negative cache of agent card fetches: a card request for an agent without a
//! card fetches at most once per `cards.miss_ttl_ms`, and concurrent requests share one
//! fetch, so a client polling the card of a down (or card-less) agent costs no outbound fetch
//! per request. Bounded by `cards.misses_max` entries (oldest failure evicted first). Node
//! local on purpose: a miss is not worth a raft write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

enum Miss {
    /// A fetch is running; other requests do not start one.
    InFlight,
    /// The last fetch failed at `at` with `error`.
    Failed { at: Instant, error: String },
}

pub struct CardMisses {
    entries: Mutex<HashMap<String, Miss>>,
    ttl: Duration,
    max: usize,
}

/// The right to fetch one agent's card. Dropped without an outcome (the request went
/// away), it forgets the fetch so the next request may try.
pub struct FetchTicket<'a> {
    misses: &'a CardMisses,
    id: String,
    done: bool,
}

impl CardMisses {
    pub fn new(ttl: Duration, max: usize) -> Self {
        CardMisses { entries: Mutex::new(HashMap::new()), ttl, max: max.max(1) }
    }

    /// A ticket to fetch `id`'s card, or the reason not to: a fetch running now, or one that
    /// failed within the TTL (its error).
    pub fn begin(&self, id: &str) -> Result<FetchTicket<'_>, String> {
        let mut entries = self.entries.lock().expect("card misses lock");
        match entries.get(id) {
            Some(Miss::InFlight) => return Err("a card fetch for this agent is in progress".into()),
            Some(Miss::Failed { at, error }) if at.elapsed() < self.ttl => return Err(error.clone()),
            _ => {}
        }
        if !entries.contains_key(id) && entries.len() >= self.max {
            evict_oldest(&mut entries);
        }
        entries.insert(id.to_owned(), Miss::InFlight);
        Ok(FetchTicket { misses: self, id: id.to_owned(), done: false })
    }

    /// Forgets `id` (deleted, or its card was fetched by `agents/refreshCard`).
    pub fn forget(&self, id: &str) {
        self.entries.lock().expect("card misses lock").remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// Drops the oldest failure (a running fetch is never evicted: its ticket would re-insert).
fn evict_oldest(entries: &mut HashMap<String, Miss>) {
    let oldest = entries
        .iter()
        .filter_map(|(id, m)| match m {
            Miss::Failed { at, .. } => Some((*at, id.clone())),
            Miss::InFlight => None,
        })
        .min();
    if let Some((_, id)) = oldest {
        entries.remove(&id);
    }
}

impl FetchTicket<'_> {
    /// The fetch failed: requests within the TTL get `error` without fetching.
    pub fn failed(mut self, error: &str) {
        self.done = true;
        let miss = Miss::Failed { at: Instant::now(), error: error.to_owned() };
        self.misses.entries.lock().expect("card misses lock").insert(self.id.clone(), miss);
    }

    /// The fetch succeeded: nothing to remember.
    pub fn succeeded(mut self) {
        self.done = true;
        self.misses.forget(&self.id);
    }
}

impl Drop for FetchTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.misses.forget(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_fetch_per_ttl_and_none_while_one_runs() {
        let misses = CardMisses::new(Duration::from_secs(30), 8);
        let ticket = misses.begin("a").unwrap();
        assert!(misses.begin("a").is_err(), "a running fetch is shared");
        ticket.failed("down");
        assert_eq!(misses.begin("a").err().as_deref(), Some("down"));
        tokio::time::advance(Duration::from_secs(31)).await;
        let ticket = misses.begin("a").expect("the TTL is over");
        ticket.succeeded();
        assert_eq!(misses.len(), 0);
        drop(misses.begin("b").unwrap());
        assert!(misses.begin("b").is_ok(), "an abandoned fetch is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_by_evicting_the_oldest_failure() {
        let misses = CardMisses::new(Duration::from_secs(30), 2);
        misses.begin("a").unwrap().failed("x");
        tokio::time::advance(Duration::from_millis(1)).await;
        misses.begin("b").unwrap().failed("x");
        misses.begin("c").unwrap().failed("x");
        assert_eq!(misses.len(), 2);
        assert!(misses.begin("b").is_err() && misses.begin("c").is_err(), "the newest are remembered");
        assert!(misses.begin("a").is_ok(), "the oldest was evicted");
    }
}
