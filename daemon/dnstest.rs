//! `renewd dns-test SERVER [--zone Z] [--name N]`: the manual nsupdate test of the reference
//! deployment as one command.
//!
//! It picks the owner name, finds the zone (reporting a CNAME chain and comparing with an explicit
//! zone), lists the zone's authoritative servers and compares their SOA serials with the primary's,
//! adds a random test TXT with the server's TSIG key (append), times each authoritative server until
//! it serves the value (concurrently, within `propagation.timeout`), checks that every server's serial
//! follows the primary, and deletes the value again: always once it may have been published, also
//! after failures and on Ctrl-C. Every failure is explained in words an administrator can act on (most
//! come from [`DnsError`]'s texts).
//!
//! The report is a stream of [`Line`]s (one per step or server) handed to the caller as they happen,
//! then a [`Summary`]. Rendering is plain text (`ok`/`FAIL`) or, on a terminal, ✓/✗ in colour.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::config::settings::{DnsServerSettings, Settings};
use crate::dns::discovery::{cname_chain, find_zone};
use crate::dns::name;
use crate::dns::propagation::{poll_delays, query_txt_at};
use crate::dns::soa::{query_soa, serial_behind, SoaAnswer};
use crate::dns::transport::Timeouts;
use crate::dns::{authoritative_servers, query_txt, AuthServer, DnsError, ServerRef};
use crate::dns::{Resolver, Updater};

/// Prefix of the test values, so that a left-over record explains itself.
pub const VALUE_PREFIX: &str = "renewd-dns-test-";

/// Longest wait for a secondary that is behind the primary before the test starts (it may just be
/// waiting for a NOTIFY that BIND's `notify-delay` holds back after a recent update).
const CATCH_UP_GRACE: Duration = Duration::from_secs(15);

/// Poll interval for the first [`FAST_POLLS_FOR`] after the update, so the times shown are close to
/// the real ones; then the propagation check's usual backoff.
const FAST_POLL: Duration = Duration::from_millis(20);
const FAST_POLLS_FOR: Duration = Duration::from_secs(2);

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A `dns_servers` entry.
    pub server: String,
    /// `--zone`: the zone to update (else discovered).
    pub zone: Option<String>,
    /// `--name`: a domain, or an `_acme-challenge.` owner name.
    pub name: Option<String>,
    /// `--persist`: only show the dns-persist-01 record of the name on every authoritative server
    /// (nothing is written).
    pub persist: bool,
}

/// Bad usage or configuration: exit status 2, nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Fail,
    /// Not a check: context such as "waiting up to 30 s".
    Info,
}

/// One line of the report: a step, or one server in a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub mark: Mark,
    /// `name`, `zone`, `cname`, `ns`, `primary`, `serial`, `add`, `served`, `delete`, ...
    pub step: &'static str,
    pub text: String,
    /// What to do about it, one line each (failures).
    pub hints: Vec<String>,
}

const STEP_WIDTH: usize = 8;

impl Line {
    /// `fancy`: ✓/✗ in colour (a terminal); otherwise `ok  `/`FAIL`.
    pub fn render(&self, fancy: bool) -> String {
        let (mark, width) = match (self.mark, fancy) {
            (Mark::Ok, true) => ("\x1b[32m✓\x1b[0m", 1),
            (Mark::Fail, true) => ("\x1b[31m✗\x1b[0m", 1),
            (Mark::Info, true) => ("·", 1),
            (Mark::Ok, false) => ("ok  ", 4),
            (Mark::Fail, false) => ("FAIL", 4),
            (Mark::Info, false) => ("    ", 4),
        };
        let mut s = format!("{mark} {:<STEP_WIDTH$} {}", self.step, self.text);
        let indent = " ".repeat(width + STEP_WIDTH + 2);
        for hint in &self.hints {
            s.push('\n');
            s.push_str(&indent);
            s.push_str(hint);
        }
        s
    }
}

/// The end of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub server: String,
    pub checks: usize,
    /// `step what` of every failed check.
    pub failed: Vec<String>,
    /// The slowest authoritative server and its time, when the value propagated anywhere.
    pub slowest: Option<(String, Duration)>,
    pub interrupted: bool,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.failed.is_empty() && !self.interrupted && self.checks > 0
    }

    pub fn render(&self, fancy: bool) -> String {
        let slowest = match &self.slowest {
            Some((s, d)) => format!("; slowest server {s} after {} ms", d.as_millis()),
            None => String::new(),
        };
        if self.passed() {
            let word = if fancy {
                "\x1b[32mPASSED\x1b[0m"
            } else {
                "PASSED"
            };
            format!(
                "{word}: dns server {} passed all {} checks{slowest}",
                self.server, self.checks
            )
        } else {
            let word = if fancy {
                "\x1b[31mFAILED\x1b[0m"
            } else {
                "FAILED"
            };
            let mut s = format!(
                "{word}: dns server {}: {} of {} checks failed",
                self.server,
                self.failed.len(),
                self.checks
            );
            if !self.failed.is_empty() {
                s.push_str(&format!(" ({})", self.failed.join(", ")));
            }
            if self.interrupted {
                s.push_str("; interrupted");
            }
            s.push_str(&slowest);
            s
        }
    }
}

