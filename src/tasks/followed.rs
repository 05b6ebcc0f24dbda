//! The tasks this node follows upstream by itself (no client stream reads them): a bounded
//! set, so a task has at most one follower per node and the followers have a limit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct Followed {
    tasks: Mutex<HashSet<String>>,
    max: usize,
}

/// A task's place in the set; leaving it (drop) lets the task be followed again.
pub struct Following {
    set: Arc<Followed>,
    task_id: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.set.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.task_id);
    }
}

impl Followed {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Followed { tasks: Mutex::new(HashSet::new()), max })
    }

    /// Takes the task's place, unless it is followed here already or the set is full.
    pub fn start(self: &Arc<Self>, task_id: &str) -> Option<Following> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.len() >= self.max || !tasks.insert(task_id.to_owned()) {
            return None;
        }
        Some(Following { set: self.clone(), task_id: task_id.to_owned() })
    }

    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_follower_per_task_within_the_limit() {
        let set = Followed::new(2);
        let a = set.start("a").unwrap();
        assert!(set.start("a").is_none(), "already followed");
        let _b = set.start("b").unwrap();
        assert!(set.start("c").is_none(), "full");
        drop(a);
        assert!(set.start("c").is_some());
        assert_eq!(set.len(), 1, "c's place went with its guard");
    }
}
