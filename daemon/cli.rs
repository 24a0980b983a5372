//! The command line definitions, shared by the binary and the packaging generator (man page and
//! shell completions are rendered from these, see packaging/docs.rs).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps certificates valid: ACME (with EAB) + DNS-01 through RFC 2136 / TSIG updates to a hidden primary.
///
/// renewd renews certificates for servers the internet cannot reach. `renewd run` is the daemon that
/// renewd.service starts: it reads the global configuration (accounts, DNS servers, defaults) and one
/// spec per certificate in certs.d, renews each certificate when it is due (a third of its lifetime
/// left, or the CA's ARI window), proves control of the names with DNS-01 TXT records sent as
/// TSIG-signed RFC 2136 updates to the zone's primary, waits until every authoritative server serves
/// them, writes the certificate and key atomically, deploys them and reloads the web servers.
/// The other commands validate the configuration, show status, renew by hand, test the DNS path and
/// import a certbot setup.
#[derive(Parser, Debug)]
#[command(name = "renewd", version, about)]
pub struct Cli {
    /// The global configuration file.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/etc/renewd/renewd.yaml"
    )]
    pub config: PathBuf,
    /// More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon (what renewd.service starts): plans, renews, watches the specs, reloads on SIGHUP.
    Run,
    /// Validate the global configuration and every spec, without touching the network.
    Check,
    /// One row per certificate: expiry, days left, next renewal, last result. Exits 1 when any
    /// certificate is failing or has less than --warn left (a monitoring check).
    Status {
        /// Print the stable JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Time left below which a certificate needs attention.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        warn: std::time::Duration,
    },
    /// Renew now the certificates that are due (all, or the NAMEs given), then exit. Due: the lifetime
    /// rule, or earlier when the CA's renewal window (ARI) is open.
    Renew {
        /// Certificate names (spec file stems). Default: every spec.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Renew even if not due.
        #[arg(long)]
        force: bool,
        /// Go as far as the CA's validation of every name, then give the authorizations up and
        /// remove the TXT values: nothing is issued or written (implies --force).
        #[arg(long)]
        dry_run: bool,
        /// After each renewed certificate, print where its time went, phase by phase (account,
        /// order, dns-update, propagation, validation, key, finalize, install, deploy, ...).
        #[arg(long)]
        timings: bool,
    },
    /// Revoke the live certificate of NAME with the account that ordered it.
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
        /// Why (RFC 5280): unspecified, keycompromise, affiliationchanged, superseded,
        /// cessationofoperation.
        #[arg(long, value_name = "REASON", value_parser = ["unspecified", "keycompromise", "affiliationchanged", "superseded", "cessationofoperation"])]
        reason: Option<String>,
        /// Sign the revocation with the certificate's own private key (live/NAME/privkey.pem)
        /// instead of the account: for a certificate whose account is lost or deactivated.
        #[arg(long)]
        with_key: bool,
    },
    /// Remove the spec, live/NAME and archive/NAME of a certificate (never the account, never deployed
    /// copies). Asks first unless --yes.
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// The ACME account: show it, set its contact at the CA, roll its key over, deactivate it.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Add a test TXT record with a dns server's TSIG key, time every authoritative server until it
    /// serves it, delete it again, and explain whatever failed. Exits 1 unless every check passed.
    DnsTest {
        /// A `dns_servers` entry of the configuration.
        #[arg(value_name = "SERVER")]
        server: String,
        /// The zone to update. Default: the spec's `zone:`, else discovered (SOA, following CNAMEs).
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
        /// The domain to test (`_acme-challenge.` is prepended unless present). Default: the first
        /// domain of the first spec that uses SERVER.
        #[arg(long, value_name = "DOMAIN")]
        name: Option<String>,
        /// Write nothing: show the dns-persist-01 record (`_validation-persist.DOMAIN`) on every
        /// authoritative server, and whether it names this certificate's account.
        #[arg(long)]
        persist: bool,
    },
    /// The standing dns-persist-01 records renewd wrote.
    Persist {
        #[command(subcommand)]
        action: PersistAction,
    },
    /// Turn a certbot --dns-rfc2136 setup into renewd's configuration; its certificates become
    /// renewd's live ones (nothing is reissued). Prints the files; --write writes them next to --config.
    ///
    /// DIR may be a copy of certbot's directory anywhere: the paths in its renewal files that are gone
    /// from where certbot wrote them are read from the same place under DIR, and the output says which
    /// directory was read for which. Hooks that live in certbot's directory are copied to hooks/ beside
    /// --config (mode kept) and the specs name the copies. Deploy hooks run as certbot ran them (a
    /// --deploy-hook that is also in renewal-hooks/deploy runs once); post-hooks become deploy hooks
    /// (after each successful renewal, not once per run, not after a failure); pre-hooks are not
    /// converted. The output lists each of them. TSIG keys: 0600 under secrets/; DNS records keep
    /// certbot-dns-rfc2136's TTL (120); accounts are named after the CA's host.
    Import {
        /// What to import from.
        #[arg(value_parser = ["certbot"])]
        from: String,
        /// certbot's configuration directory (its --config-dir), or a copy of it anywhere.
        #[arg(value_name = "DIR", default_value = "/etc/letsencrypt")]
        dir: PathBuf,
        /// Write the files and hook copies (never overwriting any) and install the certificates into
        /// state_dir.
        #[arg(long)]
        write: bool,
        /// `state_dir:` of the new configuration.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/renewd")]
        state_dir: PathBuf,
        /// The CA's External Account Binding key id (certbot does not store it).
        #[arg(long, value_name = "KID")]
        eab_kid: Option<String>,
        /// Extra roots for the ACME server's TLS (`trust:`). certbot's configuration has no such
        /// setting, and $REQUESTS_CA_BUNDLE is not taken: give the file here.
        #[arg(long, value_name = "FILE")]
        trust: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountAction {
    /// URL, directory, contact and key of the account (from the state directory; no network).
    Show {
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
    },
    /// Set the account's contact addresses at the CA (default: `contact:` of renewd.yaml).
    Update {
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
        /// A contact URL (`mailto:pki@example.org`); repeat for several.
        #[arg(long, value_name = "URL")]
        contact: Vec<String>,
    },
    /// Replace the account key (RFC 8555 §7.3.5): the CA stops accepting the old one.
    Rollover {
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
    },
    /// Close the account at the CA for good. Asks first unless --yes.
    Deactivate {
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PersistAction {
    /// Delete exactly the values renewd wrote for NAME (other values at the same owner stay), through
    /// the dns server they were written with.
    Remove {
        /// The certificate (spec file stem).
        #[arg(value_name = "NAME")]
        name: String,
    },
}
