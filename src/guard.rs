//! The SSRF guard: what an outbound URL a client or an operator gave may reach, checked on
//! the address actually connected to.
//!
//! Two policies ([`Policy`]). Webhooks (a client's URL) may not reach loopback, private,
//! link-local (cloud metadata included) or other non-public addresses unless
//! `push.allow_cidrs` lets them. Agents and their cards (an operator's URL, or the interface
//! URL an agent's card names) may reach loopback and private addresses, because agents on a
//! laptop, a LAN or in a Kubernetes cluster are the normal case for a gateway, but not
//! link-local addresses (169.254.0.0/16, fe80::/10), the cloud metadata endpoints that sit in
//! private ranges (fd00:ec2::254, 100.100.100.200), unspecified, multicast or reserved ones,
//! unless `agents.allow_cidrs` lets them.
//!
//! The client resolves names through [`GuardedResolver`], which drops refused addresses (so a
//! name that resolves to an allowed address at config time and a refused one at call time is
//! refused then: no DNS-rebinding gap), and an IP literal in a URL is checked before the
//! request (the client connects to it without resolving). Proxies are not used; webhooks
//! follow no redirects, agent calls at most `agents.redirects_max`, each hop checked again
//! ([`Guard::redirect_policy`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// How long setting a webhook waits for its name to resolve; a slower name is accepted and
/// checked at delivery.
const SCREEN_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not a CIDR like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

/// Who a guard is for: what it refuses and how its refusals read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Client webhooks: every non-public address is refused (`push.allow_cidrs`).
    Webhooks,
    /// Agents and their cards: loopback and private addresses pass; link-local, metadata,
    /// unspecified, multicast and reserved ones are refused (`agents.allow_cidrs`).
    Agents,
}

impl Policy {
    /// What the refusal messages call the URL's owner.
    fn noun(self) -> &'static str {
        match self {
            Policy::Webhooks => "webhook",
            Policy::Agents => "agent",
        }
    }

    fn knob(self) -> &'static str {
        match self {
            Policy::Webhooks => "push.allow_cidrs",
            Policy::Agents => "agents.allow_cidrs",
        }
    }
}

/// A class of non-public address, and whether agents may reach it by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Class {
    name: &'static str,
    /// Loopback, private, unique local and shared (CGNAT) ranges: where agents live.
    internal: bool,
}

const fn internal(name: &'static str) -> Option<Class> {
    Some(Class { name, internal: true })
}

const fn forbidden(name: &'static str) -> Option<Class> {
    Some(Class { name, internal: false })
}

/// Cloud metadata endpoints inside ranges agents may otherwise reach: AWS's IPv6 one (in the
/// unique local range) and Alibaba's (in the shared CGNAT range). The IPv4 ones of AWS, GCP,
/// Azure and Oracle (169.254.169.254) are link-local, refused as a class.
const METADATA: [IpAddr; 2] =
    [IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)), IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200))];

/// The class of non-public address `ip` belongs to, if it does.
fn class_of(ip: IpAddr) -> Option<Class> {
    let ip = match ip {
        // An IPv4 address inside IPv6 (mapped, or NAT64) is judged as that address.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| nat64(v6)).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if METADATA.contains(&ip) {
        return forbidden("cloud metadata");
    }
    match ip {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => class_v6(v6),
    }
}

fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
}

fn class_v4(ip: Ipv4Addr) -> Option<Class> {
    let o = ip.octets();
    match o {
        _ if ip.is_loopback() => internal("loopback"),
        _ if ip.is_unspecified() || o[0] == 0 => forbidden("unspecified"),
        _ if ip.is_private() => internal("private"),
        // 169.254.169.254 and other cloud metadata endpoints live here.
        _ if ip.is_link_local() => forbidden("link-local (cloud metadata)"),
        // Carrier-grade NAT, where Alibaba's metadata endpoint (100.100.100.200) lives; some
        // Kubernetes networks use it for pods.
        [100, b, ..] if (64..128).contains(&b) => internal("shared (carrier-grade NAT)"),
        [192, 0, 0, _] => forbidden("IETF protocol assignment"),
        [198, 18 | 19, ..] => forbidden("benchmarking"),
        _ if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 => forbidden("multicast or reserved"),
        _ => None,
    }
}

fn class_v6(ip: Ipv6Addr) -> Option<Class> {
    let first = ip.segments()[0];
    match first {
        _ if ip.is_loopback() => internal("loopback"),
        _ if ip.is_unspecified() => forbidden("unspecified"),
        // Unique local addresses (AWS's IPv6 metadata endpoint is refused above).
        _ if first & 0xfe00 == 0xfc00 => internal("private (unique local)"),
        _ if first & 0xffc0 == 0xfe80 => forbidden("link-local"),
        _ if first & 0xff00 == 0xff00 => forbidden("multicast"),
        _ => None,
    }
}

/// Which addresses a client may reach.
#[derive(Clone, Debug)]
pub struct Guard {
    policy: Policy,
    allow: Vec<Cidr>,
}

impl Default for Guard {
    /// The webhook guard with nothing allowed.
    fn default() -> Guard {
        Guard { policy: Policy::Webhooks, allow: vec![] }
    }
}

impl Guard {
    /// From an allow list (validated at config load; an invalid entry is skipped).
    pub fn new(policy: Policy, allow_cidrs: &[String]) -> Guard {
        Guard { policy, allow: allow_cidrs.iter().filter_map(|c| Cidr::parse(c).ok()).collect() }
    }

