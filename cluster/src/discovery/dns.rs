//! DNS seed discovery (hickory-resolver): the A and AAAA records of a name, each address with
//! the configured gossip port, or, for a name starting with `_`, the SRV records of the name,
//! each target's addresses with the record's port.
//!
//! A headless Kubernetes Service or a Consul/CoreDNS zone lists the nodes; the answer changes
//! as nodes come and go, so every round asks the name server again: the resolver's cache is
//! cleared at the start of a round and its TTLs are capped at [`DNS_CACHE_TTL_MAX`].

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record};
use tracing::debug;

use super::{DiscoveryError, error_chain};

/// Bound on one lookup (one name, A and AAAA together, or SRV), retries included. Name
/// servers answer in milliseconds; two seconds leave room for one lost UDP datagram and the
/// retry, and still end the round well within a gossip interval.
pub const DNS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest time a DNS answer is reused within a round. Every round clears the cache anyway;
/// the cap keeps an SRV round that resolves many targets from outliving a record's change by
/// more than a second. One second is well below any discovery interval.
pub const DNS_CACHE_TTL_MAX: Duration = Duration::from_secs(1);

/// Most SRV records used per round. A cluster of a few dozen nodes has a few dozen records;
/// 256 bounds the target lookups of a runaway zone.
const SRV_RECORDS_MAX: usize = 256;

/// Queries one name (A/AAAA or SRV) through one resolver, reused across rounds.
pub(super) struct DnsDiscoverer {
    resolver: TokioResolver,
    query: String,
    name: Name,
    port: u16,
}

impl DnsDiscoverer {
    /// A resolver asking only `server` (UDP, then TCP), or the system's name servers
    /// (`/etc/resolv.conf`) when `server` is `None`.
    pub(super) fn new(query: &str, port: u16, server: Option<SocketAddr>) -> Result<Self, DiscoveryError> {
        let name = parse_name(query)?;
        let resolver = build_resolver(query, server)?;
        Ok(DnsDiscoverer { resolver, query: query.to_owned(), name, port })
    }

    /// One round: SRV when the name starts with `_`, A and AAAA otherwise.
    pub(super) async fn resolve(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        self.resolver.clear_cache();
        let found = if is_srv(&self.query) {
            self.resolve_srv().await?
        } else {
            let ips = self.lookup_ips(&self.name).await?;
            ips.into_iter().map(|ip| SocketAddr::new(ip, self.port)).collect()
        };
        debug!(query = %self.query, seeds = found.len(), "dns discovery round");
        Ok(found)
    }

    async fn resolve_srv(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let lookup = tokio::time::timeout(DNS_LOOKUP_TIMEOUT, self.resolver.srv_lookup(self.name.clone()))
            .await
            .map_err(|_| self.error(timed_out()))?
            .map_err(|error| self.error(describe(&error, "SRV")))?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        let records = lookup.answers().iter().filter_map(|record| match &record.data {
            RData::SRV(srv) if !srv.target.is_root() => Some(srv),
            _ => None,
        });
        for srv in records.take(SRV_RECORDS_MAX) {
            // The additional section usually carries the targets' addresses; ask only when not.
            let glue = addresses_of(&srv.target, lookup.additionals());
            let ips = if glue.is_empty() { self.lookup_ips(&srv.target).await } else { Ok(glue) };
            match ips {
                Ok(ips) => found.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port))),
                Err(error) => failures.push(error.to_string()),
            }
        }
        for failure in &failures {
            debug!(query = %self.query, failure = %failure, "srv target did not resolve");
        }
        if found.is_empty() {
            let reason = match failures.is_empty() {
                true => "no SRV record names a target".to_owned(),
                false => format!("no SRV target resolved: {}", failures.join("; ")),
            };
            return Err(self.error(reason));
        }
        Ok(found)
    }

    /// The A and AAAA records of `name`.
    async fn lookup_ips(&self, name: &Name) -> Result<Vec<IpAddr>, DiscoveryError> {
        let name_error = |reason: String| DiscoveryError::Dns { name: name.to_string(), reason };
        let lookup = tokio::time::timeout(DNS_LOOKUP_TIMEOUT, self.resolver.lookup_ip(name.clone()))
            .await
            .map_err(|_| name_error(timed_out()))?
            .map_err(|error| name_error(describe(&error, "A or AAAA")))?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(name_error("no A or AAAA records".to_owned()));
        }
        Ok(ips)
    }

    fn error(&self, reason: String) -> DiscoveryError {
        DiscoveryError::Dns { name: self.query.clone(), reason }
    }
}

