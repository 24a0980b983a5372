//! RFC 2136 dynamic update, signed with TSIG, to one configured dns server.
//!
//! The answer is inspected before its signature is verified: a BADKEY/BADSIG answer is unsigned
//! (or carries an empty MAC) and would otherwise only produce hickory's confusing verification
//! error. Response codes and TSIG error codes become explicit [`DnsError`]s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{update_message, Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as WireAlgorithm, TsigError, TSIG};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordSet, RecordType, TSigner};

use super::discovery::split_host_port;
use super::error::{DnsError, ServerRef};
use super::name::{self, is_inside};
use super::resolver::Resolver;
use super::transport::{exchange, Timeouts};
use crate::config::settings::{DnsServerSettings, TsigAlgorithm};

/// Allowed clock difference (seconds) in our signatures, as BIND's nsupdate uses.
const FUDGE: u16 = 300;

/// RFC 2136 client for one configured dns server.
pub struct Updater {
    server: ServerRef,
    key_name: String,
    algorithm: TsigAlgorithm,
    key_file: PathBuf,
    signer: TSigner,
    ttl: u32,
    timeouts: Timeouts,
    /// Added to our clock when signing (tests use it to provoke BADTIME).
    clock_offset: i64,
    /// What this updater was made from (compared by [`Updater::same_target`]).
    settings: DnsServerSettings,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("server", &self.server)
            .field("key", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What one change of an UPDATE does to the TXT RRset at its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Append the values (RFC 2136 §2.5.1), never replacing others.
    Add,
    /// Delete exactly these values (§2.5.4, by rdata).
    Delete,
}

/// One owner's values to add or delete; an UPDATE carries one or more of them, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    pub owner: String,
    pub values: Vec<String>,
}