    /// Whether the client may connect to `ip`; the refusal says why.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let refused = match class_of(ip) {
            Some(class) if self.policy == Policy::Agents && class.internal => None,
            other => other,
        };
        match refused {
            Some(class) if !self.allow.iter().any(|c| c.contains(ip)) => Err(format!(
                "{ip} is a {} address; {}s may not reach it ({})",
                class.name,
                self.policy.noun(),
                self.policy.knob()
            )),
            _ => Ok(()),
        }
    }

    /// Checks a URL's host when it is an IP literal (names are checked as they resolve).
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), String> {
        match literal(url) {
            Ok(Some(ip)) => self.check(ip),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Screens a URL when a client or an operator gives it, for a clear error at once: a
    /// literal refused address, or a name that resolves only to refused ones. A name that
    /// does not resolve now (or not within `SCREEN_LOOKUP_TIMEOUT`) is accepted: every
    /// connection checks again.
    pub async fn screen(&self, url: &str) -> Result<(), String> {
        let noun = self.policy.noun();
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{noun} URL {url:?}: {e}"))?;
        if literal(&parsed)?.is_some() {
            return self.check_literal(&parsed);
        }
        let name = parsed.host_str().unwrap_or_default();
        let lookup = tokio::time::timeout(SCREEN_LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await;
        let Ok(Ok(addrs)) = lookup else { return Ok(()) };
        let addrs: Vec<SocketAddr> = addrs.collect();
        match addrs.iter().map(|a| self.check(a.ip())).find(Result::is_ok) {
            Some(_) => Ok(()),
            None if addrs.is_empty() => Ok(()),
            None => Err(format!("{noun} host {name}: {}", self.check(addrs[0].ip()).unwrap_err())),
        }
    }

    /// A redirect policy following at most `max` redirects, each to a URL whose literal
    /// address the guard allows (a name is checked by the resolver when it connects).
    pub fn redirect_policy(self: &Arc<Guard>, max: usize) -> reqwest::redirect::Policy {
        let guard = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                let error = format!("more than {max} redirects ({})", guard.policy.noun());
                return attempt.error(error);
            }
            match guard.check_literal(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        })
    }
}

/// The URL's host as an IP address, when it is one (`None` for a name).
fn literal(url: &reqwest::Url) -> Result<Option<IpAddr>, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok(bare.parse().ok())
}

/// A host resolved only to addresses the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error("{noun} host {host}: {why}")]
struct Refused {
    noun: &'static str,
    host: String,
    why: String,
}

/// A guarded client's resolver: the system's, minus refused addresses.
pub struct GuardedResolver {
    pub guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| guard.check(a.ip()).is_ok()).collect();
            if allowed.is_empty() {
                let why = match all.first() {
                    Some(a) => guard.check(a.ip()).unwrap_err(),
                    None => "no address".into(),
                };
                let noun = guard.policy.noun();
                return Err(Box::new(Refused { noun, host, why }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let g = Guard::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(g.check(ip(bad)).is_err(), "{bad} should be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(g.check(ip(good)).is_ok(), "{good} should pass");
        }
        let e = g.check(ip("169.254.169.254")).unwrap_err();
        assert!(e.contains("metadata") && e.contains("push.allow_cidrs"), "{e}");
    }

    #[test]
    fn the_allow_list_opens_exactly_its_ranges() {
        let g = Guard::new(Policy::Webhooks, &["127.0.0.0/8".into(), "fd00::/8".into(), "10.0.0.5".into()]);
        assert!(g.check(ip("127.9.9.9")).is_ok());
        assert!(g.check(ip("fd12::1")).is_ok());
        assert!(g.check(ip("10.0.0.5")).is_ok());
        assert!(g.check(ip("10.0.0.6")).is_err());
        assert!(g.check(ip("::1")).is_err(), "IPv6 loopback is not in 127.0.0.0/8");
    }

    #[test]
    fn agents_may_reach_internal_addresses_but_not_metadata() {
        let g = Guard::new(Policy::Agents, &[]);
        for good in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.9",
            "::1",
            "fd12::1",
            "::ffff:10.0.0.1",
            "93.184.216.34",
            "2606:4700::1111",
        ] {
            assert!(g.check(ip(good)).is_ok(), "{good} should pass for agents");
        }
        for bad in [
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.192",
            "ff02::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(g.check(ip(bad)).is_err(), "{bad} should be refused for agents");
        }
        let e = g.check(ip("169.254.169.254")).unwrap_err();
        assert!(e.contains("metadata") && e.contains("agents.allow_cidrs") && e.contains("agent"), "{e}");
        assert!(g.check(ip("fd00:ec2::254")).unwrap_err().contains("cloud metadata"));
        let open = Guard::new(Policy::Agents, &["169.254.0.0/16".into()]);
        assert!(open.check(ip("169.254.169.254")).is_ok(), "the allow list opens a refused range");
        assert!(open.check(ip("fe80::1")).is_err());
    }

    #[tokio::test]
    async fn agent_urls_are_screened() {
        let g = Guard::new(Policy::Agents, &[]);
        assert!(g.screen("http://127.0.0.1:9/").await.is_ok());
        assert!(g.screen("http://localhost:9/").await.is_ok());
        let e = g.screen("http://169.254.169.254/latest/meta-data/").await.unwrap_err();
        assert!(e.contains("169.254.169.254 is a link-local (cloud metadata) address"), "{e}");
        assert!(g.screen("http://[fd00:ec2::254]/").await.is_err());
    }

    #[test]
    fn cidrs_parse() {
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literal_urls_are_screened_when_set() {
        let g = Guard::default();
        assert!(g.screen("http://127.0.0.1:9/hook").await.unwrap_err().contains("loopback"));
        assert!(g.screen("http://[::1]:9/hook").await.is_err());
        assert!(g.screen("http://localhost:9/hook").await.unwrap_err().contains("loopback"));
        assert!(g.screen("http://93.184.216.34/hook").await.is_ok());
    }
}
