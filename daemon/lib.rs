//! renewd: keeps certificates valid with ACME DNS-01 through RFC 2136 (TSIG) updates to a hidden primary.
//!
//! Module map (see ARCHITECTURE.md for the invariants each one keeps):
//! - [`cli`]: the command line definitions (clap), also the source of the man page and completions.
//! - [`config`]: raw YAML → validated [`config::Settings`]; the only place that reads config files.
//! - [`dns`]: zone discovery, RFC 2136 + TSIG updates, propagation checks against authoritative servers.
//! - [`dnstest`]: `renewd dns-test`: add, time on every authoritative server, and delete a test TXT; explain failures.
//! - [`acme`]: ACME accounts (EAB, credentials on disk), the bounded HTTP client, ARI, the CA's errors as data.
//! - [`phase`]: the phases of a renewal attempt, named by every error and deadline.
//! - [`fsread`]: every file renewd reads: capped in size, regular files only.
//! - [`live`]: the live certificate a plan starts from (facts, key match) and why it may be unusable.
//! - [`certs`]: private keys, CSRs, and facts read from certificates with x509-parser.
//! - [`fsread`]: every file renewd reads: regular files only, capped in size, never blocking on a FIFO.
//! - [`state`]: the state directory layout and atomic file writes.
//! - [`journal`]: the cleanup journal of published TXT values (crash safety).
//! - [`metrics`]: Prometheus metrics (textfile and loopback listener) from the daemon's plan and attempts.
//! - [`import`]: `renewd import certbot`: certbot renewal confs + rfc2136.ini → renewd config, live certificates.
//! - [`deploy`]: deploy targets written all or nothing, then config tests and reloads; rollback.
//! - [`reload`]: reload kinds (nginx, apache, gitlab, systemd, command) and certbot-style hooks.
//! - [`renew`]: one renewal from start to finish, and running many of them.
//! - [`core`]: the event loop of `renewd run` and `renewd renew`: one state per certificate, one worker pool.
//! - [`scheduler`]: the plan (when each certificate is due, backoff after failures) as a pure function.
//! - [`systemd`]: sd_notify (ready, status, reload, watchdog); keeps NOTIFY_SOCKET from children.
//! - [`logging`]: journald or stderr logging, and the journal vocabulary (fields, MESSAGE_IDs).

pub mod acme;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod daemon;
pub mod deploy;
pub mod dns;
pub mod dnstest;
pub mod fsread;
pub mod import;
pub mod journal;
pub mod jws;
pub mod live;
pub mod logging;
pub mod manage;
pub mod metrics;
pub mod persist;
pub mod phase;
pub mod reload;
pub mod renew;
pub mod scheduler;
pub mod state;
pub mod status;
pub mod systemd;
#[cfg(test)]
mod testutil;
