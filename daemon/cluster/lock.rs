//! A certificate's lock in etcd: a key created only when absent (a transaction), bound to a lease of
//! [`LOCK_TTL`] seconds that a task keeps alive while the renewal runs. When the member dies the lease
//! runs out and the key disappears (a watch event every member sees). Writes made under the lock are
//! transactions that hold only while the key still carries this lease ([`Cluster::publish`]).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use super::{Cluster, ClusterError, CALL_TIMEOUT, LOCK_TTL};

pub struct CertLock {
    cluster: Arc<Cluster>,
    key: String,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl CertLock {
    pub(super) async fn acquire(
        cluster: &Arc<Cluster>,
        name: &str,
    ) -> Result<CertLock, ClusterError> {
        let key = cluster.cert_key(name, "lock");
        let lease = cluster
            .call("taking a lease", |mut c| async move {
                c.lease_grant(LOCK_TTL, None).await
            })
            .await?
            .id();
        let member = cluster.member().to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                member,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = match cluster
            .call("taking a certificate's lock", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                revoke(cluster, lease).await;
                return Err(e);
            }
        };
        let holder = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| (kv.lease(), String::from_utf8_lossy(kv.value()).into_owned())),
            _ => None,
        });
        // Not created now, but with our lease: an earlier try of this request that seemed to fail
        // (no answer in time) went through.
        let ours = holder.as_ref().is_some_and(|(l, _)| *l == lease);
        if !resp.succeeded() && !ours {
            revoke(cluster, lease).await;
            return Err(ClusterError::Held {
                member: holder.map(|(_, m)| m).unwrap_or_else(|| "?".into()),
                key,
            });
        }
        let (tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(cluster.clone(), lease, tx));
        Ok(CertLock {
            cluster: cluster.clone(),
            key,
            lease,
            lost,
            keeper,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Resolves when the lease could not be kept alive (the lock may be someone else's by now).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Give the lock back at once (others see the key deleted).
    pub async fn release(self) {
        self.keeper.abort();
        revoke(&self.cluster, self.lease).await;
    }
}

impl Drop for CertLock {
    fn drop(&mut self) {
        // Without release(): the lease ends by itself within LOCK_TTL.
        self.keeper.abort();
    }
}

async fn revoke(cluster: &Arc<Cluster>, lease: i64) {
    let _ = cluster
        .call("giving a lock back", |mut c| async move {
            c.lease_revoke(lease).await
        })
        .await;
}

/// Renew the lease every third of its TTL. A keep-alive stream that fails is opened again (through
/// another endpoint if need be) once; when that fails too, or etcd says the lease expired, the lock is
/// lost and the renewal is told.
async fn keep_alive(cluster: Arc<Cluster>, lease: i64, lost: watch::Sender<bool>) {
    let every = Duration::from_secs((LOCK_TTL as u64 / 3).max(1));
    let mut streams = None;
    loop {
        tokio::time::sleep(every).await;
        let mut kept = false;
        for _ in 0..2 {
            if streams.is_none() {
                streams = cluster
                    .call("keeping a lock", |mut c| async move {
                        c.lease_keep_alive(lease).await
                    })
                    .await
                    .ok();
            }
            let Some((keeper, stream)) = streams.as_mut() else {
                break;
            };
            let alive = async {
                keeper.keep_alive().await.ok()?;
                let r = stream.message().await.ok()??;
                Some(r.ttl() > 0)
            };
            match tokio::time::timeout(CALL_TIMEOUT, alive).await {
                Ok(Some(true)) => {
                    kept = true;
                    break;
                }
                // etcd says the lease is gone: no second try.
                Ok(Some(false)) => break,
                _ => streams = None,
            }
        }
        if !kept {
            tracing::warn!(lease, "the cluster lock's lease could not be kept alive");
            let _ = lost.send(true);
            return;
        }
    }
}