/// Validates the settings without network I/O.
pub(super) fn check(query: &str, port: u16, server: Option<SocketAddr>) -> Result<(), DiscoveryError> {
    parse_name(query)?;
    let invalid = |reason: &str| DiscoveryError::Dns { name: query.to_owned(), reason: reason.to_owned() };
    if !is_srv(query) && port == 0 {
        return Err(invalid("the gossip port must be from 1 to 65535 for an A/AAAA query"));
    }
    if let Some(server) = server
        && (server.port() == 0 || server.ip().is_unspecified())
    {
        return Err(invalid(&format!("name server {server} is not a usable address")));
    }
    Ok(())
}

/// SRV names start with the service label (`_gossip._udp.example.com`).
fn is_srv(query: &str) -> bool {
    query.starts_with('_')
}

fn parse_name(query: &str) -> Result<Name, DiscoveryError> {
    let invalid = |reason: String| DiscoveryError::Dns { name: query.to_owned(), reason };
    if query.trim().is_empty() {
        return Err(invalid("the dns query is empty".to_owned()));
    }
    if query.chars().any(char::is_whitespace) {
        return Err(invalid("the dns query contains whitespace".to_owned()));
    }
    Name::from_str(query).map_err(|error| invalid(format!("not a domain name: {error}")))
}

fn build_resolver(query: &str, server: Option<SocketAddr>) -> Result<TokioResolver, DiscoveryError> {
    let failed = |error: NetError| DiscoveryError::Dns {
        name: query.to_owned(),
        reason: format!("building the resolver: {}", error_chain(&error)),
    };
    let mut builder = match server {
        Some(server) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()].map(|mut connection| {
                connection.port = server.port();
                connection
            });
            let name_server = NameServerConfig::new(server.ip(), true, connections.to_vec());
            let config = ResolverConfig::from_name_servers(vec![name_server]);
            let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            // Only the configured server answers; /etc/hosts must not shadow its records.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
        None => TokioResolver::builder_tokio().map_err(failed)?,
    };
    let options = builder.options_mut();
    // Half the lookup bound per query, so a lost datagram leaves time for the retry.
    options.timeout = DNS_LOOKUP_TIMEOUT / 2;
    options.attempts = 2;
    options.try_tcp_on_error = true;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.positive_max_ttl = Some(DNS_CACHE_TTL_MAX);
    options.negative_max_ttl = Some(DNS_CACHE_TTL_MAX);
    builder.build().map_err(failed)
}

/// Addresses for `target` among `records` (an answer's additional section).
fn addresses_of(target: &Name, records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|record| record.name == *target)
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn timed_out() -> String {
    format!("no answer within {DNS_LOOKUP_TIMEOUT:?}")
}

/// A resolver error as a reason an operator can act on.
fn describe(error: &NetError, kind: &str) -> String {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => match no_records.response_code {
            ResponseCode::NXDomain => "no such domain (NXDOMAIN)".to_owned(),
            _ => format!("no {kind} records"),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => format!("the name server answered {code}"),
        NetError::Timeout => timed_out(),
        other => error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_malformed_queries_are_rejected() {
        for (query, reason) in [("", "empty"), ("  ", "empty"), ("a b.test", "whitespace")] {
            let error = check(query, 7946, None).unwrap_err();
            assert!(error.to_string().contains(reason), "{query:?}: {error}");
        }
    }

    #[test]
    fn a_queries_need_a_port_srv_queries_do_not() {
        assert!(check("superx.test", 0, None).unwrap_err().to_string().contains("gossip port"));
        assert_eq!(check("_gossip._udp.superx.test", 0, None), Ok(()));
    }

    #[test]
    fn the_name_server_must_be_usable() {
        for server in ["0.0.0.0:53", "127.0.0.1:0"] {
            let error = check("superx.test", 7946, Some(server.parse().unwrap())).unwrap_err();
            assert!(error.to_string().contains("not a usable address"), "{error}");
        }
        assert_eq!(check("superx.test", 7946, Some("127.0.0.1:5353".parse().unwrap())), Ok(()));
    }

    #[test]
    fn glue_addresses_match_the_target_only() {
        let target = Name::from_str("node1.superx.test.").unwrap();
        let other = Name::from_str("node2.superx.test.").unwrap();
        let records = vec![
            Record::from_rdata(target.clone(), 0, RData::A("10.0.0.1".parse().unwrap())),
            Record::from_rdata(other, 0, RData::A("10.0.0.2".parse().unwrap())),
            Record::from_rdata(target.clone(), 0, RData::AAAA("fd00::1".parse().unwrap())),
        ];
        let found = addresses_of(&target, &records);
        assert_eq!(found, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
    }
}
