//! The cleanup journal: every TXT value renewd publishes is recorded here (fsynced) *before* the UPDATE is
//! sent, and dropped only after it was deleted again. A run killed in between leaves the record behind; the
//! next renewd command that talks to DNS removes those values ([`recover`]).
//!
//! Each process owns a token. Its records are `journal/TOKEN.SEQ.json`, and it holds an exclusive `flock`
//! on `journal/TOKEN.lock` for as long as it lives. A record whose token's lock can be taken belongs to a
//! dead process, so it is stale; a record of a live process (the daemon while `renewd renew` runs by hand)
//! is left alone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::fsread::{self, SECRET_MAX};
use crate::state::{create_private_dir, fsync_dir, write_atomic};

/// One published TXT value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The certificate it was published for.
    pub cert: String,
    /// The `dns_servers` entry it was sent to.
    pub dns_server: String,
    pub zone: String,
    pub owner: String,
    pub value: String,
    /// Unix seconds.
    pub published_at: u64,
}

/// This process's journal handle.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    token: String,
    seq: AtomicU64,
    _lock: File,
}

/// Where a record is, so it can be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    path: PathBuf,
}

impl Journal {
    /// Open the journal directory and take this process's token lock.
    pub fn open(dir: &Path) -> io::Result<Self> {
        create_private_dir(dir)?;
        let token = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        let lock_path = dir.join(format!("{token}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        flock(&lock, libc::LOCK_EX | libc::LOCK_NB)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            token,
            seq: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Record a value before publishing it.
    pub fn add(&self, record: &Record) -> io::Result<Entry> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}.{seq}.json", self.token));
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        write_atomic(&path, &json, 0o600)?;
        Ok(Entry { path })
    }

    /// Drop a record once its value is deleted from DNS.
    pub fn remove(&self, entry: &Entry) -> io::Result<()> {
        remove_entry(&entry.path)
    }

    /// Records left behind by processes that are gone.
    pub fn stale(&self) -> io::Result<Vec<(Entry, Record)>> {
        let mut out = Vec::new();
        let mut tokens_checked: std::collections::BTreeMap<String, bool> = Default::default();
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let Some(token) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .map(str::to_string)
            else {
                continue;
            };
            if token == self.token {
                continue;
            }
            let dead = match tokens_checked.get(&token) {
                Some(d) => *d,
                None => {
                    let d = owner_is_gone(&self.dir, &token);
                    tokens_checked.insert(token.clone(), d);
                    d
                }
            };
            if !dead {
                continue;
            }
            match read_record(&path) {
                Ok(rec) => out.push((Entry { path }, rec)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error,
                        "removing an unreadable cleanup journal record");
                    let _ = remove_entry(&path);
                }
            }
        }
        Ok(out)
    }

    /// Remove lock files of dead processes that have no records left.
    pub fn prune_locks(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for name in &names {
            let Some(token) = name.strip_suffix(".lock") else {
                continue;
            };
            if token == self.token {
                continue;
            }
            let has_records = names
                .iter()
                .any(|n| n.starts_with(&format!("{token}.")) && n.ends_with(".json"));
            if !has_records && owner_is_gone(&self.dir, token) {
                let _ = fs::remove_file(self.dir.join(name));
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Our lock file goes too if we left no records behind.
        let prefix = format!("{}.", self.token);
        let has_records = fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()).any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with(&prefix) && n.ends_with(".json")
                })
            })
            .unwrap_or(true);
        if !has_records {
            let _ = fs::remove_file(self.dir.join(format!("{}.lock", self.token)));
        }
    }
}

/// One record: a small regular file ([`SECRET_MAX`]) holding its JSON.
fn read_record(path: &Path) -> Result<Record, String> {
    let bytes = fsread::read_capped(path, SECRET_MAX).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a journal record: {e}"))
}

fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// True when nobody holds `TOKEN.lock` (or it is missing): its process has exited.
fn owner_is_gone(dir: &Path, token: &str) -> bool {
    match File::open(dir.join(format!("{token}.lock"))) {
        Ok(f) => flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_ok(),
        Err(_) => true,
    }
    // The probe's lock is released when `f` is dropped.
}

fn flock(f: &File, how: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a valid, open file descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &str) -> Record {
        Record {
            cert: "web".into(),
            dns_server: "primary".into(),
            zone: "_acme-challenge.web.example.test".into(),
            owner: "_acme-challenge.web.example.test".into(),
            value: v.into(),
            published_at: 1,
        }
    }

    #[test]
    fn live_records_are_not_stale_and_dead_ones_are() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Journal::open(tmp.path()).unwrap();
        let b = Journal::open(tmp.path()).unwrap();
        let e1 = a.add(&rec("one")).unwrap();
        a.add(&rec("two")).unwrap();
        // `a` is alive (holds its lock): nothing of it is stale for `b`.
        assert!(b.stale().unwrap().is_empty());
        // Simulate a killed process: the records stay, the lock is released.
        a.remove(&e1).unwrap();
        drop(a);
        let stale = b.stale().unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].1.value, "two");
        b.remove(&stale[0].0).unwrap();
        b.prune_locks();
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![format!("{}.lock", b.token)]);
    }

    #[test]
    fn an_oversized_or_special_record_is_dropped_without_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let live = Journal::open(tmp.path()).unwrap();
        // A dead process's token (no lock held) with a huge sparse record and a FIFO record.
        let huge = tmp.path().join("1-dead.0.json");
        File::create(&huge)
            .unwrap()
            .set_len(10 * SECRET_MAX)
            .unwrap();
        let fifo = tmp.path().join("1-dead.1.json");
        crate::testutil::mkfifo(&fifo);
        assert!(live.stale().unwrap().is_empty());
        assert!(!huge.exists() && fs::symlink_metadata(&fifo).is_err());
    }
}
