//! dns-persist-01 (draft-ietf-acme-dns-persist-01): one standing TXT record per name,
//! `_validation-persist.<name> TXT "<issuer>; accounturi=<account URL>[; policy=wildcard][; persistUntil=<unix>]"`,
//! which lets the CA validate every later order without any DNS change.
//!
//! renewd writes the record itself, through the same TSIG-signed RFC 2136 path as dns-01 values, but
//! only when no authoritative server's answer already satisfies the order ([`satisfies`]); it appends
//! (never replaces: another CA's or another account's value at the same owner stays) and never removes
//! it during a renewal. What it wrote is remembered in `state_dir/persist/NAME.json` ([`Book`], written
//! before the UPDATE is sent) so that `renewd persist remove NAME` deletes exactly those values.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsread::{self, TEXT_MAX};
use crate::state::{create_private_dir, write_atomic};

/// The record value renewd writes for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The issuer domain name the value starts with (the first of the CA's).
    pub issuer: String,
    /// Every issuer domain name the CA answers to: a value naming any of them counts.
    pub issuers: Vec<String>,
    pub account_uri: String,
    /// The certificate has `*.name`: the record must say `policy=wildcard`.
    pub wildcard: bool,
    /// `persistUntil`, seconds since the epoch (`persist_until:` in the spec).
    pub persist_until: Option<u64>,
}

impl Wanted {
    /// The TXT value, in the draft's -01 format.
    pub fn value(&self) -> String {
        let mut v = format!("{}; accounturi={}", self.issuer, self.account_uri);
        if self.wildcard {
            v.push_str("; policy=wildcard");
        }
        if let Some(t) = self.persist_until {
            v.push_str(&format!("; persistUntil={t}"));
        }
        v
    }
}

/// One TXT value read back: the issuer and its parameters (tag names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub issuer: String,
    pub params: BTreeMap<String, String>,
}

/// Parse `issuer; tag=value; ...` (spaces around `;` and `=` allowed). `None` for anything else.
pub fn parse(value: &str) -> Option<Parsed> {
    let mut parts = value.split(';');
    let issuer = parts
        .next()?
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if issuer.is_empty() || issuer.contains(char::is_whitespace) || issuer.contains('=') {
        return None;
    }
    let mut params = BTreeMap::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, v) = p.split_once('=')?;
        params.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Some(Parsed { issuer, params })
}

/// Whether a served value lets the CA validate what `want` asks for at `now` (unix seconds): an
/// issuer of this CA, exactly this account, `policy=wildcard` when a wildcard is wanted, a
/// `persistUntil` (if any) still ahead, and the spec's `persist_until` when it sets one (so changing
/// it writes the new value).
pub fn satisfies(value: &str, want: &Wanted, now: u64) -> bool {
    let Some(p) = parse(value) else { return false };
    if !want.issuers.contains(&p.issuer) {
        return false;
    }
    if p.params.get("accounturi").map(String::as_str) != Some(want.account_uri.as_str()) {
        return false;
    }
    if want.wildcard
        && !p
            .params
            .get("policy")
            .is_some_and(|v| v.eq_ignore_ascii_case("wildcard"))
    {
        return false;
    }
    let until = match p.params.get("persistuntil") {
        None => None,
        Some(t) => match t.parse::<u64>() {
            Ok(t) => Some(t),
            Err(_) => return false,
        },
    };
    if until.is_some_and(|t| t <= now) {
        return false;
    }
    match want.persist_until {
        Some(w) => until == Some(w),
        None => true,
    }
}

/// One value renewd wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The `dns_servers` entry it was sent through.
    pub dns_server: String,
    pub zone: String,
    pub owner: String,
    pub value: String,
    /// Unix seconds.
    pub written_at: u64,
}