/// Collects the lines, counts checks, and hands each line to the caller at once.
struct Reporter<'a> {
    out: &'a mut dyn FnMut(&Line),
    summary: Summary,
}

impl Reporter<'_> {
    fn emit(&mut self, mark: Mark, step: &'static str, text: String, hints: Vec<String>) {
        let line = Line {
            mark,
            step,
            text,
            hints,
        };
        (self.out)(&line);
    }

    fn ok(&mut self, step: &'static str, text: impl Into<String>) {
        self.summary.checks += 1;
        self.emit(Mark::Ok, step, text.into(), Vec::new());
    }

    /// `what` names the failed check in the summary (a server, or empty for the step itself).
    fn fail(
        &mut self,
        step: &'static str,
        what: &str,
        text: impl Into<String>,
        hints: Vec<String>,
    ) {
        self.summary.checks += 1;
        self.summary.failed.push(if what.is_empty() {
            step.to_string()
        } else {
            format!("{step} {what}")
        });
        self.emit(Mark::Fail, step, text.into(), hints);
    }

    fn info(&mut self, step: &'static str, text: impl Into<String>) {
        self.emit(Mark::Info, step, text.into(), Vec::new());
    }
}

/// `dns-test SERVER --persist [--name DOMAIN]`: the dns-persist-01 record of DOMAIN (default: the first
/// domain of the first dns-persist-01 spec using SERVER) as every authoritative server of its zone
/// serves it. A server passes when it serves a value naming this certificate's account (its URL from
/// `state_dir/accounts/`); read-only, so it also works with the TSIG key file removed.
async fn run_persist(
    settings: &Settings,
    opts: &Options,
    out: &mut dyn FnMut(&Line),
) -> Result<Summary, UsageError> {
    server_settings(settings, &opts.server)?;
    let users: Vec<&crate::config::CertSpec> = settings
        .certs
        .values()
        .filter(|s| s.dns == opts.server)
        .map(|s| &**s)
        .collect();
    let (domain, spec) = match &opts.name {
        Some(n) => {
            let n = name::normalize(n.trim_start_matches(&format!("{}.", name::PERSIST_LABEL)))
                .map_err(|e| UsageError(format!("--name: {e}")))?;
            let n = n.trim_start_matches("*.").to_string();
            let spec = users
                .iter()
                .find(|s| s.domains.iter().any(|d| d.trim_start_matches("*.") == n))
                .copied();
            (n, spec)
        }
        None => {
            let spec = users
                .iter()
                .find(|s| s.challenge == crate::config::ChallengeKind::DnsPersist01)
                .or(users.first())
                .copied()
                .ok_or_else(|| {
                    UsageError(format!(
                        "no spec uses dns server `{}`: give the name with `--name DOMAIN`",
                        opts.server
                    ))
                })?;
            (
                spec.domains[0].trim_start_matches("*.").to_string(),
                Some(spec),
            )
        }
    };
    let account_uri = spec
        .and_then(|s| settings.accounts.get(&s.account))
        .and_then(|a| {
            crate::acme::stored_info(a, &crate::state::StateDir::new(&settings.state_dir)).ok()
        })
        .flatten()
        .map(|info| info.url);
    let mut r = Reporter {
        out,
        summary: Summary {
            server: opts.server.clone(),
            ..Summary::default()
        },
    };
    let resolver = match Resolver::from_config(&settings.resolver) {
        Ok(res) => res,
        Err(e) => {
            r.fail("resolver", "", e.to_string(), vec![]);
            return Ok(r.summary);
        }
    };
    let zone_hint = spec.and_then(|s| s.zone.as_deref());
    let target = match crate::dns::find_target_at(
        &resolver,
        name::PERSIST_LABEL,
        &domain,
        zone_hint,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            r.fail("zone", "", e.to_string(), vec![]);
            return Ok(r.summary);
        }
    };
    let via = if target.owner == target.challenge_name {
        String::new()
    } else {
        format!(" (CNAME to {})", target.owner)
    };
    r.ok(
        "zone",
        format!("{}{via} is in zone {}", target.challenge_name, target.zone),
    );
    match &account_uri {
        Some(u) => r.info("account", format!("a value must name accounturi={u}")),
        None => r.info(
            "account",
            "no stored account for this name yet: showing the values only",
        ),
    }
    let servers =
        match authoritative_servers(&resolver, &target.zone, &settings.propagation.nameservers)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                r.fail("servers", "", e.to_string(), vec![]);
                return Ok(r.summary);
            }
        };
    for (server, served) in crate::dns::serving(&servers, &target.owner).await {
        let label = format!("{} ({})", server.name, server.addr);
        match served {
            crate::dns::Served::Trouble(t) => {
                r.fail("record", &server.name, format!("{label}: {t}"), vec![]);
            }
            crate::dns::Served::Txt(values) => {
                let shown = if values.is_empty() {
                    "no TXT record".to_string()
                } else {
                    values
                        .iter()
                        .map(|v| format!("\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let ours = account_uri.as_ref().is_none_or(|u| {
                    values.iter().any(|v| {
                        crate::persist::parse(v)
                            .is_some_and(|p| p.params.get("accounturi") == Some(u))
                    })
                });
                if ours && !values.is_empty() {
                    r.ok("record", format!("{label}: {shown}"));
                } else {
                    r.fail(
                        "record",
                        &server.name,
                        format!("{label}: {shown}"),
                        vec!["renewd writes the record at the next renewal of a dns-persist-01 certificate (`renewd renew --force NAME`)".to_string()],
                    );
                }
            }
        }
    }
    Ok(r.summary)
}

