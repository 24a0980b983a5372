//! Coalesced RFC 2136 updates: renewals whose changes go to the same zone at about the same moment
//! share one UPDATE message.
//!
//! Why: BIND sends one NOTIFY per zone change and holds the next one back for `notify-delay` (5 s by
//! default), so with many renewals in one zone every UPDATE after the first waits up to 5 s before the
//! secondaries hear of it. One UPDATE carrying everything reaches them with one NOTIFY.
//!
//! How: one queue per (dns server, zone). A submission to an idle queue is sent at once (a lone
//! renewal is never delayed); while an UPDATE is in flight, what arrives waits and goes out as one
//! UPDATE as soon as the one in flight is answered, so under load the batches grow by themselves.
//! There is no timer. A batch the server rejects with a response code (REFUSED, NOTAUTH, NOTZONE, …)
//! changed nothing; it is sent again one submission at a time, so each renewal gets its own answer and
//! one renewal's refused name cannot fail another. A submission cancelled before it was sent is taken
//! out of its queue; one cancelled in flight still completes, and whatever the same renewal submits
//! later for the zone (its cleanup) goes out after it, in order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::error::DnsError;
use super::update::{Change, Updater};

/// The largest batch, by [`Change::wire_size`]: well under the 65535 octets of a DNS message over TCP
/// (BIND takes larger UPDATEs only over TCP, which the transport uses above 512 octets). A submission
/// larger than this still goes out, alone.
pub const MAX_BATCH_BYTES: usize = 32 * 1024;

/// Sends one UPDATE: [`Updater`], or a fake in tests.
pub trait Apply: Send + Sync + 'static {
    fn apply(
        &self,
        zone: &str,
        changes: &[Change],
    ) -> impl Future<Output = Result<(), DnsError>> + Send;
    /// Whether one message may carry the changes of both (same server, key and TTL).
    fn same_target(&self, other: &Self) -> bool;
}

impl Apply for Updater {
    fn apply(
        &self,
        zone: &str,
        changes: &[Change],
    ) -> impl Future<Output = Result<(), DnsError>> + Send {
        Updater::apply(self, zone, changes)
    }
    fn same_target(&self, other: &Self) -> bool {
        Updater::same_target(self, other)
    }
}

/// Whether a rejection may be the fault of one submission only (the server judged the content), so
/// that each submission is worth sending alone. TSIG failures and timeouts concern every submission
/// of the batch alike.
fn rejected_by_content(e: &DnsError) -> bool {
    matches!(
        e,
        DnsError::Refused { .. }
            | DnsError::NotAuth { .. }
            | DnsError::NotZone { .. }
            | DnsError::UpdateFailed { .. }
            | DnsError::OwnerNotInZone { .. }
            | DnsError::InvalidName { .. }
    )
}

/// One renewal's changes for one zone, waiting for its UPDATE.
struct Submission<U> {
    id: u64,
    updater: Arc<U>,
    changes: Vec<Change>,
    done: oneshot::Sender<Result<(), DnsError>>,
}

impl<U> Submission<U> {
    fn size(&self) -> usize {
        self.changes.iter().map(Change::wire_size).sum()
    }
}

struct Queue<U> {
    /// An UPDATE of this queue is in flight (its sender task runs).
    busy: bool,
    waiting: Vec<Submission<U>>,
}

impl<U> Default for Queue<U> {
    fn default() -> Self {
        Queue {
            busy: false,
            waiting: Vec::new(),
        }
    }
}

type Key = (String, String);

struct Inner<U> {
    next_id: u64,
    /// Only queues that are busy or hold submissions: an idle queue is removed.
    queues: HashMap<Key, Queue<U>>,
}

/// The per-(dns server, zone) queues, shared by every renewal of an engine (and kept across reloads).
pub struct Batcher<U: Apply = Updater> {
    /// Never held across an await.
    inner: Arc<Mutex<Inner<U>>>,
}

