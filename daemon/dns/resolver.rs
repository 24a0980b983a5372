//! A stub resolver for discovery: asks recursive servers (RD=1), in order.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::error::{DnsError, ServerRef};
use super::name;
use super::transport::{exchange, Timeouts};
use crate::fsread;

/// Where the system's recursive servers are listed (when `resolver:` is empty).
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// EDNS payload we advertise (the DNS Flag Day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    timeouts: Timeouts,
}

impl Resolver {
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Resolver {
            servers,
            timeouts: Timeouts::LOOKUP,
        }
    }

    /// `servers` (settings.resolver), or the `nameserver` lines of /etc/resolv.conf when empty.
    pub fn from_config(servers: &[SocketAddr]) -> Result<Self, DnsError> {
        if !servers.is_empty() {
            return Ok(Self::new(servers.to_vec()));
        }
        let text =
            fsread::read_text_capped(Path::new(RESOLV_CONF), fsread::TEXT_MAX).map_err(|e| {
                DnsError::NoResolver {
                    reason: match e {
                        fsread::ReadError::Io(e) => format!("cannot read {RESOLV_CONF}: {e}"),
                        other => format!("{RESOLV_CONF} {other}"),
                    },
                }
            })?;
        let found = parse_resolv_conf(&text);
        if found.is_empty() {
            return Err(DnsError::NoResolver {
                reason: format!("{RESOLV_CONF} has no `nameserver` line"),
            });
        }
        Ok(Self::new(found))
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Ask the servers in order for `name` `rtype`; the first NOERROR or NXDOMAIN answer wins.
    /// Other response codes and network trouble move on to the next server; when every server
    /// failed, the last failure is returned.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Message, DnsError> {
        let qname = name::to_fqdn(name)?;
        if self.servers.is_empty() {
            return Err(DnsError::NoResolver {
                reason: "the resolver list is empty".to_string(),
            });
        }
        let mut last = None;
        for addr in &self.servers {
            let server = ServerRef::new("resolver", *addr);
            let mut msg = Message::query();
            msg.metadata.recursion_desired = true;
            msg.add_query(Query::query(qname.clone(), rtype));
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            msg.set_edns(edns);
            let bytes = msg.to_vec().map_err(|e| DnsError::InvalidName {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
            let answer = match exchange(&server, &bytes, self.timeouts).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(%server, %name, %rtype, error = %e, "resolver failed");
                    last = Some(e);
                    continue;
                }
            };
            let answer = match Message::from_vec(&answer) {
                Ok(m) => m,
                Err(e) => {
                    last = Some(DnsError::Malformed {
                        server,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            match answer.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => return Ok(answer),
                rcode => {
                    last = Some(DnsError::LookupFailed {
                        name: name.to_string(),
                        rtype: rtype.to_string(),
                        server,
                        rcode: rcode_name(rcode),
                    });
                }
            }
        }
        Err(last.expect("at least one server was asked"))
    }

    /// A then AAAA; an IP literal returns itself.
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for rtype in [RecordType::A, RecordType::AAAA] {
            match self.query(host, rtype).await {
                Ok(msg) => {
                    for r in &msg.answers {
                        match &r.data {
                            RData::A(a) => out.push(IpAddr::V4(a.0)),
                            RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        out.dedup();
        if !out.is_empty() {
            return Ok(out);
        }
        match first_err {
            Some(e) => Err(e),
            None => Err(DnsError::NoAddress {
                host: host.to_string(),
            }),
        }
    }
}

/// `nameserver` lines of resolv.conf (port 53; an IPv6 zone index `%eth0` is dropped).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The mnemonic of a response code, as dig prints it.
pub fn rcode_name(rcode: ResponseCode) -> String {
    let s = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        ResponseCode::BADSIG => "BADSIG",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        other => return format!("RCODE{}", u16::from(other)),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch example.org\nnameserver 127.0.0.17\nnameserver ::1 # v6\n\
                    nameserver fe80::1%eth0\n;nameserver 10.0.0.1\nnameserver bogus\noptions edns0\n";
        let got = parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "127.0.0.17:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
    }

    #[tokio::test]
    async fn ip_literals_return_themselves() {
        let r = Resolver::new(vec![]);
        assert_eq!(
            r.lookup_ip("192.0.2.1").await.unwrap(),
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.lookup_ip("[2001:db8::1]").await.unwrap(),
            vec!["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
    }
}