/// Where the name to test comes from, and the explicit zone that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `_acme-challenge.<domain>` (normalized).
    pub challenge: String,
    /// For the report: "--name", "the first domain of spec `host1`".
    pub origin: String,
    /// An explicit zone and where it was set ("--zone", "`zone:` of spec `host1`").
    pub zone: Option<(String, String)>,
}

/// One spec as far as the choice of a name is concerned: (name, domains, dns server, zone).
pub type SpecView<'a> = (&'a str, &'a [String], &'a str, Option<&'a str>);

/// The owner name and explicit zone for `opts`, given the specs (sorted by name).
pub fn choose(opts: &Options, specs: &[SpecView<'_>]) -> Result<Choice, UsageError> {
    let bad = |e: DnsError| UsageError(e.to_string());
    let users: Vec<&SpecView<'_>> = specs
        .iter()
        .filter(|(_, _, dns, _)| *dns == opts.server)
        .collect();
    let (challenge, origin, spec_zone) = match &opts.name {
        Some(n) => {
            let normalized = name::normalize(n).map_err(bad)?;
            let challenge = if normalized.starts_with("_acme-challenge.") {
                normalized
            } else {
                name::challenge_name(&normalized).map_err(bad)?
            };
            // A spec of this server that has this name and an explicit zone: test what renew does.
            let spec_zone = users.iter().find_map(|(spec, domains, _, zone)| {
                let hit = domains
                    .iter()
                    .any(|d| name::challenge_name(d).ok().as_deref() == Some(challenge.as_str()));
                match (hit, zone) {
                    (true, Some(z)) => Some((z.to_string(), format!("`zone:` of spec `{spec}`"))),
                    _ => None,
                }
            });
            (challenge, "--name".to_string(), spec_zone)
        }
        None => {
            let Some((spec, domains, _, zone)) = users.iter().find(|(_, d, _, _)| !d.is_empty())
            else {
                return Err(UsageError(format!(
                    "no spec uses dns server `{}`, so there is no name to test: give one with \
                     `--name DOMAIN` (the test record goes to `_acme-challenge.DOMAIN`)",
                    opts.server
                )));
            };
            let challenge = name::challenge_name(&domains[0]).map_err(bad)?;
            let origin = format!("the first domain of spec `{spec}`");
            let zone = zone.map(|z| (z.to_string(), format!("`zone:` of spec `{spec}`")));
            (challenge, origin, zone)
        }
    };
    let zone = match &opts.zone {
        Some(z) => Some((name::normalize(z).map_err(bad)?, "--zone".to_string())),
        None => spec_zone,
    };
    if let Some((z, from)) = &zone {
        let z = name::normalize(z).map_err(bad)?;
        if !name::is_inside(&challenge, &z) {
            return Err(UsageError(format!(
                "`{challenge}` is not inside zone `{z}` ({from}): give a zone that contains it, or \
                 leave the zone out to let renewd discover it"
            )));
        }
    }
    Ok(Choice {
        challenge,
        origin,
        zone,
    })
}

/// The dns server `name` of the configuration, or a usage error listing the known ones.
pub fn server_settings<'s>(
    settings: &'s Settings,
    name: &str,
) -> Result<&'s DnsServerSettings, UsageError> {
    settings.dns_servers.get(name).ok_or_else(|| {
        let known: Vec<&str> = settings.dns_servers.keys().map(String::as_str).collect();
        UsageError(format!(
            "no dns server named `{name}` in {}; known: {}",
            settings.config_path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// Runs the test and reports each line through `out` as it happens. `Err` only for bad usage
/// (before anything was sent).
pub async fn run(
    settings: &Settings,
    opts: &Options,
    out: &mut dyn FnMut(&Line),
) -> Result<Summary, UsageError> {
    if opts.persist {
        return run_persist(settings, opts, out).await;
    }
    let server = server_settings(settings, &opts.server)?;
    let specs: Vec<SpecView<'_>> = settings
        .certs
        .values()
        .map(|s| {
            (
                s.name.as_str(),
                s.domains.as_slice(),
                s.dns.as_str(),
                s.zone.as_deref(),
            )
        })
        .collect();
    let choice = choose(opts, &specs)?;
    let mut r = Reporter {
        out,
        summary: Summary {
            server: opts.server.clone(),
            ..Summary::default()
        },
    };
    test(settings, server, &choice, &mut r).await;
    Ok(r.summary)
}

/// "NAME at ADDRESS, TSIG key `K` (ALG, from FILE)", or that it has no key.
fn describe_server(server: &DnsServerSettings) -> String {
    let key = match &server.tsig {
        Some(k) => format!(
            "TSIG key `{}` ({}, from {})",
            k.name,
            k.algorithm.as_str(),
            server.tsig_key_file.display()
        ),
        None => format!(
            "no TSIG key ({} does not exist)",
            server.tsig_key_file.display()
        ),
    };
    format!("{} at {}, {key}", server.name, server.address)
}

async fn test(
    settings: &Settings,
    server: &DnsServerSettings,
    choice: &Choice,
    r: &mut Reporter<'_>,
) {
    r.info("server", describe_server(server));
    r.ok("name", format!("{} ({})", choice.challenge, choice.origin));

    let resolver = match Resolver::from_config(&settings.resolver) {
        Ok(res) => res,
        Err(e) => return r.fail("resolver", "", e.to_string(), Vec::new()),
    };
    let updater = match Updater::new(server, &resolver).await {
        Ok(u) => u,
        Err(e) => {
            return r.fail(
                "primary",
                "",
                format!("cannot use dns server {}: {e}", server.name),
                vec![format!(
                    "check `dns_servers.{}.address` in {}",
                    server.name,
                    settings.config_path.display()
                )],
            )
        }
    };

    // Where does the record go?
    let Some((zone, owner)) = locate(&resolver, choice, r).await else {
        return;
    };

    // Who must serve it?
    let explicit = &settings.propagation.nameservers;
    let servers = match authoritative_servers(&resolver, &zone, explicit).await {
        Ok(s) => {
            let from = if explicit.is_empty() {
                format!("the NS records of {zone}")
            } else {
                "propagation.nameservers".to_string()
            };
            r.ok(
                "ns",
                format!(
                    "{} server(s) from {from}: {}",
                    s.len(),
                    s.iter()
                        .map(|a| a.server_ref().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            s
        }
        Err(e) => {
            r.fail("ns", "", e.to_string(), Vec::new());
            Vec::new()
        }
    };

    // The primary, asked directly.
    let primary = updater.server().clone();
    let primary_serial = match query_soa(&primary, &zone, Timeouts::LOOKUP).await {
        Ok(SoaAnswer::Serial(s)) => {
            r.ok(
                "primary",
                format!("{primary} serves zone {zone}, serial {s}"),
            );
            Some(s)
        }
        Ok(SoaAnswer::NotServed(why)) => {
            r.fail(
                "primary",
                "",
                format!("{primary} does not serve zone {zone}: {why}"),
                vec![format!(
                    "the update will fail (NOTAUTH) unless it is the zone's primary: point \
                     `dns_servers.{}.address` at the primary of {zone}, check the zone name, and \
                     with views check that key `{}` selects the view holding the zone",
                    server.name,
                    server.tsig.as_ref().map_or("?", |k| k.name.as_str())
                )],
            );
            None
        }
        Err(e @ (DnsError::NoAnswer { .. } | DnsError::Unreachable { .. })) => {
            r.fail(
                "primary",
                "",
                format!("the primary is unreachable: {e}"),
                vec![format!(
                    "check `dns_servers.{}.address` ({}), firewalls between this host and it \
                     (UDP and TCP port {}), and that named runs there",
                    server.name,
                    server.address,
                    primary.addr().port()
                )],
            );
            report_delegation(r, &zone, &servers, None).await;
            r.info("add", "not tried: the primary does not answer");
            return;
        }
        Err(e) => {
            r.fail("primary", "", e.to_string(), Vec::new());
            None
        }
    };

    // Before the update: does every server have the primary's serial?
    report_delegation(r, &zone, &servers, primary_serial).await;

    // The update.
    let value = format!("{VALUE_PREFIX}{:016x}", rand::random::<u64>());
    let t0 = Instant::now();
    let added = updater.add_txt(&zone, &owner, &value).await;
    let maybe_published = match &added {
        Ok(()) => {
            r.ok(
                "add",
                format!(
                    "TXT \"{value}\" at {owner} in zone {zone}: accepted by {primary} in {} ms",
                    t0.elapsed().as_millis()
                ),
            );
            true
        }
        Err(e) => {
            r.fail("add", "", e.to_string(), add_hints(e));
            !e.update_was_rejected()
        }
    };

    if added.is_ok() && !servers.is_empty() {
        let primary_after = match query_soa(&primary, &zone, Timeouts::LOOKUP).await {
            Ok(SoaAnswer::Serial(s)) => Some(s),
            _ => None,
        };
        propagate(r, settings, &zone, &owner, &value, &servers, primary_after).await;
    }

    if maybe_published {
        delete(r, &updater, &zone, &owner, &value).await;
    } else {
        r.info(
            "delete",
            "nothing to delete: the primary rejected the update",
        );
    }
}

/// The zone and owner to update: the explicit zone (checked against discovery) or the discovered one.
async fn locate(
    resolver: &Resolver,
    choice: &Choice,
    r: &mut Reporter<'_>,
) -> Option<(String, String)> {
    let challenge = &choice.challenge;
    let chain = match cname_chain(resolver, challenge).await {
        Ok(chain) => {
            if chain.len() > 1 {
                r.ok("cname", chain.join(" -> "));
            }
            Some(chain)
        }
        Err(e) => {
            r.fail("cname", "", e.to_string(), Vec::new());
            None
        }
    };
    let target = chain.as_ref().and_then(|c| c.last().cloned());
    let discovered = match &target {
        Some(t) => match find_zone(resolver, t).await {
            Ok(z) => Some(z),
            Err(e) => {
                if choice.zone.is_none() {
                    r.fail("zone", "", e.to_string(), Vec::new());
                } else {
                    r.fail(
                        "zone",
                        "",
                        format!("discovery through the resolver failed: {e}"),
                        vec![
                            "the CA finds the record the same way, so it will not see it either"
                                .to_string(),
                        ],
                    );
                }
                None
            }
        },
        None => None,
    };

    match &choice.zone {
        Some((zone, from)) => {
            let zone = name::normalize(zone).ok()?;
            if let Some(t) = target.as_ref().filter(|t| *t != challenge) {
                r.fail(
                    "zone",
                    "",
                    format!(
                        "{challenge} is a CNAME to {t}, but with {from} set renewd writes the record \
                         at {challenge} in zone {zone}, where the CA will not look"
                    ),
                    vec![format!(
                        "remove the explicit zone to let renewd follow the CNAME, or set it to the \
                         zone of {t}{}",
                        discovered
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )],
                );
            } else if let Some(d) = discovered.as_ref().filter(|d| **d != zone) {
                r.fail(
                    "zone",
                    "",
                    format!(
                        "zone {zone} ({from}) differs from the zone the resolver finds for \
                         {challenge}: {d}"
                    ),
                    vec![format!(
                        "the delegation does not lead where expected: the CA will look in {d}; \
                         delegate {zone} (NS records in its parent zone) to its servers, or fix {from}"
                    )],
                );
            } else if discovered.is_some() {
                r.ok("zone", format!("{zone} ({from}), as the resolver finds it"));
            }
            Some((zone, challenge.clone()))
        }
        None => {
            let (zone, owner) = (discovered?, target?);
            let via = if owner != *challenge {
                format!(" via the CNAME to {owner}")
            } else {
                String::new()
            };
            r.ok(
                "zone",
                format!("{zone} (discovered by SOA queries through the resolver{via})"),
            );
            Some((zone, owner))
        }
    }
}

/// One SOA query per server (concurrently): each must serve the zone authoritatively and, when the
/// primary's serial is known, have it (or catch up within [`CATCH_UP_GRACE`]).
async fn report_delegation(
    r: &mut Reporter<'_>,
    zone: &str,
    servers: &[AuthServer],
    primary: Option<u32>,
) {
    if servers.is_empty() {
        return;
    }
    let checks = servers.iter().map(|s| async move {
        let sref = s.server_ref();
        let started = Instant::now();
        loop {
            let answer = query_soa(&sref, zone, Timeouts::LOOKUP).await;
            match (&answer, primary) {
                (Ok(SoaAnswer::Serial(have)), Some(want))
                    if serial_behind(*have, want) && started.elapsed() < CATCH_UP_GRACE =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                _ => return (sref, answer, started.elapsed()),
            }
        }
    });
    let results = futures::future::join_all(checks).await;
    let mut authoritative = 0;
    for (sref, answer, took) in results {
        match answer {
            Ok(SoaAnswer::Serial(have)) => {
                authoritative += 1;
                match primary {
                    Some(want) if serial_behind(have, want) => r.fail(
                        "serial",
                        &label(&sref),
                        format!(
                            "{sref} serves serial {have} of {zone}, behind the primary's {want} \
                             (waited {} s for it to catch up)",
                            took.as_secs()
                        ),
                        transfer_hints(&sref, zone),
                    ),
                    Some(want) if have == want && took >= Duration::from_millis(500) => r.ok(
                        "serial",
                        format!(
                            "{sref}: {have}, caught up with the primary after {:.1} s",
                            took.as_secs_f64()
                        ),
                    ),
                    Some(want) if have == want => {
                        r.ok("serial", format!("{sref}: {have}, same as the primary"))
                    }
                    Some(want) => r.ok(
                        "serial",
                        format!(
                            "{sref}: {have}, ahead of the primary's {want} (an update just now?)"
                        ),
                    ),
                    None => r.ok("serial", format!("{sref}: {have}")),
                }
            }
            Ok(SoaAnswer::NotServed(why)) => r.fail(
                "serial",
                &label(&sref),
                format!("{sref} is a listed server of {zone} but does not serve it: {why}"),
                vec![format!(
                    "lame delegation: make it a secondary of {zone} (`type secondary; primaries {{ \
                     PRIMARY; }};`) or remove its NS record"
                )],
            ),
            Err(e) => r.fail("serial", &label(&sref), e.to_string(), Vec::new()),
        }
    }
    if authoritative == 0 {
        r.fail(
            "ns",
            "",
            format!("none of the servers of {zone} answers authoritatively for it"),
            vec![format!(
                "the delegation leads nowhere: the NS records of {zone} (in its parent zone) must \
                 name servers that hold the zone, or the CA never sees the record"
            )],
        );
    }
}

/// A server as named in the summary: its NS name, else its address.
fn label(server: &ServerRef) -> String {
    if server.name().is_empty() {
        server.addr().to_string()
    } else {
        server.name().to_string()
    }
}

/// What to check when a secondary does not follow the primary.
fn transfer_hints(server: &ServerRef, zone: &str) -> Vec<String> {
    let ip = server.addr().ip();
    vec![
        format!("NOTIFY or zone transfer from the primary to {server} is broken:"),
        format!(
            "on the primary, zone \"{zone}\" needs `allow-transfer {{ {ip}; }};` and \
             `also-notify {{ {ip}; }};` with `notify yes;`"
        ),
        format!(
            "on {}, the zone's `primaries` must name the primary; its log says why a transfer failed",
            label(server)
        ),
    ]
}

fn add_hints(e: &DnsError) -> Vec<String> {
    match e {
        DnsError::NoAnswer { .. } | DnsError::Unreachable { .. } => vec![
            "the update may or may not have been applied; renewd deletes the test value anyway"
                .to_string(),
        ],
        _ => Vec::new(),
    }
}

/// Every server polled concurrently until it serves `value`; lines in the order they finish.
async fn propagate(
    r: &mut Reporter<'_>,
    settings: &Settings,
    zone: &str,
    owner: &str,
    value: &str,
    servers: &[AuthServer],
    primary: Option<u32>,
) {
    let timeout = settings.propagation.timeout;
    r.info(
        "wait",
        format!(
            "for {} server(s) to serve it (propagation.timeout {})",
            servers.len(),
            humantime::format_duration(timeout)
        ),
    );
    let mut pending: FuturesUnordered<_> = servers
        .iter()
        .map(|s| async move {
            let sref = s.server_ref();
            let result = time_until_served(&sref, owner, value, timeout).await;
            let soa = query_soa(&sref, zone, Timeouts::LOOKUP).await;
            (sref, result, soa)
        })
        .collect();
    let mut done: Vec<ServerRef> = Vec::new();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            next = pending.next() => {
                let Some((sref, result, soa)) = next else { break };
                done.push(sref.clone());
                served_line(r, zone, &sref, result, soa, primary, timeout);
            }
            _ = &mut interrupt => {
                r.summary.interrupted = true;
                for s in servers.iter().map(AuthServer::server_ref).filter(|s| !done.contains(s)) {
                    r.fail("served", &label(&s), format!("{s}: interrupted before it served the value"), Vec::new());
                }
                break;
            }
        }
    }
}

/// Polls one server (non-recursive) until it serves `value`: Ok(time taken), or Err(what it served
/// last) at the deadline.
async fn time_until_served(
    server: &ServerRef,
    owner: &str,
    value: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut backoff = poll_delays();
    loop {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50));
        let timeouts = Timeouts {
            udp: Timeouts::POLL.udp.min(remaining),
            ..Timeouts::POLL
        };
        let served =
            match tokio::time::timeout(remaining, query_txt_at(server, owner, timeouts)).await {
                Ok(Ok(v)) if v.iter().any(|x| x == value) => return Ok(started.elapsed()),
                Ok(Ok(v)) if v.is_empty() => "no TXT".to_string(),
                Ok(Ok(v)) => format!("{} other TXT value(s), not ours", v.len()),
                Ok(Err(DnsError::NoAnswer { .. })) | Err(_) => "no answer".to_string(),
                Ok(Err(DnsError::Unreachable { reason, .. })) => reason,
                Ok(Err(DnsError::QueryFailed { served, .. })) => served,
                Ok(Err(e)) => e.to_string(),
            };
        let now = Instant::now();
        if now >= deadline {
            return Err(served);
        }
        let delay = if now - started < FAST_POLLS_FOR {
            FAST_POLL
        } else {
            backoff.next().unwrap_or(Duration::from_secs(2))
        };
        tokio::time::sleep_until((now + delay).min(deadline)).await;
    }
}

fn served_line(
    r: &mut Reporter<'_>,
    zone: &str,
    sref: &ServerRef,
    result: Result<Duration, String>,
    soa: Result<SoaAnswer, DnsError>,
    primary: Option<u32>,
    timeout: Duration,
) {
    let serial = match &soa {
        Ok(SoaAnswer::Serial(s)) => Some(*s),
        _ => None,
    };
    let serial_text = match (serial, primary) {
        (Some(s), Some(p)) if s == p => format!("serial {s}, as the primary"),
        (Some(s), Some(p)) if serial_behind(s, p) => format!("serial {s}, the primary has {p}"),
        (Some(s), _) => format!("serial {s}"),
        (None, _) => String::new(),
    };
    match result {
        Ok(took) => {
            let slowest = r.summary.slowest.as_ref().map(|(_, d)| *d);
            if slowest.is_none_or(|d| took > d) {
                r.summary.slowest = Some((sref.to_string(), took));
            }
            // It serves the value; a serial still behind the primary means a later change is missing.
            match (serial, primary) {
                (Some(s), Some(p)) if serial_behind(s, p) => r.fail(
                    "served",
                    &label(sref),
                    format!(
                        "{sref} after {} ms, but its serial {s} is behind the primary's {p}",
                        took.as_millis()
                    ),
                    transfer_hints(sref, zone),
                ),
                _ => r.ok(
                    "served",
                    format!(
                        "{sref} after {} ms{}",
                        took.as_millis(),
                        if serial_text.is_empty() {
                            String::new()
                        } else {
                            format!(" ({serial_text})")
                        }
                    ),
                ),
            }
        }
        Err(served) => {
            let head = format!(
                "{sref} does not serve the value after {} s ({served})",
                timeout.as_secs()
            );
            match (&soa, serial, primary) {
                (_, Some(s), Some(p)) if serial_behind(s, p) => r.fail(
                    "served",
                    &label(sref),
                    format!("{head}: its SOA serial {s} does not follow the primary's {p}"),
                    transfer_hints(sref, zone),
                ),
                (_, Some(s), Some(p)) if s == p => r.fail(
                    "served",
                    &label(sref),
                    format!("{head}, although it has the primary's serial {s}"),
                    vec![
                        "it loads the zone from somewhere else than this primary, or answers from \
                         another view"
                            .to_string(),
                    ],
                ),
                (Ok(SoaAnswer::NotServed(why)), _, _) => r.fail(
                    "served",
                    &label(sref),
                    format!("{head}: it does not serve zone {zone}: {why}"),
                    Vec::new(),
                ),
                (Err(e), _, _) => {
                    r.fail("served", &label(sref), format!("{head}: {e}"), Vec::new())
                }
                _ => r.fail(
                    "served",
                    &label(sref),
                    format!(
                        "{head}{}",
                        if serial_text.is_empty() {
                            String::new()
                        } else {
                            format!("; {serial_text}")
                        }
                    ),
                    vec![format!(
                        "check the zone transfers (NOTIFY/IXFR) from the primary, or raise \
                         `propagation.timeout`"
                    )],
                ),
            }
        }
    }
}

async fn delete(r: &mut Reporter<'_>, updater: &Updater, zone: &str, owner: &str, value: &str) {
    let t0 = Instant::now();
    let primary = updater.server().clone();
    match updater.delete_txt(zone, owner, value).await {
        Ok(()) => {
            let took = t0.elapsed().as_millis();
            match query_txt(primary.addr(), owner).await {
                Ok(v) if v.iter().any(|x| x == value) => r.fail(
                    "delete",
                    "",
                    format!(
                        "{primary} accepted the deletion but still serves TXT \"{value}\" at {owner}"
                    ),
                    vec![format!("remove it by hand: {}", nsupdate_hint(&primary, zone, owner, value))],
                ),
                _ => r.ok(
                    "delete",
                    format!("TXT \"{value}\" removed from {primary} in {took} ms"),
                ),
            }
        }
        Err(e) => r.fail(
            "delete",
            "",
            e.to_string(),
            vec![format!(
                "the test value may still be there; remove it by hand: {}",
                nsupdate_hint(&primary, zone, owner, value)
            )],
        ),
    }
}

fn nsupdate_hint(primary: &ServerRef, zone: &str, owner: &str, value: &str) -> String {
    format!(
        "nsupdate -k KEYFILE <<< $'server {} {}\\nzone {zone}\\nupdate delete {owner}. TXT \"{value}\"\\nsend'",
        primary.addr().ip(),
        primary.addr().port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(name: Option<&str>, zone: Option<&str>) -> Options {
        Options {
            server: "acme-master".into(),
            zone: zone.map(Into::into),
            name: name.map(Into::into),
            persist: false,
        }
    }

    #[test]
    fn name_from_the_first_spec_of_the_server() {
        let a = vec!["a.example.test".to_string()];
        let b = vec!["*.b.example.test".to_string(), "b.example.test".to_string()];
        let specs: Vec<SpecView<'_>> = vec![
            ("aaa", &a, "other", None),
            (
                "bbb",
                &b,
                "acme-master",
                Some("_acme-challenge.b.example.test"),
            ),
        ];
        let c = choose(&opts(None, None), &specs).unwrap();
        assert_eq!(c.challenge, "_acme-challenge.b.example.test");
        assert_eq!(c.origin, "the first domain of spec `bbb`");
        assert_eq!(
            c.zone,
            Some((
                "_acme-challenge.b.example.test".to_string(),
                "`zone:` of spec `bbb`".to_string()
            ))
        );

        let c = choose(&opts(Some("A.Example.Test."), None), &specs).unwrap();
        assert_eq!(c.challenge, "_acme-challenge.a.example.test");
        assert_eq!(c.zone, None);
        let c = choose(&opts(Some("_acme-challenge.x.example.test"), None), &specs).unwrap();
        assert_eq!(c.challenge, "_acme-challenge.x.example.test");
        // --name of a spec with `zone:` tests what renew would do.
        let c = choose(&opts(Some("b.example.test"), None), &specs).unwrap();
        assert_eq!(
            c.zone.map(|z| z.0).as_deref(),
            Some("_acme-challenge.b.example.test")
        );
    }

    #[test]
    fn usage_errors() {
        let a = vec!["a.example.test".to_string()];
        let specs: Vec<SpecView<'_>> = vec![("aaa", &a, "other", None)];
        let e = choose(&opts(None, None), &specs).unwrap_err();
        assert!(e.0.contains("--name DOMAIN"), "{e}");
        let e = choose(
            &opts(Some("x.example.test"), Some("y.example.test")),
            &specs,
        )
        .unwrap_err();
        assert!(
            e.0.contains("is not inside zone `y.example.test` (--zone)"),
            "{e}"
        );
        assert!(choose(&opts(Some("a..b"), None), &specs).is_err());
        let c = choose(&opts(Some("x.example.test"), Some("Example.Test.")), &specs).unwrap();
        assert_eq!(
            c.zone,
            Some(("example.test".to_string(), "--zone".to_string()))
        );
    }

    #[test]
    fn plain_and_fancy_lines() {
        let line = Line {
            mark: Mark::Fail,
            step: "served",
            text: "dns3 (127.0.0.15:53) does not serve it".into(),
            hints: vec!["check allow-transfer".into()],
        };
        assert_eq!(
            line.render(false),
            "FAIL served   dns3 (127.0.0.15:53) does not serve it\n              check allow-transfer"
        );
        let fancy = line.render(true);
        assert!(fancy.contains('✗') && fancy.contains("\x1b[31m"), "{fancy}");
        assert!(
            fancy.ends_with("\n           check allow-transfer"),
            "{fancy:?}"
        );
        let ok = Line {
            mark: Mark::Ok,
            step: "add",
            text: "accepted".into(),
            hints: vec![],
        };
        assert_eq!(ok.render(false), "ok   add      accepted");
        assert!(ok.render(true).contains('✓'));
    }

    #[test]
    fn summary_texts() {
        let mut s = Summary {
            server: "acme-master".into(),
            checks: 9,
            failed: vec![],
            slowest: Some(("dns2 (127.0.0.14:53)".into(), Duration::from_millis(41))),
            interrupted: false,
        };
        assert!(s.passed());
        assert_eq!(
            s.render(false),
            "PASSED: dns server acme-master passed all 9 checks; slowest server dns2 (127.0.0.14:53) after 41 ms"
        );
        s.failed = vec!["served dns3.example.test".into()];
        assert!(!s.passed());
        assert!(s.render(false).starts_with(
            "FAILED: dns server acme-master: 1 of 9 checks failed (served dns3.example.test)"
        ));
        assert!(!Summary::default().passed(), "no checks is no pass");
    }
}
