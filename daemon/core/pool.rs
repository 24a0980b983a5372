//! The worker pool: at most `limit` jobs working at once, for `renewd run` and `renewd renew` alike.
//!
//! The loop is the only place that starts jobs, and it starts one only when [`Pool::has_room`]: the bound
//! is a count, not a semaphore, so changing it on reload can never let more jobs run than the new limit
//! allows (a smaller limit just starts nothing until enough jobs have finished).
//!
//! A job that waits for others (the secondaries to serve its TXT values, the CA to validate) does so
//! inside [`parked`]: it gives its place back, so another renewal can start and publish meanwhile (with
//! all challenges in one zone, renewals that publish together are served together after one NOTIFY),
//! and asks for a place again when the wait is over, before anything new starts. Parked jobs are
//! bounded too: at most [`IN_FLIGHT_PER_WORKER`] × `limit` jobs are in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::{Id, JoinSet};

/// Jobs in flight (working, parked, or waiting for their place back) per worker place.
pub const IN_FLIGHT_PER_WORKER: usize = 8;

/// The counts the pool and its jobs share.
#[derive(Debug, Default)]
struct Counts {
    limit: usize,
    /// Jobs holding a place.
    active: usize,
    /// Jobs waiting inside [`parked`] (or for their place back).
    parked: usize,
    /// Parked jobs whose wait is over, waiting for a place: they go before new jobs.
    resuming: usize,
}

#[derive(Debug, Default)]
struct Gate {
    counts: Mutex<Counts>,
    /// A place was given back: resuming jobs look again.
    freed: Notify,
    /// The loop: a place was given back by a job that goes on running (it cannot see that by joining).
    room: Notify,
}

impl Gate {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One job's place: held by the job's task for its whole life (dropping the task gives it back).
#[derive(Debug)]
struct Place {
    gate: Arc<Gate>,
    parked: AtomicBool,
}

/// The job's side of its place; dropped with the job's future, polled or not.
struct PlaceGuard(Arc<Place>);

impl Drop for PlaceGuard {
    fn drop(&mut self) {
        let place = &self.0;
        let mut c = place.gate.counts();
        if place.parked.load(Ordering::SeqCst) {
            c.parked -= 1;
        } else {
            c.active -= 1;
            drop(c);
            place.gate.freed.notify_waiters();
        }
    }
}

/// A parked job waiting for its place back; dropping it (the job cancelled meanwhile) stops counting it.
struct Resuming<'a>(&'a Gate);

impl Drop for Resuming<'_> {
    fn drop(&mut self) {
        let mut c = self.0.counts();
        c.resuming -= 1;
        let room = c.resuming == 0 && c.active < c.limit;
        drop(c);
        if room {
            // New jobs were held back for the resuming ones.
            self.0.room.notify_one();
        }
    }
}

tokio::task_local! {
    static PLACE: Arc<Place>;
}

/// Wait for `wait` without holding a worker place (see the module's description). Outside a pool job
/// (`renew --dry-run`, `dns-test`) it just waits.
pub async fn parked<F: Future>(wait: F) -> F::Output {
    let Ok(place) = PLACE.try_with(Arc::clone) else {
        return wait.await;
    };
    {
        let mut c = place.gate.counts();
        c.active -= 1;
        c.parked += 1;
        place.parked.store(true, Ordering::SeqCst);
    }
    place.gate.freed.notify_waiters();
    place.gate.room.notify_one();
    let out = wait.await;
    let gate = &place.gate;
    gate.counts().resuming += 1;
    let _resuming = Resuming(gate);
    loop {
        let freed = gate.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        {
            let mut c = gate.counts();
            if c.active < c.limit {
                c.active += 1;
                c.parked -= 1;
                place.parked.store(false, Ordering::SeqCst);
                return out;
            }
        }
        freed.await;
    }
}

pub struct Pool<T> {
    tasks: JoinSet<T>,
    /// Which certificate each running task works for (to report a task that panicked).
    names: HashMap<Id, String>,
    gate: Arc<Gate>,
}

/// A finished job: its output, or the name of the certificate whose task panicked (a bug).
pub enum Joined<T> {
    Done(T),
    Panicked { name: String, reason: String },
}

impl<T: Send + 'static> Pool<T> {
    pub fn new(limit: usize) -> Self {
        let gate = Gate::default();
        gate.counts().limit = limit.max(1);
        Pool {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            gate: Arc::new(gate),
        }
    }

    /// A new bound, for the jobs started (or resumed) from now on.
    pub fn set_limit(&mut self, limit: usize) {
        self.gate.counts().limit = limit.max(1);
        self.gate.freed.notify_waiters();
    }

    /// Jobs started and not yet joined (working or parked).
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Jobs holding a place: working, not parked.
    pub fn active(&self) -> usize {
        self.gate.counts().active
    }

    /// Room for a new job: a free place nobody resuming wants, and fewer than
    /// [`IN_FLIGHT_PER_WORKER`] × limit jobs in flight.
    pub fn has_room(&self) -> bool {
        let c = self.gate.counts();
        c.active < c.limit
            && c.resuming == 0
            && self.tasks.len() < c.limit.saturating_mul(IN_FLIGHT_PER_WORKER)
    }

    /// Resolves when a parked job gave its place back (the loop then starts what waits).
    pub fn room(&self) -> impl Future<Output = ()> + Send + 'static {
        let gate = self.gate.clone();
        async move { gate.room.notified().await }
    }

    /// Start `job` for certificate `name`. The caller checked [`Pool::has_room`].
    pub fn spawn(&mut self, name: &str, job: impl Future<Output = T> + Send + 'static) {
        debug_assert!(self.has_room(), "the worker bound is exceeded");
        self.gate.counts().active += 1;
        let place = Arc::new(Place {
            gate: self.gate.clone(),
            parked: AtomicBool::new(false),
        });
        let guard = PlaceGuard(place.clone());
        let job = PLACE.scope(place, async move {
            let _guard = guard;
            job.await
        });
        let handle = self.tasks.spawn(job);
        self.names.insert(handle.id(), name.to_string());
    }

    /// The next finished job; pending forever when none runs (for `select!`).
    pub async fn join_next(&mut self) -> Joined<T> {
        loop {
            match self.tasks.join_next_with_id().await {
                Some(Ok((id, out))) => {
                    self.names.remove(&id);
                    return Joined::Done(out);
                }
                Some(Err(e)) => {
                    let name = self.names.remove(&e.id()).unwrap_or_default();
                    if e.is_cancelled() {
                        continue;
                    }
                    return Joined::Panicked {
                        name,
                        reason: e.to_string(),
                    };
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// A job that has already finished, without waiting.
    pub fn try_join_next(&mut self) -> Option<Joined<T>> {
        loop {
            match self.tasks.try_join_next_with_id()? {
                Ok((id, out)) => {
                    self.names.remove(&id);
                    return Some(Joined::Done(out));
                }
                Err(e) => {
                    let name = self.names.remove(&e.id()).unwrap_or_default();
                    if !e.is_cancelled() {
                        return Some(Joined::Panicked {
                            name,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stop every job at its next await point (the last resort of a shutdown).
    pub fn abort_all(&mut self) {
        self.tasks.abort_all();
    }
}