impl Change {
    pub fn new(op: Op, owner: &str, values: &[&str]) -> Self {
        Change {
            op,
            owner: owner.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// An upper bound of this change's size in an UPDATE message (names uncompressed).
    pub fn wire_size(&self) -> usize {
        // Per RR: owner (labels + root), type, class, TTL, rdlength (10), one length octet per
        // 255-octet character-string.
        self.values
            .iter()
            .map(|v| self.owner.len() + 2 + 10 + v.len() + v.len() / 255 + 1)
            .sum()
    }
}

impl Updater {
    /// Resolves the server's address (name or IP, port default 53) and prepares the TSIG signer.
    pub async fn new(server: &DnsServerSettings, resolver: &Resolver) -> Result<Self, DnsError> {
        let (host, port) = split_host_port(&server.address, 53)?;
        let ips = resolver.lookup_ip(&host).await?;
        let ip = ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .or(ips.first())
            .copied()
            .ok_or_else(|| DnsError::NoAddress { host: host.clone() })?;
        let addr = SocketAddr::new(ip, port);
        Self::with_addr(server, addr)
    }

    /// Like [`Updater::new`] with the address already known.
    pub fn with_addr(server: &DnsServerSettings, addr: SocketAddr) -> Result<Self, DnsError> {
        let key = server
            .tsig
            .as_ref()
            .ok_or_else(|| DnsError::NoCredentials {
                server: server.name.clone(),
                key_file: server.tsig_key_file.clone(),
            })?;
        let invalid = |reason: String| DnsError::InvalidTsigKey {
            key: key.name.clone(),
            reason,
        };
        let key_name = name::to_fqdn(&key.name).map_err(|e| invalid(e.to_string()))?;
        let algorithm = match key.algorithm {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => WireAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        };
        if key.secret.expose().is_empty() {
            return Err(invalid("the secret is empty".to_string()));
        }
        let signer = TSigner::new(key.secret.expose().to_vec(), algorithm, key_name, FUDGE)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Updater {
            server: ServerRef::new(server.name.clone(), addr),
            key_name: key.name.clone(),
            algorithm: key.algorithm,
            key_file: server.tsig_key_file.clone(),
            signer,
            ttl: server.ttl,
            timeouts: Timeouts::UPDATE,
            clock_offset: 0,
            settings: server.clone(),
        })
    }

    /// The server as shown in messages.
    pub fn server(&self) -> &ServerRef {
        &self.server
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Whether `other` sends to the same server with the same key and TTL, so that one UPDATE
    /// message can carry the changes of both.
    pub fn same_target(&self, other: &Updater) -> bool {
        self.server == other.server
            && self.settings == other.settings
            && self.clock_offset == other.clock_offset
    }

    /// Adds `value` to the TXT RRset at `owner`, never touching other values there.
    pub async fn add_txt(&self, zone: &str, owner: &str, value: &str) -> Result<(), DnsError> {
        self.update(Op::Add, zone, owner, &[value]).await
    }

    /// Deletes exactly this value; deleting a value that is not there is success.
    pub async fn delete_txt(&self, zone: &str, owner: &str, value: &str) -> Result<(), DnsError> {
        self.update(Op::Delete, zone, owner, &[value]).await
    }

    /// Adds several values at one owner in ONE update message (e.g. wildcard + apex).
    ///
    /// Prefer this over several [`Updater::add_txt`] calls: BIND sends one NOTIFY per zone change
    /// and holds back the next one for `notify-delay` (5 s), so a second UPDATE right after the
    /// first reaches the secondaries up to 5 s later.
    pub async fn add_txt_values(
        &self,
        zone: &str,
        owner: &str,
        values: &[&str],
    ) -> Result<(), DnsError> {
        if values.is_empty() {
            return Ok(());
        }
        self.update(Op::Add, zone, owner, values).await
    }

    /// Deletes exactly these values at one owner in one update message.
    pub async fn delete_txt_values(
        &self,
        zone: &str,
        owner: &str,
        values: &[&str],
    ) -> Result<(), DnsError> {
        if values.is_empty() {
            return Ok(());
        }
        self.update(Op::Delete, zone, owner, values).await
    }

    async fn update(
        &self,
        op: Op,
        zone: &str,
        owner: &str,
        values: &[&str],
    ) -> Result<(), DnsError> {
        self.apply(zone, &[Change::new(op, owner, values)]).await
    }

    /// Sends `changes` (each owner inside `zone`) as ONE update message, applied in order and all
    /// or nothing by the server. A rejection names the first change's owner.
    pub async fn apply(&self, zone: &str, changes: &[Change]) -> Result<(), DnsError> {
        let zone = name::normalize(zone)?;
        let zone_fqdn = name::to_fqdn(&zone)?;
        let mut msg: Option<Message> = None;
        let mut first_owner = None;
        for change in changes.iter().filter(|c| !c.values.is_empty()) {
            let owner = name::normalize(&change.owner)?;
            if !is_inside(&owner, &zone) {
                return Err(DnsError::OwnerNotInZone { owner, zone });
            }
            let owner_fqdn = name::to_fqdn(&owner)?;
            let mut rrset = RecordSet::with_ttl(owner_fqdn.clone(), RecordType::TXT, self.ttl);
            for value in &change.values {
                rrset.insert(
                    Record::from_rdata(owner_fqdn.clone(), self.ttl, RData::TXT(txt_rdata(value))),
                    0,
                );
            }
            let part = match change.op {
                Op::Add => update_message::append(rrset, zone_fqdn.clone(), false, false),
                Op::Delete => update_message::delete_by_rdata(rrset, zone_fqdn.clone(), false),
            };
            match &mut msg {
                None => msg = Some(part),
                Some(m) => m.authorities.extend(part.authorities),
            }
            first_owner.get_or_insert(owner);
        }
        let (Some(mut msg), Some(owner)) = (msg, first_owner) else {
            return Ok(());
        };
        let now = unix_now().saturating_add_signed(self.clock_offset);
        let mut verifier = msg
            .finalize(&self.signer, now)
            .map_err(|e| DnsError::InvalidTsigKey {
                key: self.key_name.clone(),
                reason: format!("signing failed: {e}"),
            })?
            .ok_or_else(|| DnsError::InvalidTsigKey {
                key: self.key_name.clone(),
                reason: "the signer returned no verifier".to_string(),
            })?;
        let request = msg.to_vec().map_err(|e| DnsError::InvalidName {
            name: owner.clone(),
            reason: e.to_string(),
        })?;

        let started = std::time::Instant::now();
        let raw = exchange(&self.server, &request, self.timeouts).await?;
        let response = Message::from_vec(&raw).map_err(|e| DnsError::Malformed {
            server: self.server.clone(),
            reason: format!("cannot decode the answer: {e}"),
        })?;
        let outcome = self.judge(&response, now, &zone, &owner);
        let outcome = match outcome {
            Ok(()) => {
                verifier
                    .verify(&raw)
                    .map(|_| ())
                    .map_err(|e| DnsError::BadResponseSignature {
                        server: self.server.clone(),
                        zone: zone.clone(),
                        key: self.key_name.clone(),
                        reason: e.to_string(),
                    })
            }
            Err(e) => Err(e),
        };
        tracing::debug!(
            server = %self.server, %zone, %owner, changes = changes.len(),
            values = changes.iter().map(|c| c.values.len()).sum::<usize>(),
            bytes = request.len(),
            ms = started.elapsed().as_millis() as u64,
            ok = outcome.is_ok(),
            "RFC 2136 update"
        );
        outcome
    }

    /// Maps the answer's TSIG error and response code (before any signature check).
    fn judge(
        &self,
        response: &Message,
        sent_at: u64,
        zone: &str,
        owner: &str,
    ) -> Result<(), DnsError> {
        let tsig = response.signature().map(|r| &r.data);
        if let Some(err) = tsig.and_then(|t| t.error) {
            return Err(self.tsig_error(err, tsig, sent_at));
        }
        let rcode = response.metadata.response_code;
        match rcode {
            ResponseCode::NoError => {
                if tsig.is_none() {
                    return Err(DnsError::UnsignedResponse {
                        server: self.server.clone(),
                        zone: zone.to_string(),
                        key: self.key_name.clone(),
                    });
                }
                Ok(())
            }
            ResponseCode::BADSIG => Err(self.tsig_error(TsigError::BadSig, tsig, sent_at)),
            ResponseCode::BADKEY => Err(self.tsig_error(TsigError::BadKey, tsig, sent_at)),
            ResponseCode::BADTIME => Err(self.tsig_error(TsigError::BadTime, tsig, sent_at)),
            ResponseCode::Refused => Err(DnsError::Refused {
                server: self.server.clone(),
                zone: zone.to_string(),
                owner: owner.to_string(),
                key: self.key_name.clone(),
            }),
            ResponseCode::NotAuth => Err(DnsError::NotAuth {
                server: self.server.clone(),
                zone: zone.to_string(),
                key: self.key_name.clone(),
            }),
            ResponseCode::NotZone => Err(DnsError::NotZone {
                server: self.server.clone(),
                zone: zone.to_string(),
                owner: owner.to_string(),
            }),
            other => Err(DnsError::UpdateFailed {
                server: self.server.clone(),
                zone: zone.to_string(),
                owner: owner.to_string(),
                key: self.key_name.clone(),
                rcode: other,
            }),
        }
    }

    fn tsig_error(&self, err: TsigError, tsig: Option<&TSIG>, sent_at: u64) -> DnsError {
        match err {
            TsigError::BadKey => DnsError::BadKey {
                server: self.server.clone(),
                key: self.key_name.clone(),
                algorithm: self.algorithm.as_str().to_string(),
                key_file: self.key_file.clone(),
            },
            TsigError::BadSig => DnsError::BadSig {
                server: self.server.clone(),
                key: self.key_name.clone(),
                key_file: self.key_file.clone(),
            },
            TsigError::BadTime => DnsError::BadTime {
                server: self.server.clone(),
                key: self.key_name.clone(),
                skew_secs: tsig
                    .and_then(server_time)
                    .map(|st| st as i64 - sent_at as i64),
            },
            other => DnsError::TsigOther {
                server: self.server.clone(),
                key: self.key_name.clone(),
                code: u16::from(other),
            },
        }
    }
}

/// The server's clock from a BADTIME answer: RFC 8945 §5.2.3 puts it in Other Data (48 bits).
fn server_time(tsig: &TSIG) -> Option<u64> {
    if tsig.other.len() == 6 {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&tsig.other);
        Some(u64::from_be_bytes(b))
    } else if tsig.time != 0 {
        Some(tsig.time)
    } else {
        None
    }
}

/// One TXT record holding `value` (split into 255-byte character-strings when longer).
fn txt_rdata(value: &str) -> TXT {
    let chunks: Vec<&[u8]> = if value.is_empty() {
        vec![&[][..]]
    } else {
        value.as_bytes().chunks(255).collect()
    };
    TXT::from_bytes(chunks)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
impl Updater {
    pub(crate) fn set_clock_offset(&mut self, secs: i64) {
        self.clock_offset = secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::{Secret, TsigKey};

    pub(crate) fn settings(addr: &str, key: &str, secret: &[u8]) -> DnsServerSettings {
        DnsServerSettings {
            name: "acme-master".to_string(),
            address: addr.to_string(),
            tsig: Some(TsigKey {
                name: key.to_string(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: Secret::new(secret.to_vec()),
            }),
            tsig_key_file: PathBuf::from("/etc/renewd/secrets/acme-update.key"),
            ttl: 60,
        }
    }

    fn updater() -> Updater {
        Updater::with_addr(
            &settings("127.0.0.12", "acme-update", b"0123456789abcdef"),
            "127.0.0.12:53".parse().unwrap(),
        )
        .unwrap()
    }

    fn answer(rcode: ResponseCode, tsig: Option<TSIG>) -> Message {
        let mut m = Message::query();
        m.metadata.response_code = rcode;
        if let Some(t) = tsig {
            m.set_signature(Box::new(hickory_proto::rr::rdata::tsig::make_tsig_record(
                name::to_fqdn("acme-update").unwrap(),
                t,
            )));
        }
        m
    }

    fn tsig(error: Option<TsigError>, time: u64, other: Vec<u8>) -> TSIG {
        TSIG::new(
            WireAlgorithm::HmacSha256,
            time,
            300,
            vec![],
            1,
            error,
            other,
        )
    }

    const ZONE: &str = "_acme-challenge.host1.example.test";

    #[test]
    fn tsig_errors_come_first() {
        let u = updater();
        let e = u
            .judge(
                &answer(
                    ResponseCode::NotAuth,
                    Some(tsig(Some(TsigError::BadKey), 0, vec![])),
                ),
                100,
                ZONE,
                ZONE,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "server acme-master (127.0.0.12:53) does not know TSIG key `acme-update` (BADKEY): the key name in \
             /etc/renewd/secrets/acme-update.key must match a `key \"acme-update\"` statement in named.conf \
             (with the same algorithm, hmac-sha256)"
        );
        let e = u
            .judge(
                &answer(
                    ResponseCode::NotAuth,
                    Some(tsig(Some(TsigError::BadSig), 0, vec![])),
                ),
                100,
                ZONE,
                ZONE,
            )
            .unwrap_err();
        assert!(matches!(e, DnsError::BadSig { .. }));
        assert!(
            e.to_string()
                .contains("(BADSIG): the secret of key `acme-update`"),
            "{e}"
        );
        assert!(!e.to_string().contains("0123456789abcdef"));
    }

    #[test]
    fn badtime_reports_skew() {
        let u = updater();
        // Server time 1000 in Other Data, we signed at 1300: we are 300 s ahead.
        let other = vec![0, 0, 0, 0, 0x03, 0xe8];
        let e = u
            .judge(
                &answer(
                    ResponseCode::NotAuth,
                    Some(tsig(Some(TsigError::BadTime), 1300, other)),
                ),
                1300,
                ZONE,
                ZONE,
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                DnsError::BadTime {
                    skew_secs: Some(-300),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("our clock is 300 s ahead of the server's"),
            "{e}"
        );
        assert!(e.to_string().contains("check NTP"));
    }

    #[test]
    fn rcodes_map_to_actionable_errors() {
        let u = updater();
        let owner = format!("foo.{ZONE}");
        let signed = || Some(tsig(None, 100, vec![]));
        let e = u
            .judge(&answer(ResponseCode::Refused, signed()), 100, ZONE, &owner)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "server acme-master (127.0.0.12:53) refused the update of `foo._acme-challenge.host1.example.test` TXT \
             in zone _acme-challenge.host1.example.test with key acme-update (REFUSED): the zone's update-policy \
             does not grant it; add `update-policy { grant acme-update name foo._acme-challenge.host1.example.test. TXT; };` \
             to zone \"_acme-challenge.host1.example.test\" (or `grant acme-update zonesub TXT;`)"
        );
        let e = u
            .judge(&answer(ResponseCode::NotAuth, signed()), 100, ZONE, ZONE)
            .unwrap_err();
        assert!(e.to_string().contains(
            "is not authoritative (primary) for zone _acme-challenge.host1.example.test"
        ));
        let e = u
            .judge(&answer(ResponseCode::NotZone, signed()), 100, ZONE, ZONE)
            .unwrap_err();
        assert!(matches!(e, DnsError::NotZone { .. }));
        let e = u
            .judge(&answer(ResponseCode::ServFail, signed()), 100, ZONE, ZONE)
            .unwrap_err();
        assert!(
            e.to_string().contains("answered SERVFAIL to the update"),
            "{e}"
        );
        let e = u
            .judge(&answer(ResponseCode::NoError, None), 100, ZONE, ZONE)
            .unwrap_err();
        assert!(matches!(e, DnsError::UnsignedResponse { .. }));
        assert!(u
            .judge(&answer(ResponseCode::NoError, signed()), 100, ZONE, ZONE)
            .is_ok());
    }

    /// A fake primary that answers NOERROR with `tsig` (or unsigned) to the first datagram.
    async fn fake_primary(tsig: Option<TSIG>) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
            let req = Message::from_vec(&buf[..n]).unwrap();
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.queries = req.queries.clone();
            if let Some(t) = tsig {
                resp.set_signature(Box::new(hickory_proto::rr::rdata::tsig::make_tsig_record(
                    name::to_fqdn("acme-update").unwrap(),
                    t,
                )));
            }
            sock.send_to(&resp.to_vec().unwrap(), peer).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn forged_or_unsigned_success_is_rejected() {
        let s = settings("127.0.0.1", "acme-update", b"0123456789abcdef");
        let forged = TSIG::new(
            WireAlgorithm::HmacSha256,
            unix_now(),
            300,
            vec![7; 32],
            1,
            None,
            vec![],
        );
        let u = Updater::with_addr(&s, fake_primary(Some(forged)).await).unwrap();
        let e = u.add_txt(ZONE, ZONE, "v").await.unwrap_err();
        assert!(matches!(e, DnsError::BadResponseSignature { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("does not verify with key `acme-update`"),
            "{e}"
        );

        let u = Updater::with_addr(&s, fake_primary(None).await).unwrap();
        let e = u.delete_txt(ZONE, ZONE, "v").await.unwrap_err();
        assert!(matches!(e, DnsError::UnsignedResponse { .. }), "{e:?}");
    }

    #[test]
    fn long_values_are_split() {
        let t = txt_rdata(&"x".repeat(300));
        assert_eq!(t.txt_data.len(), 2);
        assert_eq!(t.txt_data[0].len(), 255);
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", updater());
        assert!(!s.contains("0123456789abcdef"), "{s}");
    }
}
