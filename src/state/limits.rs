//! Configured rate limits in the replicated state: an agent's (from its spec: the agents file
//! or `agents/upsert`) and an API key's (from `keys/create`), so every node limits alike.
//! What a node admits is decided by `crate::limits` from these rates; only the rates are here.

use super::Refusal;

/// A configured rate. Stored type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RateLimit {
    /// Requests per second, in thousandths (0.5 per second is 500), so the stored type is
    /// exact and `Eq`.
    pub milli_per_second: u64,
    /// Requests at once above the rate; 0: one second's worth.
    pub burst: u64,
}

/// The highest rate one limit may name (requests per second).
pub const RATE_MAX: f64 = 1_000_000.0;

impl RateLimit {
    /// From an operator's `requestsPerSecond` and `burst`: a positive rate up to
    /// [`RATE_MAX`], at least 0.001 per second.
    pub fn new(per_second: f64, burst: u64) -> Result<RateLimit, String> {
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= RATE_MAX) {
            return Err(format!("requestsPerSecond must be above 0 and at most {RATE_MAX}"));
        }
        let milli_per_second = (per_second * 1000.0).round() as u64;
        if milli_per_second == 0 {
            return Err("requestsPerSecond must be at least 0.001".into());
        }
        Ok(RateLimit { milli_per_second, burst })
    }

    pub fn per_second(&self) -> f64 {
        self.milli_per_second as f64 / 1000.0
    }
}

/// The rate limit commands. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum LimitCommand {
    /// Sets (or clears, with `None`) an agent's rate limit. Refused for an unknown agent;
    /// deleting the agent drops its limit.
    AgentRate { id: String, rate: Option<RateLimit> },
}

impl super::Tables {
    /// Applies a rate limit command.
    pub fn apply_limits(&mut self, command: &LimitCommand) -> Result<(), Refusal> {
        self.applied_commands += 1;
        match command {
            LimitCommand::AgentRate { id, rate } => self.set_agent_rate(id, *rate),
        }
    }
}

/// The wire shape operators write: `{requestsPerSecond, burst?}`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    pub requests_per_second: f64,
    #[serde(default)]
    pub burst: u64,
}

impl RateLimitSpec {
    pub fn to_stored(self) -> Result<RateLimit, String> {
        RateLimit::new(self.requests_per_second, self.burst)
    }
}

/// A stored rate as the control plane shows it.
pub fn view(rate: &RateLimit) -> serde_json::Value {
    serde_json::json!({"requestsPerSecond": rate.per_second(), "burst": rate.burst})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_and_exact() {
        assert_eq!(RateLimit::new(0.5, 0).unwrap(), RateLimit { milli_per_second: 500, burst: 0 });
        assert_eq!(RateLimit::new(100.0, 20).unwrap().per_second(), 100.0);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.0001, 2e6] {
            assert!(RateLimit::new(bad, 0).is_err(), "{bad}");
        }
    }
}
