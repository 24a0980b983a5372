//! The man pages and shell completions, rendered from renewd's clap definitions (daemon/cli.rs).
//!
//! `cargo run --example gen-docs` writes them under packaging/ (the Debian package ships those files);
//! the test `man_pages_and_completions_match_the_cli` fails when they no longer match the CLI.
//! Shared by that example and the test through `#[path]`, so it depends only on dev-dependencies.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};

/// Every generated file: path relative to the repository root, and its content.
pub fn render_all() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cmd = renewd::cli::Cli::command().disable_help_subcommand(true);
    // Sets the subcommands' display names (renewd-run, …) the pages and cross references use.
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone()).manual("renewd manual");
        let mut page = Vec::new();
        man.render(&mut page).expect("render to memory");
        page.extend(see_also(&["renewd(1)"]));
        out.push((
            PathBuf::from("packaging/man").join(man.get_filename()),
            page,
        ));
    }
    let man = clap_mangen::Man::new(cmd.clone()).manual("renewd manual");
    let mut page = Vec::new();
    man.render(&mut page).expect("render to memory");
    page.extend(main_page_sections());
    out.push((PathBuf::from("packaging/man/renewd.1"), page));
    out.push((PathBuf::from("packaging/man/renewd.yaml.5"), config_page()));

    for (shell, file) in [
        (Shell::Bash, "renewd.bash"),
        (Shell::Zsh, "_renewd"),
        (Shell::Fish, "renewd.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "renewd", &mut script);
        out.push((PathBuf::from("packaging/completions").join(file), script));
    }
    out
}

/// renewd.yaml(5): every key, from the reference the loader is tested against.
fn config_page() -> Vec<u8> {
    use renewd::config::reference::{Scope, REFERENCE};
    let mut r = Roff::new();
    r.control("TH", ["RENEWD.YAML", "5", "", "", "renewd manual"]);
    r.control("SH", ["NAME"]);
    r.text([roman(
        "renewd.yaml, certs.d/NAME.yaml - renewd's configuration",
    )]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "The global file (/etc/renewd/renewd.yaml) holds the accounts, DNS servers and defaults; each \
         certificate has one spec file NAME.yaml in certs_dir. Unknown keys are errors (renewd check \
         names file, line and column, and the nearest known key). Durations are written 90s, 10m, 30d. \
         Secrets are only ever read from files (mode 0600), never written into YAML. In the paths below, \
         NAME is a name you choose and [] an item of a list.",
    )]);
    for (scope, title) in [
        (Scope::Global, "GLOBAL KEYS (renewd.yaml)"),
        (
            Scope::Spec,
            "SPEC KEYS (certs.d/NAME.yaml, or defaults: in renewd.yaml)",
        ),
    ] {
        r.control("SH", [title]);
        for k in REFERENCE.iter().filter(|k| k.scope == scope) {
            r.control("TP", []);
            r.text([bold(k.path)]);
            r.text([roman(k.doc)]);
            r.control("br", []);
            r.text([
                italic("type: "),
                roman(k.ty),
                roman("; "),
                italic("default: "),
                roman(k.default),
            ]);
            r.control("br", []);
            r.text([italic("example: "), roman(k.example)]);
        }
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("renewd(1), renewd-check(1), tsig-keygen(8)")]);
    r.render().into_bytes()
}

fn see_also(pages: &[&str]) -> Vec<u8> {
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(pages.join(", "))]);
    continuation(&r)
}

/// Roff text to append to a page clap_mangen rendered: without the preamble that page already has
/// (it defines the apostrophe string the text uses).
fn continuation(r: &Roff) -> Vec<u8> {
    let text = r.render();
    let preamble = Roff::new().render();
    text.strip_prefix(&preamble)
        .unwrap_or(&text)
        .as_bytes()
        .to_vec()
}

