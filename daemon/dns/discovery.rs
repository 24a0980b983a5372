//! Where a challenge TXT record goes (CNAME following + SOA discovery), and which servers
//! must serve it before the CA is told.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

use super::error::DnsError;
use super::name::{self, from_wire, is_inside};
use super::resolver::Resolver;

/// Longest CNAME chain followed from `_acme-challenge.<name>`.
pub const MAX_CNAME_HOPS: usize = 8;

/// Where the TXT record for one domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeTarget {
    /// As in the spec, maybe `*.x`.
    pub domain: String,
    /// `_acme-challenge.<domain without *.>` (or the label asked for)
    pub challenge_name: String,
    /// The name that gets the TXT record, after following CNAMEs.
    pub owner: String,
    /// The zone the update is sent for.
    pub zone: String,
}

/// With `explicit_zone`: owner = challenge name, zone as given (the owner must be inside it).
/// Without: follow a CNAME chain at the challenge name (at most [`MAX_CNAME_HOPS`], loops
/// detected), then find the zone by SOA queries upward from the owner.
pub async fn find_target(
    resolver: &Resolver,
    domain: &str,
    explicit_zone: Option<&str>,
) -> Result<ChallengeTarget, DnsError> {
    find_target_at(resolver, name::CHALLENGE_LABEL, domain, explicit_zone).await
}

/// [`find_target`] for the owner `LABEL.<domain>` (`_validation-persist` for dns-persist-01).
pub async fn find_target_at(
    resolver: &Resolver,
    label: &str,
    domain: &str,
    explicit_zone: Option<&str>,
) -> Result<ChallengeTarget, DnsError> {
    let challenge = name::owner_name(label, domain)?;
    if let Some(zone) = explicit_zone {
        let zone = name::normalize(zone)?;
        if !is_inside(&challenge, &zone) {
            return Err(DnsError::OwnerNotInZone {
                owner: challenge,
                zone,
            });
        }
        return Ok(ChallengeTarget {
            domain: domain.to_string(),
            challenge_name: challenge.clone(),
            owner: challenge,
            zone,
        });
    }
    let owner = follow_cnames(resolver, &challenge).await?;
    let zone = find_zone(resolver, &owner).await?;
    tracing::debug!(%domain, %owner, %zone, "challenge target found");
    Ok(ChallengeTarget {
        domain: domain.to_string(),
        challenge_name: challenge,
        owner,
        zone,
    })
}

async fn follow_cnames(resolver: &Resolver, start: &str) -> Result<String, DnsError> {
    let mut chain = cname_chain(resolver, start).await?;
    Ok(chain.pop().unwrap_or_else(|| start.to_string()))
}

/// The CNAME chain at `start` as the resolver sees it: `[start, target, ...]`, the last name being
/// where a TXT record must go (just `[start]` without a CNAME). At most [`MAX_CNAME_HOPS`] hops,
/// loops detected.
pub async fn cname_chain(resolver: &Resolver, start: &str) -> Result<Vec<String>, DnsError> {
    let mut chain = vec![start.to_string()];
    let mut seen = BTreeSet::from([start.to_string()]);
    let mut current = start.to_string();
    loop {
        let msg = resolver.query(&current, RecordType::CNAME).await?;
        let Some(target) = cname_of(&msg, &current) else {
            return Ok(chain);
        };
        chain.push(target.clone());
        if !seen.insert(target.clone()) {
            return Err(DnsError::CnameLoop {
                start: start.to_string(),
                chain,
            });
        }
        if chain.len() > MAX_CNAME_HOPS + 1 {
            return Err(DnsError::CnameChainTooLong {
                start: start.to_string(),
                max: MAX_CNAME_HOPS,
                chain,
            });
        }
        current = target;
    }
}

fn cname_of(msg: &Message, owner: &str) -> Option<String> {
    msg.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(c) if from_wire(&r.name) == owner => Some(from_wire(&c.0)),
        _ => None,
    })
}

