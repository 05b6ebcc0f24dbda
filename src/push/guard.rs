//! The SSRF guard of webhook delivery: a webhook may not reach loopback, private,
//! link-local (cloud metadata included) or other non-public addresses, unless
//! `push.allow_cidrs` lets it.
//!
//! The check is made on the address actually connected to: the delivery client resolves
//! names through [`GuardedResolver`], which drops refused addresses (so a name that resolves
//! to a public address at config time and a private one at delivery time is refused then:
//! no DNS-rebinding gap), and an IP literal in a URL is checked before the request (the
//! client connects to it without resolving). Redirects are not followed and proxies not used.

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

/// Why an address is refused, if it is: the class of non-public address it belongs to.
fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address inside IPv6 (mapped, or NAT64) is judged as that address.
            if let Some(v4) = v6.to_ipv4_mapped().or_else(|| nat64(v6)) {
                return refused_v4(v4);
            }
            refused_v6(v6)
        }
    }
}

fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || o[0] == 0 => "unspecified",
        _ if ip.is_private() => "private",
        // 169.254.169.254 and other cloud metadata endpoints live here.
        _ if ip.is_link_local() => "link-local (cloud metadata)",
        // Carrier-grade NAT, where Alibaba's metadata endpoint (100.100.100.200) lives.
        [100, b, ..] if (64..128).contains(&b) => "shared (carrier-grade NAT)",
        [192, 0, 0, _] => "IETF protocol assignment",
        [198, 18 | 19, ..] => "benchmarking",
        _ if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 => "multicast or reserved",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // Unique local addresses, AWS's IPv6 metadata endpoint (fd00:ec2::254) among them.
        _ if first & 0xfe00 == 0xfc00 => "private (unique local)",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// Which addresses webhooks may reach.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<Cidr>,
}

impl Guard {
    /// From `push.allow_cidrs` (validated at config load; an invalid entry is skipped).
    pub fn new(allow_cidrs: &[String]) -> Guard {
        Guard { allow: allow_cidrs.iter().filter_map(|c| Cidr::parse(c).ok()).collect() }
    }

    /// Whether a webhook may connect to `ip`; the refusal says why.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match refused_class(ip) {
            Some(class) if !self.allow.iter().any(|c| c.contains(ip)) => {
                Err(format!("{ip} is a {class} address; webhooks may not reach it (push.allow_cidrs)"))
            }
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

    /// Screens a webhook URL when a client sets it, for a clear error at once: a literal
    /// refused address, or a name that resolves only to refused ones. A name that does not
    /// resolve now (or not within `SCREEN_LOOKUP_TIMEOUT`) is accepted: delivery checks
    /// again, on every connection.
    pub async fn screen(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook URL {url:?}: {e}"))?;
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
            None => Err(format!("webhook host {name}: {}", self.check(addrs[0].ip()).unwrap_err())),
        }
    }
}

/// The URL's host as an IP address, when it is one (`None` for a name).
fn literal(url: &reqwest::Url) -> Result<Option<IpAddr>, String> {
    let host = url.host_str().ok_or("the webhook URL has no host")?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok(bare.parse().ok())
}

/// A webhook resolved only to addresses the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error("webhook host {host}: {why}")]
struct Refused {
    host: String,
    why: String,
}

/// The delivery client's resolver: the system's, minus refused addresses.
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
                return Err(Box::new(Refused { host, why }) as Box<dyn std::error::Error + Send + Sync>);
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
        let g = Guard::new(&["127.0.0.0/8".into(), "fd00::/8".into(), "10.0.0.5".into()]);
        assert!(g.check(ip("127.9.9.9")).is_ok());
        assert!(g.check(ip("fd12::1")).is_ok());
        assert!(g.check(ip("10.0.0.5")).is_ok());
        assert!(g.check(ip("10.0.0.6")).is_err());
        assert!(g.check(ip("::1")).is_err(), "IPv6 loopback is not in 127.0.0.0/8");
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
