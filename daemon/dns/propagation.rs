//! Waiting until every authoritative server serves our TXT values (no fixed sleeps).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tokio::time::Instant;

use super::discovery::AuthServer;
use super::error::{DnsError, Lagging, ServerRef};
use super::name::{self, from_wire};
use super::resolver::rcode_name;
use super::transport::{query_direct, Timeouts};

/// How long each server took to serve every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    pub per_server: Vec<(AuthServer, Duration)>,
}

impl Propagation {
    /// The slowest server's time (zero when there were no servers).
    pub fn slowest(&self) -> Duration {
        self.per_server
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }
}

/// Delays between polls of one server: first poll at once, then 50 ms growing ×1.5 up to 1 s. A
/// secondary typically serves a change 0.1–1 s after the primary took it (NOTIFY, then IXFR); a
/// query is one small UDP exchange, so the schedule is fine-grained where the answer usually comes
/// (a renewal waited on average half a poll interval too long: ~190 ms with a 250 ms start).
pub fn poll_delays() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(Duration::from_millis(50)), |d| {
        Some(d.mul_f64(1.5).min(Duration::from_secs(1)))
    })
}

/// What one server answered to a TXT query at the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The TXT values (possibly empty: NODATA / NXDOMAIN).
    Txt(Vec<String>),
    /// Anything else, described for the administrator ("SERVFAIL", "timeout", ...).
    Trouble(String),
}

impl Served {
    /// How it compares to the values we wait for.
    fn describe(&self, wanted: &[String]) -> String {
        match self {
            Served::Trouble(t) => t.clone(),
            Served::Txt(v) if v.is_empty() => "no TXT".to_string(),
            Served::Txt(v) => {
                let have = wanted.iter().filter(|w| v.contains(w)).count();
                if have == 0 {
                    format!("old values only ({})", short_list(v))
                } else {
                    format!("{have} of {} values", wanted.len())
                }
            }
        }
    }

    fn has_all(&self, wanted: &[String]) -> bool {
        matches!(self, Served::Txt(v) if wanted.iter().all(|w| v.contains(w)))
    }
}

fn short_list(values: &[String]) -> String {
    let mut shown: Vec<String> = values.iter().take(3).map(|v| format!("\"{v}\"")).collect();
    if values.len() > 3 {
        shown.push(format!("and {} more", values.len() - 3));
    }
    shown.join(", ")
}

/// Polls every server concurrently (RD=0) until each serves every value in `values`.
pub async fn wait_for_txt(
    servers: &[AuthServer],
    owner: &str,
    values: &[String],
    timeout: Duration,
) -> Result<Propagation, DnsError> {
    let owner = name::normalize(owner)?;
    if servers.is_empty() {
        return Err(DnsError::NoNameservers {
            zone: owner,
            reason: "no server to check".to_string(),
        });
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, server) in servers.iter().enumerate() {
        let server = server.clone();
        let owner = owner.clone();
        let values = values.to_vec();
        tasks.spawn(async move {
            let result = poll_one(&server, &owner, &values, started, deadline).await;
            (i, server, result)
        });
    }
    let mut results = Vec::with_capacity(servers.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results.sort_by_key(|(i, _, _)| *i);
    let mut ok = Vec::new();
    let mut lagging = Vec::new();
    for (_, server, result) in results {
        match result {
            Ok(took) => ok.push((server, took)),
            Err(served) => lagging.push(Lagging {
                server: server.server_ref(),
                served,
            }),
        }
    }
    if lagging.is_empty() {
        for (s, d) in &ok {
            tracing::debug!(server = %s.server_ref(), %owner, ms = d.as_millis() as u64, "TXT propagated");
        }
        Ok(Propagation { per_server: ok })
    } else {
        Err(DnsError::PropagationTimeout {
            owner,
            waited: timeout,
            lagging,
            ok: ok.into_iter().map(|(s, d)| (s.server_ref(), d)).collect(),
        })
    }
}

/// One non-recursive TXT query of every server at `owner`, concurrently: what each serves now.
pub async fn serving(servers: &[AuthServer], owner: &str) -> Vec<(AuthServer, Served)> {
    let asks = servers.iter().map(|s| async move {
        let served = ask(&s.server_ref(), owner, Timeouts::POLL).await;
        (s.clone(), served)
    });
    futures::future::join_all(asks).await
}

/// Ok(time to success) or Err(what it served last).
async fn poll_one(
    server: &AuthServer,
    owner: &str,
    values: &[String],
    started: Instant,
    deadline: Instant,
) -> Result<Duration, String> {
    let sref = server.server_ref();
    let mut delays = poll_delays();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeouts = Timeouts {
            udp: Timeouts::POLL
                .udp
                .min(remaining.max(Duration::from_millis(50))),
            ..Timeouts::POLL
        };
        let served = match tokio::time::timeout(
            remaining.max(Duration::from_millis(50)),
            ask(&sref, owner, timeouts),
        )
        .await
        {
            Ok(s) => s,
            Err(_) => Served::Trouble("timeout".to_string()),
        };
        if served.has_all(values) {
            return Ok(started.elapsed());
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(2));
        let now = Instant::now();
        if now >= deadline {
            return Err(served.describe(values));
        }
        tracing::trace!(server = %sref, %owner, served = %served.describe(values), "not yet");
        tokio::time::sleep_until((now + delay).min(deadline)).await;
        if Instant::now() >= deadline {
            // One last look at the deadline itself.
            let last = ask(&sref, owner, Timeouts::POLL).await;
            if last.has_all(values) {
                return Ok(started.elapsed());
            }
            return Err(last.describe(values));
        }
    }
}

