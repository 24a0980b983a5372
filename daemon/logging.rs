//! Logging: native journald records under systemd, readable `key=value` lines on stderr otherwise.
//!
//! # Journal vocabulary
//!
//! Every renewal event carries these fields (tracing field name on the left; journald upper-cases
//! it, renewd sends no prefix). Values are plain text; events leave a field out when it is unknown
//! at that point (a failure before the order was placed has no `ACME_ORDER_URL`).
//!
//! | journal field | tracing field | value |
//! |---|---|---|
//! | `CERT_NAME` | `cert_name` | the spec's NAME (file stem in `certs.d`) |
//! | `CERT_DOMAINS` | `cert_domains` | the spec's domains, comma-separated, in spec order (first = CN) |
//! | `ACME_ACCOUNT` | `acme_account` | the account's name in `renewd.yaml` |
//! | `ACME_ORDER_URL` | `acme_order_url` | the ACME order URL |
//! | `CERT_SERIAL` | `cert_serial` | serial of the new certificate, uppercase hex (as `openssl x509 -serial`) |
//! | `CERT_NOT_AFTER` | `cert_not_after` | notAfter of the new certificate, RFC 3339 UTC |
//! | `DNS_ZONE` | `dns_zone` | the zone(s) updated for DNS-01 (or holding the dns-persist-01 records), comma-separated |
//! | `ACME_CHALLENGE` | `acme_challenge` | on `renewed`: how control was proven, `dns-01` or `dns-persist-01` |
//! | `RENEWAL_PHASES` | `renewal_phases` | on `renewed`: where the attempt's time went, `order 41ms, dns-update 3ms, propagation 602ms, ...` |
//! | `MESSAGE_ID` | `message_id` | one of the IDs below |
//! | `MESSAGE` | the event's message | human-readable text |
//!
//! renewd also sets `SYSLOG_IDENTIFIER=renewd`; tracing-journald adds `PRIORITY`, `TARGET` (the
//! Rust module), `CODE_FILE`, `CODE_LINE`, and journald the trusted `_PID`, `_SYSTEMD_UNIT`, ...
//! Levels map to priorities as syslog does: error 3, warn 4, info 6, debug and trace 7.
//!
//! | event | `MESSAGE_ID` | level |
//! |---|---|---|
//! | certificate renewed (issued and written to `live/`) | `30ff3b5f94c8f05f5de692a9a8262542` | info |
//! | renewal failed | `6a15c1054fa35ec74ebebf91b9ba03f1` | error |
//! | certificate deployed to its deploy targets | `60c8179a773cc55576ea163e40221cd1` | info |
//! | reload (or its config test) failed, previous files restored | `6f74a7ad565e51f54d4cab0fa20a1f1d` | error |
//! | daemon started (first plan made) | `3f45efb0bce240e1999b5898d54556c9` | info |
//! | daemon stopping | `c04b8b1e63e8bb30cf9954b99af52106` | info |
//! | configuration reloaded (SIGHUP, or a spec changed) | `b19ac125c4160f7115ac108dad5b99cb` | info |
//! | configuration invalid, previous one kept | `4324ddf4a69cbd2ce77ffa7a71f7a52a` | error |
//!
//! Examples: `journalctl -u renewd CERT_NAME=gitlab`,
//! `journalctl MESSAGE_ID=6a15c1054fa35ec74ebebf91b9ba03f1 -o verbose` (every failed renewal).
//!
//! # Emitting an event
//!
//! ```ignore
//! use renewd::logging::message_id;
//! tracing::info!(
//!     message_id = message_id::RENEWED,
//!     cert_name = %spec.name,
//!     cert_domains = %spec.domains.join(","),
//!     acme_account = %account,
//!     acme_order_url = %order_url,
//!     cert_serial = %serial,
//!     cert_not_after = %not_after,
//!     dns_zone = %zones.join(","),
//!     "certificate {} renewed, valid until {}", spec.name, not_after,
//! );
//! ```
//!
//! Fields can also sit on a span around the renewal (`tracing::info_span!("renew", cert_name =
//! ...)`): tracing-journald copies span fields into every event inside it, under the same names.
//! Use `%` (Display) or `&str` values: `?` (Debug) would put quotes and brackets into the journal.
//! Field names must be ASCII letters, digits and `_`; journald drops names starting with `_`
//! (trusted fields) and tracing-journald strips leading underscores, so events cannot forge them.
//!
//! # Where logs go ([`init`])
//!
//! systemd connects a service's stderr to journald's stream socket and sets
//! `JOURNAL_STREAM=DEV:INODE` of that socket. When `JOURNAL_STREAM` matches stderr (fstat of fd 2)
//! events go natively to `/run/systemd/journal/socket` with their fields. Otherwise (terminal,
//! pipe, a file, or stderr redirected by a reload command) a fmt layer writes readable lines:
//! `TIME LEVEL message key=value ...` (no time for the one-shot CLI commands; ANSI colours only on
//! a terminal; `message_id` is left out of these lines).

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The `SYSLOG_IDENTIFIER` of renewd's journal records (`journalctl -t renewd`).
pub const SYSLOG_IDENTIFIER: &str = "renewd";

