//! renewd configuration for a [`Topology`]: the global file and one spec per certificate.

use std::fs;
use std::path::{Path, PathBuf};

use super::topology::{Topology, MASTER_IP};

/// One `certs.d/NAME.yaml`.
#[derive(Debug, Clone)]
pub struct SpecFixture {
    /// The file stem: the certificate's identity in renewd.
    pub name: String,
    pub domains: Vec<String>,
    /// Further spec lines, verbatim YAML (e.g. `key: { type: ecdsa, curve: p256 }`).
    pub extra: Vec<String>,
}

impl SpecFixture {
    pub fn new(name: &str, domains: &[&str]) -> SpecFixture {
        SpecFixture {
            name: name.to_string(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            extra: Vec::new(),
        }
    }

    /// Adds one verbatim YAML line to the spec.
    pub fn line(mut self, yaml: &str) -> SpecFixture {
        self.extra.push(yaml.to_string());
        self
    }
}

/// A YAML scalar: JSON strings are valid YAML double-quoted strings.
fn q(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).expect("string to JSON")
}

fn qp(p: &Path) -> String {
    q(p.to_str().expect("UTF-8 path"))
}

impl Topology {
    /// [`Topology::write_renewd_config_with`] without extra global lines.
    pub fn write_renewd_config(&self, dir: &Path, certs: &[SpecFixture]) -> PathBuf {
        self.write_renewd_config_with(dir, certs, &[])
    }

    /// Writes, under `dir`: `renewd.yaml` (returned), `certs.d/NAME.yaml` per fixture,
    /// `secrets/pebble.eab` and `secrets/acme-update.key` (0600); `state/` is the state_dir.
    /// The account is `pebble` (EAB, trusting Pebble's TLS CA), the DNS server `acme-master`
    /// (127.0.0.12:53, TTL 60), the resolver the client resolver. `global_extra` lines are
    /// appended to the global file verbatim (only keys not written here, or renewd rejects duplicates).
    pub fn write_renewd_config_with(
        &self,
        dir: &Path,
        certs: &[SpecFixture],
        global_extra: &[&str],
    ) -> PathBuf {
        let secrets = dir.join("secrets");
        let certs_dir = dir.join("certs.d");
        for d in [dir, &secrets, &certs_dir] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let eab_file = secrets.join("pebble.eab");
        let tsig_file = secrets.join("acme-update.key");
        write_0600(
            &eab_file,
            format!("{}\n", self.eab_hmac_b64url()).as_bytes(),
        );
        let key = fs::read(self.tsig_key_file()).expect("read the topology's TSIG key");
        write_0600(&tsig_file, &key);

        let mut yaml = format!(
            "state_dir: {state}\n\
             certs_dir: {certs}\n\
             workers: 4\n\
             accounts:\n  pebble:\n    directory: {dirurl}\n    contact: [\"mailto:pki@example.test\"]\n    \
             eab: {{ kid: {kid}, hmac_key_file: {eab} }}\n    trust: {trust}\n\
             dns_servers:\n  acme-master:\n    address: \"{MASTER_IP}:53\"\n    tsig_key_file: {tsig}\n    ttl: 60\n\
             propagation:\n  timeout: 30s\n\
             resolver: [\"{resolver}\"]\n\
             defaults: {{ account: pebble, dns: acme-master }}\n",
            state = qp(&dir.join("state")),
            certs = qp(&certs_dir),
            dirurl = q(self.acme_directory_url()),
            kid = q(self.eab_kid()),
            eab = qp(&eab_file),
            trust = qp(&self.tls_ca_pem_path()),
            tsig = qp(&tsig_file),
            resolver = self.resolver_addr(),
        );
        for line in global_extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
        let config = dir.join("renewd.yaml");
        fs::write(&config, yaml).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));

        for spec in certs {
            let domains: Vec<String> = spec.domains.iter().map(q).collect();
            let mut text = format!("domains: [{}]\n", domains.join(", "));
            for line in &spec.extra {
                text.push_str(line);
                text.push('\n');
            }
            let path = certs_dir.join(format!("{}.yaml", spec.name));
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        config
    }
}

fn write_0600(path: &Path, bytes: &[u8]) {
    super::topology::write_secret(path, bytes).unwrap_or_else(|e| panic!("{e}"));
}
