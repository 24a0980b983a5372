//! The daemon's view of the cluster: every certificate with a version in etcd is reported to the loop at
//! start and after every reconnect (catch-up), then every new version written by another member and
//! every lock given back (released, or its member's lease ran out) as it happens, through one etcd
//! watch on `P/certs/`. The loop decides what to do (install the version, or try to renew now).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;

use super::{Cluster, ClusterError, Version};
use crate::core::{ClusterNews, Input};
use crate::state::StateDir;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Follow the cluster until the loop's input closes.
pub async fn follow(cluster: Arc<Cluster>, state: StateDir, tx: UnboundedSender<Input>) {
    let mut pause = RETRY_FIRST;
    loop {
        match follow_once(&cluster, &state, &tx, &mut pause).await {
            Ok(()) => return, // the loop is gone
            // The first failure after a working watch is worth a line; while etcd stays away the
            // cluster's health (logged once, in STATUS= and status.json) says it.
            Err(e) if pause == RETRY_FIRST => {
                tracing::warn!(error = %e, "watching the cluster stopped; watching again in {}",
                    humantime::format_duration(pause));
            }
            Err(e) => tracing::debug!(error = %e, "watching the cluster again in {}",
                humantime::format_duration(pause)),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Which certificate a key under `P/certs/` is about, and what it is: `(name, leaf)`.
fn split<'k>(prefix: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

/// The serial of each version in the cluster, by certificate (one read of the prefix).
fn versions(prefix: &str, kvs: &[etcd_client::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .filter_map(|kv| {
            let (name, leaf) = split(prefix, kv.key_str().ok()?)?;
            let v: Version = serde_json::from_slice(kv.value()).ok()?;
            (leaf == "version").then(|| (name.to_string(), v.serial))
        })
        .collect()
}

async fn follow_once(
    cluster: &Arc<Cluster>,
    state: &StateDir,
    tx: &UnboundedSender<Input>,
    pause: &mut Duration,
) -> Result<(), ClusterError> {
    let prefix = cluster.certs_prefix();
    let p = prefix.clone();
    let all = cluster
        .call("reading the versions", |mut c| {
            let p = p.clone();
            async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    let revision = all.header().map(|h| h.revision()).unwrap_or(0);
    // Catch up: the versions this member does not have live (it started, or was away).
    let in_cluster = versions(&prefix, all.kvs());
    let state = state.clone();
    let behind: Vec<String> = tokio::task::spawn_blocking(move || {
        in_cluster
            .into_iter()
            .filter(|(name, serial)| {
                let live = crate::live::read_live(&state, name).ok().flatten();
                live.is_none_or(|l| &l.facts.serial != serial)
            })
            .map(|(name, _)| name)
            .collect()
    })
    .await
    .unwrap_or_default();
    if !behind.is_empty() {
        tracing::info!(certificates = %behind.join(", "), "the cluster has newer versions: installing them");
        if tx
            .send(Input::Cluster(ClusterNews::Versions(behind)))
            .is_err()
        {
            return Ok(());
        }
    }
    let p = prefix.clone();
    let mut stream = cluster
        .call("watching the versions", |mut c| {
            let p = p.clone();
            async move {
                c.watch(
                    p,
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await
            }
        })
        .await?;
    *pause = RETRY_FIRST;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(cluster.unavailable("watching", "the watch stream ended")),
            Err(e) => return Err(cluster.classify("watching", e)),
        };
        if msg.canceled() {
            let reason = msg.cancel_reason().to_string();
            return Err(cluster.unavailable("watching", format!("etcd ended the watch: {reason}")));
        }
        let (mut versions, mut unlocked) = (BTreeSet::new(), BTreeSet::new());
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some((name, leaf)) = kv.key_str().ok().and_then(|k| split(&prefix, k)) else {
                continue;
            };
            match (ev.event_type(), leaf) {
                (EventType::Put, "version") => {
                    // This member's own renewals are installed by themselves.
                    let by = serde_json::from_slice::<Version>(kv.value())
                        .map(|v| v.renewed_by)
                        .unwrap_or_default();
                    if by != cluster.member() {
                        versions.insert(name.to_string());
                    }
                }
                (EventType::Delete, "lock") => {
                    unlocked.insert(name.to_string());
                }
                _ => {}
            }
        }
        for news in [
            ClusterNews::Versions(versions.into_iter().collect()),
            ClusterNews::Unlocked(unlocked.into_iter().collect()),
        ] {
            let empty = matches!(&news, ClusterNews::Versions(v) | ClusterNews::Unlocked(v) if v.is_empty());
            if !empty && tx.send(Input::Cluster(news)).is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_split_into_certificate_and_leaf() {
        let p = "/renewd/certs/";
        assert_eq!(
            super::split(p, "/renewd/certs/www/version"),
            Some(("www", "version"))
        );
        assert_eq!(
            super::split(p, "/renewd/certs/www/deployed/web1"),
            Some(("www", "deployed/web1"))
        );
        assert_eq!(super::split(p, "/renewd/accounts/le"), None);
    }
}