/// The environment variable that overrides the default filter (`EnvFilter` syntax, e.g.
/// `RENEWD_LOG=renewd::dns=trace,info`).
pub const FILTER_ENV: &str = "RENEWD_LOG";

/// Fixed `MESSAGE_ID`s (random 128-bit IDs, lowercase hex as journald prints them), one per event
/// kind; see the table in the module documentation. Never change one: users filter on them.
pub mod message_id {
    /// A certificate was issued and written to `live/`.
    pub const RENEWED: &str = "30ff3b5f94c8f05f5de692a9a8262542";
    /// A renewal attempt failed (it will be retried; the error says when).
    pub const FAILED: &str = "6a15c1054fa35ec74ebebf91b9ba03f1";
    /// A certificate was written to its deploy targets.
    pub const DEPLOYED: &str = "60c8179a773cc55576ea163e40221cd1";
    /// A reload (or its config test) failed; the previous files were put back.
    pub const RELOAD_FAILED: &str = "6f74a7ad565e51f54d4cab0fa20a1f1d";
    /// The daemon started and made its first plan.
    pub const STARTED: &str = "3f45efb0bce240e1999b5898d54556c9";
    /// The daemon is stopping (SIGTERM/SIGINT).
    pub const STOPPING: &str = "c04b8b1e63e8bb30cf9954b99af52106";
    /// The configuration was reloaded (SIGHUP, or a spec in `certs_dir` changed).
    pub const CONFIG_RELOADED: &str = "b19ac125c4160f7115ac108dad5b99cb";
    /// The new configuration (or one spec) is invalid; the previous one keeps running.
    pub const CONFIG_INVALID: &str = "4324ddf4a69cbd2ce77ffa7a71f7a52a";

    /// Every ID with its name (for tests and documentation).
    pub const ALL: [(&str, &str); 8] = [
        ("RENEWED", RENEWED),
        ("FAILED", FAILED),
        ("DEPLOYED", DEPLOYED),
        ("RELOAD_FAILED", RELOAD_FAILED),
        ("STARTED", STARTED),
        ("STOPPING", STOPPING),
        ("CONFIG_RELOADED", CONFIG_RELOADED),
        ("CONFIG_INVALID", CONFIG_INVALID),
    ];
}

/// The journal fields of renewal events: (tracing field name, journal field name).
pub const FIELDS: [(&str, &str); 8] = [
    ("cert_name", "CERT_NAME"),
    ("cert_domains", "CERT_DOMAINS"),
    ("acme_account", "ACME_ACCOUNT"),
    ("acme_order_url", "ACME_ORDER_URL"),
    ("cert_serial", "CERT_SERIAL"),
    ("cert_not_after", "CERT_NOT_AFTER"),
    ("dns_zone", "DNS_ZONE"),
    ("message_id", "MESSAGE_ID"),
];

/// Where [`init`] sent the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Native journald records (stderr is systemd's journal stream).
    Journald,
    /// Readable lines on stderr.
    Stderr,
    /// A global subscriber was already installed (tests); nothing changed.
    AlreadySet,
}

/// The filter used without `RENEWD_LOG`: the daemon logs renewd's own info events; the one-shot
/// commands only warnings unless `-v` (info) or `-vv` (debug) is given.
pub fn default_filter(verbosity: u8, daemon: bool) -> &'static str {
    match (daemon, verbosity) {
        (true, 0) => "renewd=info,warn",
        (true, 1) => "renewd=debug,info",
        (true, _) => "renewd=trace,debug",
        (false, 0) => "warn",
        (false, 1) => "renewd=info,warn",
        (false, 2) => "renewd=debug,info",
        (false, _) => "renewd=trace,debug",
    }
}

/// Installs the global subscriber: journald when stderr is systemd's journal stream (see the
/// module documentation), readable lines on stderr otherwise. `daemon`: `renewd run` (info by
/// default, timestamps on stderr); else a one-shot command (warnings by default, no timestamps).
/// `RENEWD_LOG` overrides the filter; an invalid one is reported and the default used.
pub fn init(verbosity: u8, daemon: bool) -> Sink {
    let default = default_filter(verbosity, daemon);
    let (filter, bad_filter) = match std::env::var(FILTER_ENV) {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default), Some(format!("{spec:?}: {e}"))),
        },
        Err(_) => (EnvFilter::new(default), None),
    };

    let mut journald_error = None;
    let sink = if stderr_is_journal_stream() {
        match journald_layer() {
            Ok(layer) => {
                let set = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .is_ok();
                if set {
                    Sink::Journald
                } else {
                    Sink::AlreadySet
                }
            }
            Err(e) => {
                // stderr still ends up in the journal (as plain lines); say why it is not native.
                journald_error = Some(e.to_string());
                init_stderr(filter, daemon)
            }
        }
    } else {
        init_stderr(filter, daemon)
    };

    if let Some(e) = bad_filter {
        tracing::warn!("ignoring invalid {FILTER_ENV} {e}; using {default:?}");
    }
    if let Some(e) = journald_error {
        tracing::warn!(error = %e, "stderr is the journal but its native socket is unusable; logging plain lines");
    }
    sink
}

fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    Ok(tracing_journald::layer()?
        // tracing-journald 0.3 prefixes user fields with "F_" by default (F_CERT_NAME).
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
        // Its default maps INFO to notice (5); use the syslog convention so that `journalctl -p
        // info` means what it says and routine renewals are not "notice".
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}

fn init_stderr(filter: EnvFilter, daemon: bool) -> Sink {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .fmt_fields(ReadableFields);
    let registry = tracing_subscriber::registry().with(filter);
    let set = if daemon {
        registry.with(layer).try_init().is_ok()
    } else {
        registry.with(layer.without_time()).try_init().is_ok()
    };
    if set {
        Sink::Stderr
    } else {
        Sink::AlreadySet
    }
}

/// Whether `JOURNAL_STREAM` names the file stderr is connected to (systemd sets it for services
/// whose stdout/stderr go to the journal; a child whose stderr was redirected must not log
/// natively).
pub fn stderr_is_journal_stream() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a full `struct stat` into the buffer when it returns 0.
    let st = unsafe {
        if libc::fstat(libc::STDERR_FILENO, st.as_mut_ptr()) != 0 {
            return false;
        }
        st.assume_init()
    };
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// `JOURNAL_STREAM`'s `DEV:INODE` (both decimal).
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Field formatting for the stderr lines: the message first, then `key=value` (logfmt quoting:
/// values with spaces, quotes or `=` and empty values are quoted), `message_id` left out.
struct ReadableFields;

impl<'w> FormatFields<'w> for ReadableFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = ReadableVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct ReadableVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl ReadableVisitor<'_> {
    fn put(&mut self, field: &Field, value: &str) {
        if self.result.is_err() || field.name() == "message_id" {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{value}")
        } else if needs_quotes(value) {
            write!(self.writer, "{sep}{}={value:?}", field.name())
        } else {
            write!(self.writer, "{sep}{}={value}", field.name())
        };
    }
}

impl Visit for ReadableVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, &text);
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn message_ids_are_distinct_128_bit_lowercase_hex() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, id) in message_id::ALL {
            assert_eq!(id.len(), 32, "{name}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{name}: {id}"
            );
            assert!(seen.insert(id), "{name} reuses {id}");
        }
        // The module table documents every ID.
        let doc = include_str!("logging.rs");
        for (name, id) in message_id::ALL {
            assert!(
                doc.contains(&format!("| `{id}` |")),
                "{name} not in the table"
            );
        }
        for (tracing_name, journal_name) in FIELDS {
            assert_eq!(tracing_name.to_ascii_uppercase(), journal_name);
            assert!(doc.contains(&format!("| `{journal_name}` | `{tracing_name}` |")));
        }
    }

    #[test]
    fn default_filters() {
        assert_eq!(default_filter(0, true), "renewd=info,warn");
        assert_eq!(default_filter(0, false), "warn");
        assert_eq!(default_filter(1, false), "renewd=info,warn");
        assert_eq!(default_filter(2, false), "renewd=debug,info");
        for v in 0..4 {
            for d in [true, false] {
                EnvFilter::try_new(default_filter(v, d)).unwrap();
            }
        }
    }

    #[test]
    fn journal_stream_parsing() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8:123456\n"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stderr_lines_carry_fields_as_key_value() {
        let buf = Buf::default();
        let w = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || w.clone())
                .with_target(false)
                .with_ansi(false)
                .without_time()
                .fmt_fields(ReadableFields),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("renew", cert_name = "gitlab");
            let _g = span.enter();
            tracing::info!(
                message_id = message_id::RENEWED,
                cert_domains = "gitlab.example.ac.jp,www.example.ac.jp",
                acme_order_url = %"https://ca.example/order/1",
                error = %"connection refused: a b",
                empty = "",
                n = 3,
                "certificate {} renewed",
                "gitlab"
            );
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out.trim(),
            "INFO renew{cert_name=gitlab}: certificate gitlab renewed \
             cert_domains=gitlab.example.ac.jp,www.example.ac.jp \
             acme_order_url=https://ca.example/order/1 error=\"connection refused: a b\" \
             empty=\"\" n=3",
            "{out}"
        );
    }
}