impl<U: Apply> Default for Batcher<U> {
    fn default() -> Self {
        Batcher {
            inner: Arc::new(Mutex::new(Inner {
                next_id: 0,
                queues: HashMap::new(),
            })),
        }
    }
}

impl<U: Apply> std::fmt::Debug for Batcher<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

/// Takes a waiting submission out of its queue when the renewal stops waiting before it was sent.
struct Withdraw<'a, U: Apply> {
    inner: &'a Mutex<Inner<U>>,
    key: &'a Key,
    id: u64,
    armed: bool,
}

impl<U: Apply> Drop for Withdraw<'_, U> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = lock(self.inner);
        if let Some(q) = inner.queues.get_mut(self.key) {
            q.waiting.retain(|s| s.id != self.id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<U: Apply> Batcher<U> {
    /// Sends `changes` (every owner inside `zone`) to `server` through `updater`, in one UPDATE with
    /// whatever else is waiting for the same server and zone, and returns this submission's outcome.
    pub async fn submit(
        &self,
        server: &str,
        updater: &Arc<U>,
        zone: &str,
        changes: Vec<Change>,
    ) -> Result<(), DnsError> {
        if changes.iter().all(|c| c.values.is_empty()) {
            return Ok(());
        }
        let key: Key = (server.to_string(), zone.to_string());
        let (done, answer) = oneshot::channel();
        let (id, start) = {
            let mut inner = lock(&self.inner);
            let id = inner.next_id;
            inner.next_id += 1;
            let q = inner.queues.entry(key.clone()).or_default();
            q.waiting.push(Submission {
                id,
                updater: updater.clone(),
                changes,
                done,
            });
            let start = !q.busy;
            q.busy = true;
            (id, start)
        };
        let mut withdraw = Withdraw {
            inner: &self.inner,
            key: &key,
            id,
            armed: true,
        };
        if start {
            // A task of its own: the UPDATE and the batches after it must not depend on this
            // renewal staying around (it may be cancelled).
            tokio::spawn(drain(self.inner.clone(), key.clone()));
        }
        let result = answer.await;
        withdraw.armed = false;
        // The sender task always answers; a dropped sender would mean a panic in it.
        result.unwrap_or_else(|_| {
            Err(DnsError::Malformed {
                server: super::error::ServerRef::new(server, ([0, 0, 0, 0], 0).into()),
                reason: "the update task ended without an answer".to_string(),
            })
        })
    }
}

/// The next batch of a queue: the oldest submission, and after it those that go to the same target,
/// in order, while the batch stays under [`MAX_BATCH_BYTES`]. None (and the queue marked idle and
/// removed) when nothing waits.
fn take_batch<U: Apply>(inner: &Mutex<Inner<U>>, key: &Key) -> Option<Vec<Submission<U>>> {
    let mut inner = lock(inner);
    let q = inner.queues.get_mut(key)?;
    if q.waiting.is_empty() {
        inner.queues.remove(key);
        return None;
    }
    let first = q.waiting.remove(0);
    let mut size = first.size();
    let mut batch = vec![first];
    let mut rest = Vec::with_capacity(q.waiting.len());
    let mut full = false;
    for s in q.waiting.drain(..) {
        // Stop at the first one that does not fit (or targets another key): order is kept.
        if !full && s.updater.same_target(&batch[0].updater) && size + s.size() <= MAX_BATCH_BYTES {
            size += s.size();
            batch.push(s);
        } else {
            full = true;
            rest.push(s);
        }
    }
    q.waiting = rest;
    Some(batch)
}

/// The sender task of one queue: one batch after another until nothing waits.
async fn drain<U: Apply>(inner: Arc<Mutex<Inner<U>>>, key: Key) {
    while let Some(batch) = take_batch(&inner, &key) {
        send(&key.1, batch).await;
    }
}

async fn send<U: Apply>(zone: &str, batch: Vec<Submission<U>>) {
    let changes: Vec<Change> = batch.iter().flat_map(|s| s.changes.clone()).collect();
    let result = batch[0].updater.apply(zone, &changes).await;
    match result {
        Err(e) if batch.len() > 1 && rejected_by_content(&e) => {
            tracing::debug!(%zone, submissions = batch.len(), error = %e,
                "coalesced update rejected; sending each submission alone");
            let alone = batch.into_iter().map(|s| async move {
                let r = s.updater.apply(zone, &s.changes).await;
                let _ = s.done.send(r);
            });
            futures::future::join_all(alone).await;
        }
        result => {
            if batch.len() > 1 {
                tracing::debug!(%zone, submissions = batch.len(), changes = changes.len(),
                    ok = result.is_ok(), "coalesced update");
            }
            for s in batch {
                let _ = s.done.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::error::ServerRef;
    use crate::dns::update::Op;
    use std::time::Duration;
    use tokio::sync::{mpsc, Semaphore};

    /// Records every UPDATE (its owners) and answers it when the test lets it; REFUSED when an owner
    /// starts with `denied`.
    struct Fake {
        target: u8,
        sent: mpsc::UnboundedSender<Vec<String>>,
        gate: Arc<Semaphore>,
    }

    impl Apply for Fake {
        async fn apply(&self, zone: &str, changes: &[Change]) -> Result<(), DnsError> {
            let owners: Vec<String> = changes.iter().map(|c| c.owner.clone()).collect();
            self.sent.send(owners.clone()).unwrap();
            self.gate.acquire().await.unwrap().forget();
            match owners.iter().find(|o| o.starts_with("denied")) {
                Some(owner) => Err(DnsError::Refused {
                    server: ServerRef::new("fake", ([127, 0, 0, 1], 53).into()),
                    zone: zone.to_string(),
                    owner: owner.clone(),
                    key: "k".to_string(),
                }),
                None => Ok(()),
            }
        }
        fn same_target(&self, other: &Self) -> bool {
            self.target == other.target
        }
    }

    fn fake(
        target: u8,
    ) -> (
        Arc<Fake>,
        mpsc::UnboundedReceiver<Vec<String>>,
        Arc<Semaphore>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let f = Fake {
            target,
            sent: tx,
            gate: gate.clone(),
        };
        (Arc::new(f), rx, gate)
    }

    fn key() -> Key {
        ("s".to_string(), "z".to_string())
    }

    fn add(owner: &str) -> Vec<Change> {
        vec![Change::new(Op::Add, owner, &["v"])]
    }

    #[tokio::test]
    async fn a_lone_submission_goes_at_once_and_later_ones_share_the_next_update() {
        let b = Arc::new(Batcher::<Fake>::default());
        let (u, mut sent, gate) = fake(1);
        let submit = |owner: &'static str| {
            let (b, u) = (b.clone(), u.clone());
            tokio::spawn(async move { b.submit("s", &u, "z", add(owner)).await })
        };
        let first = submit("a");
        // Sent without waiting for anything else.
        assert_eq!(sent.recv().await.unwrap(), vec!["a"]);
        let later: Vec<_> = ["b", "c", "d"].into_iter().map(submit).collect();
        tokio::task::yield_now().await;
        while lock(&b.inner).queues[&key()].waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        first.await.unwrap().unwrap();
        let mut next = sent.recv().await.unwrap();
        next.sort();
        assert_eq!(next, vec!["b", "c", "d"], "one UPDATE for all three");
        gate.add_permits(1);
        for h in later {
            h.await.unwrap().unwrap();
        }
        assert!(sent.try_recv().is_err(), "no further UPDATE");
        assert!(
            lock(&b.inner).queues.is_empty(),
            "the idle queue is dropped"
        );
    }

    #[tokio::test]
    async fn a_refused_batch_is_sent_again_per_submission() {
        let b = Arc::new(Batcher::<Fake>::default());
        let (u, mut sent, gate) = fake(1);
        gate.add_permits(100);
        // Hold the queue busy with a first UPDATE so the next three are batched.
        let (blocker, mut blocker_sent, blocker_gate) = fake(1);
        let b2 = b.clone();
        let first = tokio::spawn(async move { b2.submit("s", &blocker, "z", add("x")).await });
        blocker_sent.recv().await.unwrap();
        let hs: Vec<_> = ["ok1", "denied1", "ok2"]
            .into_iter()
            .map(|o| {
                let (b, u) = (b.clone(), u.clone());
                tokio::spawn(async move { b.submit("s", &u, "z", add(o)).await })
            })
            .collect();
        while lock(&b.inner).queues[&key()].waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        blocker_gate.add_permits(1);
        first.await.unwrap().unwrap();
        let results: Vec<_> = futures::future::join_all(hs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        match &results[1] {
            Err(DnsError::Refused { owner, .. }) => assert_eq!(owner, "denied1"),
            other => panic!("{other:?}"),
        }
        // One batch of three, then each alone.
        let mut messages = Vec::new();
        while let Ok(m) = sent.try_recv() {
            messages.push(m);
        }
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert_eq!(messages[0].len(), 3);
    }

    #[tokio::test]
    async fn a_cancelled_waiting_submission_is_not_sent() {
        let b = Arc::new(Batcher::<Fake>::default());
        let (u, mut sent, gate) = fake(1);
        let b1 = b.clone();
        let u1 = u.clone();
        let first = tokio::spawn(async move { b1.submit("s", &u1, "z", add("a")).await });
        sent.recv().await.unwrap();
        let b2 = b.clone();
        let u2 = u.clone();
        let cancelled = tokio::spawn(async move { b2.submit("s", &u2, "z", add("b")).await });
        while lock(&b.inner).queues[&key()].waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        cancelled.abort();
        let _ = cancelled.await;
        gate.add_permits(10);
        first.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !lock(&b.inner).queues.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(
            sent.try_recv().is_err(),
            "the withdrawn submission was sent"
        );
    }

    #[tokio::test]
    async fn batches_keep_order_and_split_at_another_target_or_the_size_cap() {
        let b = Batcher::<Fake>::default();
        let (u1, _s1, _g1) = fake(1);
        let (u2, _s2, _g2) = fake(2);
        let key = key();
        let big = "x".repeat(MAX_BATCH_BYTES / 2);
        let mut inner = lock(&b.inner);
        let q = inner.queues.entry(key.clone()).or_default();
        let mut push = |u: &Arc<Fake>, owner: &str, value: &str| {
            let id = q.waiting.len() as u64;
            q.waiting.push(Submission {
                id,
                updater: u.clone(),
                changes: vec![Change::new(Op::Add, owner, &[value])],
                done: oneshot::channel().0,
            });
        };
        push(&u1, "a", "v");
        push(&u1, "b", "v");
        push(&u2, "c", "v");
        push(&u1, "d", "v");
        push(&u1, "e", &big);
        push(&u1, "f", &big);
        push(&u1, "g", "v");
        drop(inner);
        let owners = |batch: Vec<Submission<Fake>>| -> Vec<String> {
            batch.iter().map(|s| s.changes[0].owner.clone()).collect()
        };
        assert_eq!(owners(take_batch(&b.inner, &key).unwrap()), ["a", "b"]);
        assert_eq!(owners(take_batch(&b.inner, &key).unwrap()), ["c"]);
        assert_eq!(owners(take_batch(&b.inner, &key).unwrap()), ["d", "e"]);
        assert_eq!(owners(take_batch(&b.inner, &key).unwrap()), ["f", "g"]);
        assert!(take_batch(&b.inner, &key).is_none());
        assert!(lock(&b.inner).queues.is_empty());
    }
}