/// SOA discovery: the zone of `owner` is the owner of an SOA in the answer for the name itself,
/// or the SOA in the authority section of a negative answer; else try the parent.
pub async fn find_zone(resolver: &Resolver, owner: &str) -> Result<String, DnsError> {
    let mut candidate = Some(owner);
    while let Some(name) = candidate {
        let msg = resolver.query(name, RecordType::SOA).await?;
        if let Some(zone) = zone_from_soa_answer(&msg, name, owner) {
            return Ok(zone);
        }
        candidate = name::parent(name);
    }
    Err(DnsError::ZoneNotFound {
        name: owner.to_string(),
    })
}

/// The zone an SOA answer for `asked` reveals, when it contains `owner`.
fn zone_from_soa_answer(msg: &Message, asked: &str, owner: &str) -> Option<String> {
    let in_answer = msg.answers.iter().find_map(|r| match &r.data {
        RData::SOA(_) if from_wire(&r.name) == asked => Some(from_wire(&r.name)),
        _ => None,
    });
    // A CNAME in the answer means `asked` is an alias: its SOA (if any) is another zone's.
    let aliased = msg
        .answers
        .iter()
        .any(|r| matches!(r.data, RData::CNAME(_)));
    let in_authority = if aliased {
        None
    } else {
        msg.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(_) => Some(from_wire(&r.name)),
            _ => None,
        })
    };
    in_answer
        .or(in_authority)
        .filter(|zone| is_inside(owner, zone) && !zone.is_empty())
}

/// One authoritative server of a zone: its NS name and one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuthServer {
    pub name: String,
    pub addr: SocketAddr,
}

impl AuthServer {
    pub fn server_ref(&self) -> super::error::ServerRef {
        super::error::ServerRef::new(self.name.clone(), self.addr)
    }
}