/// FILES, EXIT STATUS, SIGNALS, ENVIRONMENT and SEE ALSO of renewd(1): what clap does not know.
fn main_page_sections() -> Vec<u8> {
    let mut r = Roff::new();
    let item = |r: &mut Roff, term: &str, text: &str| {
        r.control("TP", []);
        r.text([bold(term)]);
        r.text([roman(text)]);
    };
    r.control("SH", ["FILES"]);
    for (path, what) in [
        ("/etc/renewd/renewd.yaml", "The global configuration: accounts, DNS servers, propagation, defaults for every spec."),
        ("/etc/renewd/certs.d/NAME.yaml", "One spec per certificate; NAME is the certificate's name in status, logs and live/. Added, changed and removed specs are picked up by the running daemon."),
        ("/etc/renewd/secrets/", "TSIG keys (as tsig-keygen writes them) and EAB HMAC keys, mode 0600, owned by root."),
        ("/var/lib/renewd/live/NAME/", "The current certificate: cert.pem, chain.pem, fullchain.pem, privkey.pem; a symlink switched atomically to the newest version."),
        ("/var/lib/renewd/archive/NAME/", "The last five versions of each certificate."),
        ("/var/lib/renewd/accounts/", "ACME account credentials (private keys), mode 0600."),
        ("/var/lib/renewd/status.json", "The daemon's plan and last results, read by renewd status."),
        ("/usr/share/doc/renewd/examples/", "Whole configurations for the reference deployments, and the BIND side (named.conf snippets)."),
    ] {
        item(&mut r, path, what);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        ("0", "Success."),
        ("1", "An operation failed: a renewal, a dns-test check, or renewd status found a certificate that needs attention."),
        ("2", "Bad usage or an invalid configuration; every problem is printed as FILE:LINE:COLUMN with what to do."),
    ] {
        item(&mut r, code, what);
    }
    r.control("SH", ["SIGNALS"]);
    item(
        &mut r,
        "SIGHUP",
        "Reload the configuration (systemctl reload renewd). An invalid configuration is refused and the previous one kept; the reason stays in the service status until a reload succeeds.",
    );
    item(
        &mut r,
        "SIGTERM, SIGINT",
        "Stop: no new renewals; running ones get stop_grace (default 30s), then are cancelled and remove their TXT records.",
    );
    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "RENEWD_LOG",
        "Log filter in tracing syntax (e.g. renewd=debug); overrides -v.",
    );
    item(
        &mut r,
        "RENEWD_RELOAD_PATH",
        "PATH given to reload commands and hooks (default /usr/sbin:/usr/bin:/sbin:/bin).",
    );
    item(
        &mut r,
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd for Type=notify services; renewd reports READY, STATUS, RELOADING, STOPPING and watchdog pings, and never passes them to the commands it starts.",
    );
    r.control("SH", ["EXAMPLES"]);
    for (what, example) in [
        ("Validate everything after an edit:", "renewd check"),
        ("What is due, what failed:", "renewd status"),
        (
            "Time the DNS path end to end:",
            "renewd dns-test primary --name host.example.org",
        ),
        (
            "One certificate's history in the journal:",
            "journalctl -u renewd CERT_NAME=gitlab",
        ),
    ] {
        r.text([roman(what)]);
        r.control("RS", ["4"]);
        r.text([italic(example)]);
        r.control("RE", []);
    }
    let mut bytes = continuation(&r);
    bytes.extend(see_also(&[
        "renewd-run(1)",
        "renewd-check(1)",
        "renewd-status(1)",
        "renewd-renew(1)",
        "renewd-dns-test(1)",
        "renewd-import(1)",
        "renewd-revoke(1)",
        "renewd-delete(1)",
        "renewd-account(1)",
        "renewd-persist(1)",
        "renewd.yaml(5)",
        "journalctl(1)",
        "systemctl(1)",
        "tsig-keygen(8)",
        "named.conf(5)",
    ]));
    bytes
}
