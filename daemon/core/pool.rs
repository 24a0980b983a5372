//! The worker pool: at most `limit` jobs at once, for `renewd run` and `renewd renew` alike.
//!
//! The loop is the only place that starts jobs, and it starts one only when [`Pool::has_room`]: the bound
//! is a count, not a semaphore, so changing it on reload can never let more jobs run than the new limit
//! allows (a smaller limit just starts nothing until enough jobs have finished).

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

pub struct Pool<T> {
    limit: usize,
    tasks: JoinSet<T>,
    /// Which certificate each running task works for (to report a task that panicked).
    names: HashMap<Id, String>,
}

/// A finished job: its output, or the name of the certificate whose task panicked (a bug).
pub enum Joined<T> {
    Done(T),
    Panicked { name: String, reason: String },
}

impl<T: Send + 'static> Pool<T> {
    pub fn new(limit: usize) -> Self {
        Pool {
            limit: limit.max(1),
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// A new bound, for the jobs started from now on.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Jobs started and not yet joined.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    pub fn has_room(&self) -> bool {
        self.tasks.len() < self.limit
    }

    /// Start `job` for certificate `name`. The caller checked [`Pool::has_room`].
    pub fn spawn(&mut self, name: &str, job: impl Future<Output = T> + Send + 'static) {
        debug_assert!(self.has_room(), "the worker bound is exceeded");
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
