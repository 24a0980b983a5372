//! One non-recursive SOA query to one server: does it serve the zone authoritatively, and with
//! which serial? (`renewd dns-test` compares the secondaries with the primary this way.)

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::error::{DnsError, ServerRef};
use super::name::{self, from_wire};
use super::resolver::rcode_name;
use super::transport::{query_direct, Timeouts};

/// What a server said when asked (RD=0) for the SOA of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoaAnswer {
    /// An authoritative answer with the zone's own SOA.
    Serial(u32),
    /// It answered, but not as a server of this zone: REFUSED, a referral, a non-authoritative
    /// answer, or an SOA of another (parent) zone. The text says which.
    NotServed(String),
}

/// Asks `server` (non-recursive) for the SOA of `zone`.
pub async fn query_soa(
    server: &ServerRef,
    zone: &str,
    timeouts: Timeouts,
) -> Result<SoaAnswer, DnsError> {
    let zone = name::normalize(zone)?;
    let answer = query_direct(server, &zone, RecordType::SOA, timeouts).await?;
    Ok(judge_soa(&answer, &zone))
}

fn judge_soa(answer: &Message, zone: &str) -> SoaAnswer {
    match answer.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::Refused => {
            return SoaAnswer::NotServed(
                "REFUSED: it does not serve this zone (or its allow-query / views leave us out)"
                    .to_string(),
            )
        }
        rcode => return SoaAnswer::NotServed(format!("{} to an SOA query", rcode_name(rcode))),
    }
    let own = answer.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if from_wire(&r.name) == zone => Some(soa.serial),
        _ => None,
    });
    match own {
        Some(serial) if answer.metadata.authoritative => SoaAnswer::Serial(serial),
        Some(_) => SoaAnswer::NotServed(
            "a non-authoritative answer (AA=0): it does not hold the zone itself".to_string(),
        ),
        None => {
            let other = answer.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(_) => Some(from_wire(&r.name)),
                _ => None,
            });
            match other {
                Some(parent) => SoaAnswer::NotServed(format!(
                    "it answers for zone {parent} instead: zone {zone} does not exist there"
                )),
                None => SoaAnswer::NotServed(
                    "a referral or an answer without the zone's SOA: it does not hold the zone"
                        .to_string(),
                ),
            }
        }
    }
}

/// RFC 1982 serial arithmetic: whether serial `a` is behind `b`.
pub fn serial_behind(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::Record;

    fn soa(owner: &str, serial: u32) -> Record {
        let n = name::to_fqdn(owner).unwrap();
        Record::from_rdata(
            n.clone(),
            60,
            RData::SOA(SOA::new(n.clone(), n, serial, 300, 60, 3600, 60)),
        )
    }

    const ZONE: &str = "_acme-challenge.host1.example.test";

    #[test]
    fn authoritative_soa_gives_the_serial() {
        let mut m = Message::query();
        m.metadata.authoritative = true;
        m.add_answer(soa(ZONE, 42));
        assert_eq!(judge_soa(&m, ZONE), SoaAnswer::Serial(42));
        m.metadata.authoritative = false;
        assert!(matches!(judge_soa(&m, ZONE), SoaAnswer::NotServed(t) if t.contains("AA=0")));
    }

    #[test]
    fn other_answers_say_why_the_zone_is_not_served() {
        let mut m = Message::query();
        m.metadata.authoritative = true;
        m.add_authority(soa("example.test", 1));
        assert!(
            matches!(judge_soa(&m, ZONE), SoaAnswer::NotServed(t) if t.contains("answers for zone example.test"))
        );
        let mut m = Message::query();
        m.metadata.response_code = ResponseCode::Refused;
        assert!(matches!(judge_soa(&m, ZONE), SoaAnswer::NotServed(t) if t.starts_with("REFUSED")));
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_behind(1, 2));
        assert!(!serial_behind(2, 2));
        assert!(!serial_behind(3, 2));
        assert!(serial_behind(u32::MAX, 1));
        assert!(!serial_behind(1, u32::MAX));
    }
}