/// `state_dir/persist/NAME.json`: the values renewd wrote for certificate NAME. Callers hold the
/// certificate's lock (`locks/NAME.lock`), so there is one writer at a time.
#[derive(Debug, Clone)]
pub struct Book {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BookFile {
    written: Vec<Written>,
}

impl Book {
    pub fn new(state_root: &Path, cert: &str) -> Self {
        Book {
            path: state_root.join("persist").join(format!("{cert}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything recorded (nothing when the file does not exist).
    pub fn read(&self) -> io::Result<Vec<Written>> {
        match fsread::read_capped(&self.path, TEXT_MAX) {
            Ok(bytes) => serde_json::from_slice::<BookFile>(&bytes)
                .map(|f| f.written)
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", self.path.display()),
                    )
                }),
            Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Ok(Vec::new()),
            Err(e) => Err(io::Error::other(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Record `w` (fsynced) unless the same value at the same owner is already there.
    pub fn add(&self, w: Written) -> io::Result<()> {
        let mut all = self.read()?;
        if all
            .iter()
            .any(|x| x.owner == w.owner && x.value == w.value && x.zone == w.zone)
        {
            return Ok(());
        }
        all.push(w);
        self.write(all)
    }

    /// Replace the record with `left` (the file is removed when nothing is left).
    pub fn write(&self, left: Vec<Written>) -> io::Result<()> {
        if left.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        let json = serde_json::to_vec_pretty(&BookFile { written: left })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        write_atomic(&self.path, &json, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Wanted {
        Wanted {
            issuer: "ca.example".into(),
            issuers: vec!["ca.example".into(), "other-name.example".into()],
            account_uri: "https://ca.example/acct/1".into(),
            wildcard: false,
            persist_until: None,
        }
    }

    #[test]
    fn the_value_is_the_drafts_format() {
        let mut w = want();
        assert_eq!(
            w.value(),
            "ca.example; accounturi=https://ca.example/acct/1"
        );
        w.wildcard = true;
        w.persist_until = Some(1830297599);
        assert_eq!(
            w.value(),
            "ca.example; accounturi=https://ca.example/acct/1; policy=wildcard; persistUntil=1830297599"
        );
        assert!(satisfies(&w.value(), &w, 1_800_000_000));
    }

    #[test]
    fn a_value_counts_for_this_ca_and_this_account_only() {
        let w = want();
        let now = 1_800_000_000;
        assert!(satisfies(
            "CA.example.;AccountURI=https://ca.example/acct/1",
            &w,
            now
        ));
        assert!(satisfies(
            "other-name.example; accounturi=https://ca.example/acct/1",
            &w,
            now
        ));
        assert!(!satisfies(
            "ca.example; accounturi=https://ca.example/acct/2",
            &w,
            now
        ));
        assert!(!satisfies(
            "elsewhere.example; accounturi=https://ca.example/acct/1",
            &w,
            now
        ));
        assert!(!satisfies("garbage", &w, now));
        assert!(!satisfies("", &w, now));
    }

    #[test]
    fn wildcards_need_the_policy_and_expired_values_do_not_count() {
        let mut w = want();
        let now = 1_800_000_000;
        let plain = "ca.example; accounturi=https://ca.example/acct/1";
        let wild = "ca.example; accounturi=https://ca.example/acct/1; policy=Wildcard";
        assert!(
            satisfies(wild, &w, now),
            "a wildcard record serves plain names too"
        );
        w.wildcard = true;
        assert!(!satisfies(plain, &w, now));
        assert!(satisfies(wild, &w, now));
        w.wildcard = false;
        let expired = format!("{plain}; persistUntil={}", now - 1);
        assert!(!satisfies(&expired, &w, now));
        let later = format!("{plain}; persistUntil={}", now + 86400);
        assert!(satisfies(&later, &w, now));
        w.persist_until = Some(now + 2 * 86400);
        assert!(
            !satisfies(&later, &w, now),
            "a changed persist_until writes the new value"
        );
    }

    #[test]
    fn the_book_records_each_value_once_and_vanishes_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::new(dir.path(), "web");
        assert_eq!(book.read().unwrap(), vec![]);
        let w = Written {
            dns_server: "primary".into(),
            zone: "example.org".into(),
            owner: "_validation-persist.example.org".into(),
            value: "ca.example; accounturi=https://ca.example/acct/1".into(),
            written_at: 1,
        };
        book.add(w.clone()).unwrap();
        book.add(w.clone()).unwrap();
        assert_eq!(book.read().unwrap(), vec![w]);
        book.write(vec![]).unwrap();
        assert!(!book.path().exists());
    }
}
