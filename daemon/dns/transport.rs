//! Our own small DNS transport: one request, one raw response.
//!
//! UDP first (TCP when the request is over 512 bytes or the answer comes back truncated), a
//! per-attempt timeout, and one retry after a UDP timeout. We keep the raw bytes so that callers
//! can map response codes and TSIG errors themselves and verify TSIG over the exact bytes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

use super::error::{DnsError, ServerRef};

/// Timeouts of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Per UDP attempt.
    pub udp: Duration,
    /// UDP attempts before giving up (a timeout is retried, an error is not).
    pub udp_attempts: u32,
    /// For the whole TCP exchange (connect, send, receive).
    pub tcp: Duration,
}

impl Timeouts {
    /// RFC 2136 updates: a lost UDP datagram is retried once.
    pub const UPDATE: Timeouts = Timeouts {
        udp: Duration::from_secs(3),
        udp_attempts: 2,
        tcp: Duration::from_secs(10),
    };
    /// Recursive lookups for discovery.
    pub const LOOKUP: Timeouts = Timeouts {
        udp: Duration::from_secs(2),
        udp_attempts: 2,
        tcp: Duration::from_secs(5),
    };
    /// One propagation poll: we poll again soon anyway.
    pub const POLL: Timeouts = Timeouts {
        udp: Duration::from_millis(1500),
        udp_attempts: 1,
        tcp: Duration::from_secs(3),
    };
}

/// Largest request sent over UDP.
const MAX_UDP_REQUEST: usize = 512;

/// Send `request` (whose header ID is its first two bytes) to `server` and return the raw answer
/// with the same ID.
pub async fn exchange(
    server: &ServerRef,
    request: &[u8],
    timeouts: Timeouts,
) -> Result<Vec<u8>, DnsError> {
    if request.len() < 12 {
        return Err(DnsError::Malformed {
            server: server.clone(),
            reason: "request shorter than a DNS header".to_string(),
        });
    }
    if request.len() > MAX_UDP_REQUEST {
        return tcp_exchange(server, request, timeouts.tcp).await;
    }
    let started = Instant::now();
    let socket = udp_socket(server).await?;
    let mut last_timeout = false;
    for attempt in 0..timeouts.udp_attempts.max(1) {
        if attempt > 0 {
            tracing::debug!(server = %server, "no UDP answer, retrying once");
        }
        socket
            .send(request)
            .await
            .map_err(|e| io_error(server, e))?;
        match timeout(timeouts.udp, recv_matching(&socket, request)).await {
            Ok(Ok(answer)) => {
                if truncated(&answer) {
                    tracing::debug!(server = %server, "truncated UDP answer, retrying over TCP");
                    return tcp_exchange(server, request, timeouts.tcp).await;
                }
                return Ok(answer);
            }
            Ok(Err(e)) => return Err(io_error(server, e)),
            Err(_) => last_timeout = true,
        }
    }
    debug_assert!(last_timeout);
    Err(DnsError::NoAnswer {
        server: server.clone(),
        after: started.elapsed(),
    })
}

async fn udp_socket(server: &ServerRef) -> Result<UdpSocket, DnsError> {
    let local: SocketAddr = if server.addr().is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| io_error(server, e))?;
    // Connected: the kernel drops datagrams from other sources and reports ICMP refusals.
    socket
        .connect(server.addr())
        .await
        .map_err(|e| io_error(server, e))?;
    Ok(socket)
}

/// Receive until a datagram answers our ID (others are stale or spoofed: ignored).
async fn recv_matching(socket: &UdpSocket, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..n], request) {
            return Ok(buf[..n].to_vec());
        }
        tracing::debug!("ignoring a UDP datagram that does not answer our query");
    }
}

fn is_answer_to(answer: &[u8], request: &[u8]) -> bool {
    answer.len() >= 12 && answer[..2] == request[..2] && answer[2] & 0x80 != 0
}

fn truncated(answer: &[u8]) -> bool {
    answer.len() >= 3 && answer[2] & 0x02 != 0
}

async fn tcp_exchange(
    server: &ServerRef,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, DnsError> {
    let started = Instant::now();
    let work = async {
        let mut stream = TcpStream::connect(server.addr()).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(request.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "request over 65535 bytes"))?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await?;
        loop {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut answer).await?;
            if is_answer_to(&answer, request) {
                return Ok::<_, io::Error>(answer);
            }
        }
    };
    match timeout(limit, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(io_error(server, e)),
        Err(_) => Err(DnsError::NoAnswer {
            server: server.clone(),
            after: started.elapsed(),
        }),
    }
}

fn io_error(server: &ServerRef, e: io::Error) -> DnsError {
    let reason = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => e.to_string(),
    };
    DnsError::Unreachable {
        server: server.clone(),
        reason,
    }
}

/// Ask one server directly (RD=0, EDNS payload 1232) for `name`/`rtype` and parse its answer: how
/// renewd talks to authoritative servers (propagation polls, SOA serial checks).
pub async fn query_direct(
    server: &ServerRef,
    name: &str,
    rtype: hickory_proto::rr::RecordType,
    timeouts: Timeouts,
) -> Result<hickory_proto::op::Message, DnsError> {
    use hickory_proto::op::{Edns, Message, Query};
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(super::name::to_fqdn(name)?, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let request = msg.to_vec().map_err(|e| DnsError::InvalidName {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    let raw = exchange(server, &request, timeouts).await?;
    Message::from_vec(&raw).map_err(|e| DnsError::Malformed {
        server: server.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_matching() {
        let req = [0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut ans = req;
        assert!(!is_answer_to(&ans, &req), "QR bit not set");
        ans[2] |= 0x80;
        assert!(is_answer_to(&ans, &req));
        ans[1] = 0x35;
        assert!(!is_answer_to(&ans, &req));
        assert!(!truncated(&req));
        assert!(truncated(&[0, 0, 0x82]));
    }

    #[tokio::test]
    async fn silent_server_times_out_after_retry() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = ServerRef::new("silent", silent.local_addr().unwrap());
        let t = Timeouts {
            udp: Duration::from_millis(100),
            udp_attempts: 2,
            tcp: Duration::from_millis(100),
        };
        let req = [0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let err = exchange(&server, &req, t).await.unwrap_err();
        match &err {
            DnsError::NoAnswer { after, .. } => assert!(*after >= Duration::from_millis(200)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("no answer from silent (127.0.0.1:"));
    }
}
