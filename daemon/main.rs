//! The `renewd` command line. Only argument parsing and output live here; the work is in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;
use renewd::cli::{AccountAction, Cli, Command, PersistAction};
use renewd::config;
use renewd::renew::Engine;

/// Exit status: 0 success, 1 an operation failed, 2 bad usage or invalid configuration.
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Before any thread exists: take the service manager's variables and drop them from the
    // environment, so that no command renewd starts inherits NOTIFY_SOCKET.
    let notifier = renewd::systemd::Notifier::from_env();
    renewd::systemd::remove_notify_env();
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Run);
    renewd::logging::init(cli.verbose, daemon);
    if daemon {
        return run_daemon(&cli.config, notifier);
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Command::Import { .. } = cli.command {
        return import(cli);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("renewd: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run_daemon(config: &std::path::Path, notifier: renewd::systemd::Notifier) -> ExitCode {
    limit_malloc_arenas();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("renewd: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match rt.block_on(renewd::daemon::run(config, notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(renewd::daemon::DaemonError::Config(errors)) => {
            for d in &errors.0 {
                eprintln!("{d}");
            }
            eprintln!("renewd: the configuration is invalid; not starting");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("renewd: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let loaded = match config::load(&cli.config) {
        Ok(l) => l,
        Err(errors) => return config_failed(&cli.command, &errors),
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let settings = loaded.settings;
    match cli.command {
        Command::Run | Command::Import { .. } => unreachable!("handled in main"),
        Command::Status { json, warn } => {
            let mut report = renewd::status::collect(&settings, warn, SystemTime::now());
            if settings.cluster.is_some() {
                runtime()?.block_on(renewd::status::add_cluster(&mut report, &settings));
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("status JSON")?
                );
            } else {
                let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
                print!("{}", renewd::status::render_text(&report, color));
            }
            Ok(if renewd::status::needs_attention(&report) {
                EXIT_FAILED
            } else {
                0
            })
        }
        Command::Persist {
            action: PersistAction::Remove { name },
        } => persist_remove(&settings, &name),
        Command::Check => {
            for w in renewd::live::lifetime_warnings(&settings) {
                eprintln!("{w}");
            }
            println!(
                "{}: OK ({} certificate(s), {} account(s), {} dns server(s))",
                cli.config.display(),
                settings.certs.len(),
                settings.accounts.len(),
                settings.dns_servers.len()
            );
            Ok(0)
        }
        Command::Renew {
            names,
            force,
            dry_run,
            timings,
        } => {
            let unknown: Vec<&String> = names
                .iter()
                .filter(|n| !settings.certs.contains_key(*n))
                .collect();
            if !unknown.is_empty() {
                let known: Vec<&String> = settings.certs.keys().collect();
                eprintln!(
                    "renewd: no spec named {}; known: {} (specs are the *.yaml files in {})",
                    unknown
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    settings.certs_dir.display()
                );
                return Ok(EXIT_CONFIG);
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            if dry_run {
                return rt.block_on(dry_run_all(Arc::new(settings), names));
            }
            rt.block_on(renew(Arc::new(settings), names, force, timings))
        }
        Command::Revoke {
            name,
            reason,
            with_key,
        } => {
            let rt = runtime()?;
            let why = reason.as_deref().and_then(renewd::manage::reason);
            let with_key =
                with_key.then(|| reason.as_deref().and_then(renewd::manage::reason_code));
            let result = rt.block_on(async {
                let engine = Engine::new(Arc::new(settings))?;
                Ok::<_, anyhow::Error>(renewd::manage::revoke(&engine, &name, why, with_key).await)
            })?;
            print_managed(result)
        }
        Command::Delete { name, yes } => {
            if !yes
                && !confirm(&format!(
                    "delete {name}: its spec, live/{name} and archive/{name}"
                ))?
            {
                eprintln!("renewd: nothing deleted (answer `y`, or pass --yes)");
                return Ok(EXIT_FAILED);
            }
            print_managed(renewd::manage::delete(&settings, &name))
        }
        Command::Account { action } => account_command(settings, action),
        Command::DnsTest {
            server,
            zone,
            name,
            persist,
        } => {
            let opts = renewd::dnstest::Options {
                server,
                zone,
                name,
                persist,
            };
            let fancy = std::io::IsTerminal::is_terminal(&std::io::stdout());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let mut print = |line: &renewd::dnstest::Line| println!("{}", line.render(fancy));
            match rt.block_on(renewd::dnstest::run(&settings, &opts, &mut print)) {
                Ok(summary) => {
                    println!("{}", summary.render(fancy));
                    Ok(if summary.passed() { 0 } else { EXIT_FAILED })
                }
                Err(e) => {
                    eprintln!("renewd: {e}");
                    Ok(EXIT_CONFIG)
                }
            }
        }
    }
}

/// The configuration does not load: every diagnostic on stderr, and for `status --json` (a monitoring
/// check that reads JSON) the document with `config_error` and no certificates.
fn config_failed(command: &Command, errors: &config::ConfigErrors) -> anyhow::Result<u8> {
    for d in &errors.0 {
        eprintln!("{d}");
    }
    if let Command::Status { json: true, .. } = command {
        let text: Vec<String> = errors.0.iter().map(|d| d.to_string()).collect();
        let report = renewd::status::config_error_report(text.join("\n"), SystemTime::now());
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("status JSON")?
        );
    }
    let n = errors.error_count();
    eprintln!("renewd: {n} error(s) in the configuration; nothing was done");
    Ok(EXIT_CONFIG)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Print what a day-two command did; exit 1 with the error when it failed.
fn print_managed(result: Result<Vec<String>, renewd::manage::ManageError>) -> anyhow::Result<u8> {
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("renewd: {e}");
            Ok(EXIT_FAILED)
        }
    }
}

/// Ask `question [y/N]` on the terminal; false without a terminal.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!("renewd: {question}? (no terminal to ask on: pass --yes)");
        return Ok(false);
    }
    eprint!("renewd: {question}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn account_command(
    settings: renewd::config::Settings,
    action: AccountAction,
) -> anyhow::Result<u8> {
    use renewd::manage;
    let name = match &action {
        AccountAction::Show { account }
        | AccountAction::Update { account, .. }
        | AccountAction::Rollover { account }
        | AccountAction::Deactivate { account, .. } => account.as_deref(),
    };
    let name = match manage::pick_account(&settings, name) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("renewd: {e}");
            return Ok(EXIT_CONFIG);
        }
    };
    if let AccountAction::Show { .. } = action {
        return print_managed(manage::account_show(&settings, &name));
    }
    if let AccountAction::Deactivate { yes: false, .. } = action {
        if !confirm(&format!(
            "deactivate account `{name}` at the CA for good (it cannot be undone)"
        ))? {
            eprintln!("renewd: nothing done (answer `y`, or pass --yes)");
            return Ok(EXIT_FAILED);
        }
    }
    let rt = runtime()?;
    let result = rt.block_on(async {
        let engine = Engine::new(Arc::new(settings))?;
        Ok::<_, anyhow::Error>(match action {
            AccountAction::Update { contact, .. } => {
                let contact = (!contact.is_empty()).then_some(contact);
                manage::account_update(&engine, &name, contact).await
            }
            AccountAction::Rollover { .. } => manage::account_rollover(&engine, &name).await,
            AccountAction::Deactivate { .. } => manage::account_deactivate(&engine, &name).await,
            AccountAction::Show { .. } => unreachable!("handled above"),
        })
    })?;
    print_managed(result)
}

