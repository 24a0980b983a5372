//! Everything renewd says to DNS: zone discovery, RFC 2136 updates signed with TSIG, and the
//! propagation check against every authoritative server.
//!
//! Wire format and TSIG crypto come from hickory-proto; the transport is our own
//! ([`transport`]: UDP, TCP on truncation or for large requests, timeouts, one retry) so that
//! every raw answer can be inspected and turned into a [`DnsError`] an administrator can act on
//! (BADKEY, BADSIG, BADTIME with the clock offset, REFUSED with the update-policy line to add,
//! NOTAUTH, NOTZONE, unreachable servers).
//!
//! Names are handled the BIND way ([`name`]): case-insensitive, trailing dot optional, kept
//! lower-case without the dot inside renewd.

pub mod batch;
pub mod discovery;
pub mod error;
pub mod name;
pub mod propagation;
pub mod resolver;
pub mod soa;
pub mod transport;
pub mod update;

#[cfg(test)]
mod bed_tests;

pub use batch::Batcher;
pub use discovery::{
    authoritative_servers, find_target, find_target_at, AuthServer, ChallengeTarget,
};
pub use error::{DnsError, Lagging, ServerRef};
pub use propagation::{poll_delays, query_txt, serving, wait_for_txt, Propagation, Served};
pub use resolver::Resolver;
pub use update::{Change, Op, Updater};