/// One non-recursive TXT query, described.
async fn ask(server: &ServerRef, owner: &str, timeouts: Timeouts) -> Served {
    match query_txt_at(server, owner, timeouts).await {
        Ok(v) => Served::Txt(v),
        Err(DnsError::NoAnswer { .. }) => Served::Trouble("timeout".to_string()),
        Err(DnsError::Unreachable { reason, .. }) => Served::Trouble(reason),
        Err(DnsError::QueryFailed { served, .. }) => Served::Trouble(served),
        Err(e) => Served::Trouble(e.to_string()),
    }
}

/// Non-recursive TXT query of one server: the TXT strings at `owner` (empty for NODATA/NXDOMAIN).
pub async fn query_txt(server: SocketAddr, owner: &str) -> Result<Vec<String>, DnsError> {
    query_txt_at(&ServerRef::new("", server), owner, Timeouts::LOOKUP).await
}

pub(crate) async fn query_txt_at(
    server: &ServerRef,
    owner: &str,
    timeouts: Timeouts,
) -> Result<Vec<String>, DnsError> {
    let owner = name::normalize(owner)?;
    let answer = query_direct(server, &owner, RecordType::TXT, timeouts).await?;
    let failed = |served: String| DnsError::QueryFailed {
        server: server.clone(),
        owner: owner.clone(),
        served,
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::Refused => {
            return Err(failed(
                "REFUSED (the server does not serve this zone, or refuses us)".to_string(),
            ))
        }
        rcode => return Err(failed(rcode_name(rcode))),
    }
    if !answer.metadata.authoritative {
        return Err(failed(
            "a non-authoritative answer (AA=0): not a server of this zone (yet)".to_string(),
        ));
    }
    Ok(answer
        .answers
        .iter()
        .filter(|r| from_wire(&r.name) == owner)
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let ms: Vec<u128> = poll_delays().take(9).map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![50, 75, 112, 168, 253, 379, 569, 854, 1000]);
    }

    #[test]
    fn served_descriptions() {
        let wanted = vec!["a".to_string(), "b".to_string()];
        assert_eq!(Served::Txt(vec![]).describe(&wanted), "no TXT");
        assert_eq!(
            Served::Txt(vec!["old".into()]).describe(&wanted),
            "old values only (\"old\")"
        );
        assert_eq!(
            Served::Txt(vec!["a".into(), "old".into()]).describe(&wanted),
            "1 of 2 values"
        );
        assert!(Served::Txt(vec!["b".into(), "x".into(), "a".into()]).has_all(&wanted));
        assert!(!Served::Trouble("SERVFAIL".into()).has_all(&wanted));
    }

    #[test]
    fn timeout_message_names_every_lagging_server() {
        let e = DnsError::PropagationTimeout {
            owner: "_acme-challenge.host1.example.test".into(),
            waited: Duration::from_secs(5),
            lagging: vec![Lagging {
                server: ServerRef::new("dns3.example.test", "127.0.0.15:53".parse().unwrap()),
                served: "timeout".into(),
            }],
            ok: vec![(
                ServerRef::new("dns1.example.test", "127.0.0.13:53".parse().unwrap()),
                Duration::from_millis(40),
            )],
        };
        assert_eq!(
            e.to_string(),
            "TXT `_acme-challenge.host1.example.test` is not on every authoritative server after 5 s; lagging: \
             dns3.example.test (127.0.0.15:53): timeout (ready: dns1.example.test (127.0.0.13:53) after 40 ms). \
             Check the zone transfers (NOTIFY/IXFR) from the primary to these servers, or raise `propagation.timeout`"
        );
    }

    #[tokio::test]
    async fn silent_server_is_reported_lagging() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let servers = vec![AuthServer {
            name: "dns9.example.test".into(),
            addr: silent.local_addr().unwrap(),
        }];
        let t0 = std::time::Instant::now();
        let e = wait_for_txt(
            &servers,
            "x.example.test",
            &["v".into()],
            Duration::from_millis(600),
        )
        .await
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        match e {
            DnsError::PropagationTimeout { lagging, .. } => {
                assert_eq!(lagging.len(), 1);
                assert_eq!(lagging[0].served, "timeout");
            }
            other => panic!("{other:?}"),
        }
    }
}