/// NS set of `zone` (asked of the resolver) and the addresses of each NS name.
/// A non-empty `explicit` list (`propagation.nameservers`, `host[:port]`) is used instead.
/// IPv6 addresses are left out when this host has no route to them.
pub async fn authoritative_servers(
    resolver: &Resolver,
    zone: &str,
    explicit: &[String],
) -> Result<Vec<AuthServer>, DnsError> {
    let zone = name::normalize(zone)?;
    let mut out = Vec::new();
    if !explicit.is_empty() {
        for spec in explicit {
            let (host, port) = split_host_port(spec, 53)?;
            for ip in resolver.lookup_ip(&host).await? {
                out.push(AuthServer {
                    name: host.clone(),
                    addr: SocketAddr::new(ip, port),
                });
            }
        }
        out.sort();
        out.dedup();
        return Ok(out);
    }
    let msg = resolver.query(&zone, RecordType::NS).await?;
    let mut ns_names: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) if from_wire(&r.name) == zone => Some(from_wire(&ns.0)),
            _ => None,
        })
        .collect();
    ns_names.sort();
    ns_names.dedup();
    if ns_names.is_empty() {
        return Err(DnsError::NoNameservers {
            zone,
            reason: "the resolver returned no NS records".to_string(),
        });
    }
    let mut failures = Vec::new();
    for ns in &ns_names {
        match resolver.lookup_ip(ns).await {
            Ok(ips) => {
                for ip in ips {
                    if ip.is_ipv6() && !routable(ip).await {
                        tracing::debug!(%ns, %ip, "skipping an IPv6 address this host cannot reach");
                        continue;
                    }
                    out.push(AuthServer {
                        name: ns.clone(),
                        addr: SocketAddr::new(ip, 53),
                    });
                }
            }
            Err(e) => {
                tracing::warn!(%zone, %ns, error = %e, "cannot resolve a name server of the zone");
                failures.push(format!("{ns}: {e}"));
            }
        }
    }
    if out.is_empty() {
        return Err(DnsError::NoNameservers {
            zone,
            reason: failures.join("; "),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether the kernel has a route to `ip` (a UDP connect sends nothing).
async fn routable(ip: IpAddr) -> bool {
    let local: SocketAddr = if ip.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    match tokio::net::UdpSocket::bind(local).await {
        Ok(s) => s.connect(SocketAddr::new(ip, 53)).await.is_ok(),
        Err(_) => false,
    }
}

/// `host`, `host:port`, `v4:port`, `[v6]:port`, or a bare IPv6 address.
pub fn split_host_port(spec: &str, default_port: u16) -> Result<(String, u16), DnsError> {
    let invalid = |reason: &str| DnsError::InvalidAddress {
        address: spec.to_string(),
        reason: reason.to_string(),
    };
    let s = spec.trim();
    if s.is_empty() {
        return Err(invalid("empty"));
    }
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| invalid("missing `]`"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| invalid("not an IPv6 address inside `[...]`"))?;
        let port = match after {
            "" => default_port,
            p => parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("expected `:PORT` after `]`"))?,
            )?,
        };
        return Ok((host.to_string(), port));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), default_port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => (s, default_port),
    };
    if host.contains(':') {
        return Err(invalid("write IPv6 addresses with a port as `[ADDR]:PORT`"));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.parse::<IpAddr>().is_err() {
        name::normalize(host)?;
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{CNAME, SOA};
    use hickory_proto::rr::Record;

    fn soa_record(owner: &str) -> Record {
        let n = name::to_fqdn(owner).unwrap();
        Record::from_rdata(
            n.clone(),
            60,
            RData::SOA(SOA::new(n.clone(), n, 1, 300, 60, 3600, 60)),
        )
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("acme-master.example.ac.jp:53", 53).unwrap(),
            ("acme-master.example.ac.jp".to_string(), 53)
        );
        assert_eq!(
            split_host_port("Acme-Master.example.", 53).unwrap(),
            ("acme-master.example".to_string(), 53)
        );
        assert_eq!(
            split_host_port("127.0.0.12:5353", 53).unwrap(),
            ("127.0.0.12".to_string(), 5353)
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:54", 53).unwrap(),
            ("2001:db8::1".to_string(), 54)
        );
        assert_eq!(
            split_host_port("2001:db8::1", 53).unwrap(),
            ("2001:db8::1".to_string(), 53)
        );
        assert!(split_host_port("host:0", 53).is_err());
        assert!(split_host_port("host:x", 53).is_err());
        assert!(split_host_port("[::1", 53).is_err());
        assert!(split_host_port("", 53).is_err());
    }

    #[test]
    fn soa_in_answer_or_authority() {
        let owner = "_acme-challenge.host1.example.test";
        let mut m = Message::query();
        m.add_answer(soa_record(owner));
        assert_eq!(
            zone_from_soa_answer(&m, owner, owner).as_deref(),
            Some(owner)
        );

        let mut m = Message::query();
        m.add_authority(soa_record("example.test"));
        assert_eq!(
            zone_from_soa_answer(
                &m,
                "x._acme-challenge.host1.example.test",
                "x._acme-challenge.host1.example.test"
            )
            .as_deref(),
            Some("example.test")
        );

        // An alias: the SOA belongs to the target's zone, not ours.
        let mut m = Message::query();
        m.add_answer(Record::from_rdata(
            name::to_fqdn(owner).unwrap(),
            60,
            RData::CNAME(CNAME(name::to_fqdn("x.other.test").unwrap())),
        ));
        m.add_authority(soa_record("other.test"));
        assert_eq!(zone_from_soa_answer(&m, owner, owner), None);

        // An SOA that does not contain the owner is ignored.
        let mut m = Message::query();
        m.add_authority(soa_record("elsewhere.test"));
        assert_eq!(zone_from_soa_answer(&m, owner, owner), None);
    }
}