/// `renewd renew --dry-run [NAME...]`: every selected certificate up to the CA's validation, `workers`
/// at a time.
async fn dry_run_all(
    settings: Arc<renewd::config::Settings>,
    names: Vec<String>,
) -> anyhow::Result<u8> {
    use futures::stream::StreamExt;
    let engine = Arc::new(Engine::open(settings.clone()).await?);
    let specs: Vec<Arc<renewd::config::CertSpec>> = settings
        .certs
        .values()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .cloned()
        .collect();
    let results: Vec<_> = futures::stream::iter(specs)
        .map(|spec| {
            let engine = engine.clone();
            async move {
                let r = engine.dry_run(&spec).await;
                (spec.name.clone(), r)
            }
        })
        .buffer_unordered(settings.workers.max(1))
        .collect()
        .await;
    let mut results = results;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failed = 0;
    for (name, r) in results {
        match r {
            Ok(d) => println!(
                "{name}: would renew: the CA validated all {} name(s) ({}, {:.1}s, DNS propagation {:.1}s); {} authorization(s) deactivated{}, TXT values removed, nothing issued or written",
                d.names,
                d.challenge,
                d.elapsed.as_secs_f64(),
                d.propagation.as_secs_f64(),
                d.deactivated,
                if d.still_valid > 0 {
                    format!(
                        " ({} left valid by the CA, which ignored the request)",
                        d.still_valid
                    )
                } else {
                    String::new()
                }
            ),
            Err(e) => {
                failed += 1;
                println!("{name}: dry run FAILED: {e}");
            }
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

/// `renewd persist remove NAME`: delete the dns-persist-01 values renewd wrote for NAME, under NAME's lock.
fn persist_remove(settings: &renewd::config::Settings, name: &str) -> anyhow::Result<u8> {
    let state = renewd::state::StateDir::new(&settings.state_dir);
    let book = renewd::persist::Book::new(state.root(), name);
    let written = book
        .read()
        .with_context(|| format!("cannot read {}", book.path().display()))?;
    if written.is_empty() {
        println!(
            "{name}: renewd wrote no dns-persist-01 record for it (nothing in {})",
            book.path().display()
        );
        return Ok(0);
    }
    let Some(_lock) = state
        .lock_cert(name)
        .with_context(|| format!("cannot take the lock of {name}"))?
    else {
        eprintln!("renewd: {name} is being renewed right now; try again when it is done");
        return Ok(EXIT_FAILED);
    };
    if let Some(spec) = settings.certs.get(name) {
        if spec.challenge == renewd::config::ChallengeKind::DnsPersist01 {
            eprintln!(
                "renewd: warning: spec `{name}` still says `challenge: dns-persist-01`: its next renewal writes the record again; set `challenge: dns-01` (or remove the spec) first"
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let resolver = renewd::dns::Resolver::from_config(&settings.resolver)?;
    let mut left = Vec::new();
    let mut failed = 0;
    for w in written {
        let Some(server) = settings.dns_servers.get(&w.dns_server) else {
            eprintln!(
                "renewd: {}: \"{}\" was written through dns server `{}`, which the configuration no longer has; add it back to remove the value",
                w.owner, w.value, w.dns_server
            );
            failed += 1;
            left.push(w);
            continue;
        };
        let result = rt.block_on(async {
            let updater = renewd::dns::Updater::new(server, &resolver).await?;
            updater.delete_txt(&w.zone, &w.owner, &w.value).await
        });
        match result {
            Ok(()) => println!("{name}: removed {} TXT \"{}\"", w.owner, w.value),
            Err(e) => {
                eprintln!("renewd: {}: cannot remove \"{}\": {e}", w.owner, w.value);
                failed += 1;
                left.push(w);
            }
        }
    }
    book.write(left)
        .with_context(|| format!("cannot update {}", book.path().display()))?;
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

/// `renewd import certbot`: needs no valid renewd configuration (it makes one).
fn import(cli: Cli) -> ExitCode {
    let Command::Import {
        dir,
        write,
        state_dir,
        eab_kid,
        trust,
        ..
    } = cli.command
    else {
        unreachable!("only called for import")
    };
    let opts = renewd::import::Options {
        certbot_dir: dir,
        config: cli.config.clone(),
        state_dir: Some(state_dir),
        eab_kid,
        trust,
        // Only mentioned: the importing shell's environment is not certbot's configuration.
        env_ca_bundle: std::env::var_os("REQUESTS_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from),
    };
    let plan = match renewd::import::plan(&opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("renewd: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if plan.is_empty() {
        print!("{}", plan.render_report());
        eprintln!("renewd: {}", renewd::import::ImportError::NothingConverted);
        return ExitCode::from(EXIT_FAILED);
    }
    if !write {
        print!("{}", plan.render_dry_run());
        return ExitCode::SUCCESS;
    }
    match plan.write() {
        Ok(done) => {
            for line in done {
                println!("{line}");
            }
            print!("{}", plan.render_report());
            println!(
                "\nNext: `renewd --config {} check`, then stop certbot's timer (systemctl disable --now certbot.timer).",
                cli.config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print!("{}", plan.render_report());
            eprintln!("renewd: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn renew(
    settings: Arc<renewd::config::Settings>,
    names: Vec<String>,
    force: bool,
    timings: bool,
) -> anyhow::Result<u8> {
    use renewd::core::{self, Mode, RunResult, Scheduler, SystemClock, Work};
    let engine = Arc::new(Engine::open(settings.clone()).await?);
    let mut selected = (*settings).clone();
    if !names.is_empty() {
        selected.certs.retain(|name, _| names.contains(name));
    }
    let specs: Vec<Arc<renewd::config::CertSpec>> = selected.certs.values().cloned().collect();
    let inspections = engine.clone().inspect(specs).await;
    let mut scheduler = Scheduler::new(
        Arc::new(selected),
        engine.clone(),
        Arc::new(SystemClock),
        Mode::Once { force },
        inspections,
        &Default::default(),
    );
    // SIGTERM / SIGINT: running renewals get `stop_grace`, then are cancelled and remove their TXT values.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("renewd: stopping: renewals in flight get stop_grace, then are cancelled");
    };
    // certbot's pre/post hooks: once per `renewd renew`, around all its attempts.
    engine.begin_run().await;
    let results = core::run_once(&mut scheduler, stop).await;
    engine.end_run().await;
    // Where `renewd status` finds them, each under the certificate's lock (the daemon's status.json
    // has one writer: the daemon).
    let state = renewd::state::StateDir::new(&settings.state_dir);
    let daemon = renewd::status::daemon_status(&state);
    let now = SystemTime::now();
    for (name, result) in &results {
        let record = match result {
            RunResult::Renewed(r) => renewd::status::RunRecord {
                at: now,
                ok: true,
                error: None,
                serial: Some(r.serial.clone()),
                consecutive_failures: None,
            },
            RunResult::Failed(e) => renewd::status::RunRecord {
                at: now,
                ok: false,
                error: Some(match e {
                    // The certificate was issued and is live; what serves it was not updated.
                    renewd::renew::RenewError::Deploy(_) => {
                        format!("issued, but the deploy or reload failed: {e}")
                    }
                    _ => e.to_string(),
                }),
                serial: None,
                consecutive_failures: None,
            },
            RunResult::NotDue { .. } | RunResult::Busy { .. } => continue,
        };
        match renewd::status::record_run(&state, &daemon, name, &record) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "renewd: {name}: result not recorded for `renewd status`: another renewd process holds \
                 its lock now, and its result will be the newer one"
            ),
            Err(e) => eprintln!("renewd: {name}: cannot record the result for `renewd status`: {e}"),
        }
    }
    let mut failures = 0;
    let wanted: Vec<String> = if names.is_empty() {
        settings.certs.keys().cloned().collect()
    } else {
        names
    };
    for name in wanted {
        match results.get(&name) {
            Some(RunResult::Renewed(r)) => {
                println!(
                    "{name}: renewed, serial {}, expires {} ({:.1}s, DNS propagation {:.1}s, {})",
                    r.serial,
                    humantime::format_rfc3339_seconds(r.not_after),
                    r.elapsed.as_secs_f64(),
                    r.propagation.as_secs_f64(),
                    core::proof(r)
                );
                if timings {
                    println!("{name}: phases: {}", r.phases);
                }
            }
            Some(RunResult::NotDue {
                not_after,
                due,
                ari,
            }) => println!(
                "{name}: not due, expires {}, renewal due {} (in {}{})",
                humantime::format_rfc3339_seconds(*not_after),
                humantime::format_rfc3339_seconds(*due),
                approx(*due),
                if *ari {
                    ", the CA's renewal window"
                } else {
                    ""
                }
            ),
            Some(RunResult::Busy { member: None }) => println!(
                "{name}: skipped: another renewd process (the daemon?) is renewing it right now"
            ),
            Some(RunResult::Busy {
                member: Some(member),
            }) => println!("{name}: skipped: cluster member `{member}` is renewing it right now"),
            Some(RunResult::Failed(e @ renewd::renew::RenewError::Deploy(_))) => {
                failures += 1;
                println!(
                    "{name}: issued and installed in live/, but the deploy or reload FAILED: {e}"
                );
            }
            Some(RunResult::Failed(e)) => {
                failures += 1;
                println!("{name}: FAILED: {e}");
            }
            None => {
                failures += 1;
                println!("{name}: not renewed: interrupted before it started");
            }
        }
    }
    Ok(if failures > 0 { EXIT_FAILED } else { 0 })
}

/// "3d 4h" style time until `t`.
fn approx(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (d, h, m) = (secs / 86400, (secs % 86400) / 3600, (secs % 3600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// At most [`MALLOC_ARENAS`] glibc malloc arenas in the daemon (unless `MALLOC_ARENA_MAX` says
/// otherwise). glibc gives threads up to 8 per core, each keeping the memory its threads freed; the
/// daemon is idle nearly always and its threads (runtime workers, blocking pool, start-up readers)
/// seldom allocate at once, so the arenas cost resident memory and buy no throughput.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before any thread of ours starts; mallopt only changes an allocator limit.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;
