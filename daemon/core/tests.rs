//! The real event loop ([`run`], [`run_once`]) driven with tokio's paused clock: a fake [`Work`] whose
//! renewals take virtual time and succeed or fail as a test says, a wall clock that moves with tokio's.
//! Virtual time only moves when every task is idle, so these tests also show that the loop sleeps until
//! a deadline instead of polling: a polling loop would never let the clock jump, and its turn count
//! (`Scheduler::turns`) would be in the millions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use super::*;
use crate::acme::{AcmeError, Ca, RenewalWindow};
use crate::certs::CertFacts;
use crate::config::{PropagationSettings, Settings};
use crate::phase::Phase;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

/// The wall clock of these tests: a fixed start, moving with tokio's paused clock.
struct PausedClock {
    wall0: SystemTime,
    mono0: tokio::time::Instant,
}

impl PausedClock {
    fn new() -> Arc<Self> {
        Arc::new(PausedClock {
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            mono0: tokio::time::Instant::now(),
        })
    }

    fn elapsed(&self) -> Duration {
        self.mono0.elapsed()
    }
}

impl Clock for PausedClock {
    fn now(&self) -> SystemTime {
        self.wall0 + self.mono0.elapsed()
    }
}

/// How a fake renewal ends.
#[derive(Clone, Debug)]
enum Ends {
    Ok,
    Transient,
    /// The CA answered 429 with Retry-After this long after the failure.
    RateLimited(Duration),
    /// Never (until cancelled).
    Hangs,
    /// `cluster:` another member holds the certificate's lock.
    ClusterHeld,
    /// `cluster:` etcd has no quorum.
    ClusterDown,
    /// Works `delay`, waits this long inside `pool::parked` (as for the DNS), works `delay` again.
    Parks(Duration),
}

/// A fake of the work the loop hands out: renewals take `delay` of virtual time.
struct Fake {
    clock: Arc<PausedClock>,
    delay: Duration,
    /// How the n-th renewal of a certificate ends (the last entry repeats).
    plan: Mutex<HashMap<String, Vec<Ends>>>,
    lifetime: Duration,
    /// The live certificate of each name: (notBefore, serial).
    live: Mutex<HashMap<String, (SystemTime, u8)>>,
    /// (name, virtual elapsed time) of every start.
    starts: Mutex<Vec<(String, Duration)>>,
    /// Renewals holding a worker place (not parked), and the most at once.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Renewals started and not finished, parked or not, and the most at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    started_tx: mpsc::UnboundedSender<String>,
    /// The CA's renewal window (start and end after the issuance, Retry-After); None: no ARI.
    window: Mutex<Option<(Duration, Duration, Duration)>>,
    window_requests: AtomicUsize,
    redeploys: AtomicUsize,
}

impl Fake {
    fn new(
        clock: Arc<PausedClock>,
        delay: Duration,
    ) -> (Arc<Fake>, mpsc::UnboundedReceiver<String>) {
        let (started_tx, rx) = mpsc::unbounded_channel();
        let fake = Arc::new(Fake {
            clock,
            delay,
            plan: Mutex::new(HashMap::new()),
            lifetime: 90 * DAY,
            live: Mutex::new(HashMap::new()),
            starts: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            started_tx,
            window: Mutex::new(None),
            window_requests: AtomicUsize::new(0),
            redeploys: AtomicUsize::new(0),
        });
        (fake, rx)
    }

    fn plan(&self, name: &str, ends: Vec<Ends>) {
        self.plan.lock().unwrap().insert(name.into(), ends);
    }

    fn issued(&self, name: &str, not_before: SystemTime) {
        let mut live = self.live.lock().unwrap();
        let serial = live.get(name).map_or(1, |(_, s)| s + 1);
        live.insert(name.into(), (not_before, serial));
    }

    fn starts(&self) -> Vec<(String, Duration)> {
        self.starts.lock().unwrap().clone()
    }

    fn live_cert(&self, name: &str) -> Option<LiveCert> {
        let (nb, serial) = *self.live.lock().unwrap().get(name)?;
        Some(LiveCert {
            facts: CertFacts {
                serial: format!("{serial:02X}"),
                not_before: nb,
                not_after: nb + self.lifetime,
                dns_names: vec![format!("{name}.example.test")],
                public_key: vec![],
                authority_key_id: Some(vec![0xAA]),
                raw_serial: vec![serial],
                subject: String::new(),
                issuer: String::new(),
            },
            key_matches: true,
        })
    }

    fn ends(&self, name: &str, n: usize) -> Ends {
        let plan = self.plan.lock().unwrap();
        match plan.get(name) {
            Some(v) if !v.is_empty() => v[n.min(v.len() - 1)].clone(),
            _ => Ends::Ok,
        }
    }
}

impl Work for Fake {
    fn renew(
        self: Arc<Self>,
        spec: Arc<CertSpec>,
        mut cancel: watch::Receiver<bool>,
    ) -> BoxFuture<Result<Renewed, RenewError>> {
        Box::pin(async move {
            let n = {
                let mut starts = self.starts.lock().unwrap();
                let n = starts.iter().filter(|(s, _)| *s == spec.name).count();
                starts.push((spec.name.clone(), self.clock.elapsed()));
                n
            };
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(running, Ordering::SeqCst);
            let _ = self.started_tx.send(spec.name.clone());
            let ends = self.ends(&spec.name, n);
            let delay = match ends {
                Ends::Hangs => 3650 * DAY,
                _ => self.delay,
            };
            let flying = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(flying, Ordering::SeqCst);
            let cancelled = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = cancel.wait_for(|c| *c) => true,
            };
            if let (false, Ends::Parks(wait)) = (cancelled, &ends) {
                self.running.fetch_sub(1, Ordering::SeqCst);
                super::pool::parked(tokio::time::sleep(*wait)).await;
                let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_running.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let now = self.clock.now();
            if cancelled {
                return Err(RenewError::Cancelled);
            }
            match ends {
                Ends::Ok | Ends::Hangs | Ends::Parks(_) => {
                    self.issued(&spec.name, now);
                    Ok(Renewed {
                        serial: "01".into(),
                        not_after: now + self.lifetime,
                        order_url: "https://ca.test/order/1".into(),
                        zones: vec![],
                        propagation: Duration::ZERO,
                        elapsed: self.delay,
                        challenge: crate::config::ChallengeKind::Dns01,
                        persist_written: 0,
                        renewed_by: None,
                        phases: Default::default(),
                    })
                }
                Ends::ClusterHeld => Err(RenewError::Cluster(crate::cluster::ClusterError::Held {
                    member: "web2".into(),
                    key: "/renewd/certs/web/lock".into(),
                })),
                Ends::ClusterDown => Err(RenewError::Cluster(
                    crate::cluster::ClusterError::Unavailable {
                        endpoints: "http://127.0.0.1:2379".into(),
                        what: "taking a lease",
                        detail: "etcdserver: no leader".into(),
                    },
                )),
                Ends::Transient => Err(RenewError::Io {
                    context: "fake".into(),
                    source: std::io::Error::other("the network is down"),
                }),
                Ends::RateLimited(after) => Err(RenewError::Acme(AcmeError::Request {
                    ca: Ca {
                        account: "ca".into(),
                        directory: "https://ca.test/dir".into(),
                    },
                    phase: Phase::PlacingOrder,
                    source: Box::new(instant_acme::Error::Api(
                        serde_json::from_str(
                            r#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429}"#,
                        )
                        .unwrap(),
                    )),
                    retry_after: Some(now + after),
                })),
            }
        })
    }

    fn redeploy(self: Arc<Self>, _spec: Arc<CertSpec>) -> BoxFuture<Result<(), RenewError>> {
        self.redeploys.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn renewal_window(
        self: Arc<Self>,
        _spec: Arc<CertSpec>,
        facts: CertFacts,
    ) -> BoxFuture<Result<Option<RenewalWindow>, RenewError>> {
        self.window_requests.fetch_add(1, Ordering::SeqCst);
        let answer =
            self.window.lock().unwrap().map(|(start, end, retry)| {
                (facts.not_before + start, facts.not_before + end, retry)
            });
        Box::pin(async move { Ok(answer) })
    }

    fn inspect(self: Arc<Self>, specs: Vec<Arc<CertSpec>>) -> BoxFuture<Vec<(String, Inspection)>> {
        let out = specs
            .iter()
            .map(|s| {
                let i = Inspection {
                    live: Ok(self.live_cert(&s.name)),
                    redeploy: false,
                };
                (s.name.clone(), i)
            })
            .collect();
        Box::pin(async move { out })
    }
}

fn settings(workers: usize, names: &[&str], renew_before: Option<Duration>) -> Settings {
    Settings {
        config_path: "/etc/renewd/renewd.yaml".into(),
        state_dir: "/var/lib/renewd".into(),
        certs_dir: "/etc/renewd/certs.d".into(),
        workers,
        stop_grace: 30 * SEC,
        attempt_timeout: 10 * MIN,
        accounts: BTreeMap::new(),
        dns_servers: BTreeMap::new(),
        propagation: PropagationSettings {
            timeout: 5 * MIN,
            nameservers: vec![],
        },
        resolver: vec![],
        metrics_file: None,
        metrics_listen: None,
        cluster: None,
        certs: names
            .iter()
            .map(|n| {
                let spec = CertSpec::for_test(n, &format!("{n}.example.test"), renew_before);
                (n.to_string(), Arc::new(spec))
            })
            .collect(),
    }
}

/// Outputs that keep the last snapshot and count the loads.
#[derive(Default)]
struct Recorded {
    last: Option<Snapshot>,
    loads: Vec<bool>,
}

impl Outputs for Arc<Mutex<Recorded>> {
    fn publish(&mut self, snapshot: Option<Snapshot>) {
        if let Some(s) = snapshot {
            self.lock().unwrap().last = Some(s);
        }
    }
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn reloading(&mut self) {}
    fn loaded(&mut self, applied: Applied) {
        self.lock()
            .unwrap()
            .loads
            .push(matches!(applied, Applied::Yes { .. }));
    }
    fn stopping(&mut self) {}
}

/// A loader that puts `next` in force (the same fake work).
fn loader(next: Arc<Mutex<Settings>>) -> Loader<Fake> {
    Arc::new(move |kind, _current, work| {
        let settings = Arc::new(next.lock().unwrap().clone());
        Box::pin(async move {
            Ok(Loaded {
                kind,
                settings,
                work,
                spec_errors: None,
                inspections: vec![],
                metrics_listener: None,
            })
        })
    })
}

/// The daemon's loop over `fake` in a task; the inputs to steer it, and the task (ending with the
/// loop's state after the shutdown).
fn daemon(
    fake: &Arc<Fake>,
    settings: Settings,
    next: Arc<Mutex<Settings>>,
) -> (
    mpsc::UnboundedSender<Input>,
    Arc<Mutex<Recorded>>,
    tokio::task::JoinHandle<Scheduler<Fake>>,
) {
    let specs: Vec<Arc<CertSpec>> = settings.certs.values().cloned().collect();
    let inspections = futures::executor::block_on(fake.clone().inspect(specs));
    let mut core = Scheduler::new(
        Arc::new(settings),
        fake.clone(),
        fake.clock.clone(),
        Mode::Daemon,
        inspections,
        &BTreeMap::new(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let mut out = recorded.clone();
    let loader = loader(next);
    let task = tokio::spawn(async move {
        run(&mut core, &mut rx, &loader, &mut out).await;
        core
    });
    (tx, recorded, task)
}

async fn next_start(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(400 * DAY, rx.recv())
        .await
        .expect("a renewal starts")
        .expect("the fake lives")
}

#[tokio::test(start_paused = true)]
async fn a_certificate_is_renewed_at_its_due_moment_and_the_loop_sleeps_until_then() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), 2 * SEC);
    // A 90-day certificate issued 10 days ago with renew_before 30d: due in 50 days (+ jitter ≤ 1 h).
    fake.issued("web", clock.now() - 10 * DAY);
    let s = settings(4, &["web"], Some(30 * DAY));
    let (tx, recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    assert_eq!(next_start(&mut started).await, "web");
    let at = fake.starts()[0].1;
    assert!(
        at >= 50 * DAY && at <= 50 * DAY + HOUR,
        "renewed after {at:?}"
    );
    // The next one is planned from the new certificate: 60 days on.
    let snapshot = recorded.lock().unwrap().last.clone().unwrap();
    assert_eq!(snapshot.certs[0].state, "renewing");
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert_eq!(core.cert("web").unwrap().history.consecutive_failures, 0);
    // It slept until the deadline: one turn per event, at most two a day (the longest sleep, and the daily
    // question whether the CA offers ARI now), not a poll every few milliseconds.
    assert!(core.turns < 120, "{} turns in 50 days", core.turns);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_from_five_minutes_doubling() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), Duration::ZERO);
    fake.plan("web", vec![Ends::Transient]);
    let s = settings(4, &["web"], None);
    let (tx, recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    for _ in 0..5 {
        next_start(&mut started).await;
    }
    let starts: Vec<Duration> = fake.starts().iter().map(|(_, t)| *t).collect();
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, vec![5 * MIN, 10 * MIN, 20 * MIN, 40 * MIN]);
    tokio::task::yield_now().await;
    let state = recorded.lock().unwrap().last.clone().unwrap().certs[0].state;
    assert!(["backing-off", "renewing"].contains(&state), "{state}");
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert_eq!(core.cert("web").unwrap().history.consecutive_failures, 5);
    assert_eq!(core.cert("web").unwrap().state().name(), "backing-off");
}

#[tokio::test(start_paused = true)]
async fn the_cas_retry_after_is_honoured() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), Duration::ZERO);
    fake.plan("web", vec![Ends::RateLimited(2 * HOUR), Ends::Ok]);
    let s = settings(4, &["web"], None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    next_start(&mut started).await;
    next_start(&mut started).await;
    let starts = fake.starts();
    assert_eq!(starts[1].1 - starts[0].1, 2 * HOUR, "not the 5 min backoff");
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert_eq!(core.cert("web").unwrap().history.consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn the_worker_bound_holds_and_a_freed_worker_takes_the_longest_waiting() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), 10 * SEC);
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = settings(3, &refs, None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    for _ in 0..10 {
        next_start(&mut started).await;
    }
    let at: Vec<u64> = fake.starts().iter().map(|(_, t)| t.as_secs()).collect();
    assert_eq!(at, vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 30]);
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 3);
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert!(core.turns < 40, "{} turns for 10 renewals", core.turns);
}

/// Renewals waiting for the DNS give their place to the next ones, so the renewals of one zone publish
/// together; a parked one gets its place back before anything new starts, and the bound on places
/// holds throughout.
#[tokio::test(start_paused = true)]
async fn a_renewal_waiting_for_dns_gives_its_worker_place_to_the_next() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), SEC);
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for n in &refs {
        fake.plan(n, vec![Ends::Parks(10 * SEC), Ends::Ok]);
    }
    let s = settings(2, &refs, None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    for _ in 0..6 {
        next_start(&mut started).await;
    }
    let at: Vec<u64> = fake.starts().iter().map(|(_, t)| t.as_secs()).collect();
    // Two work 1 s and park; the next two take their places, and so on: all six publish within 2 s
    // (holding their places, the last two would start at 24 s).
    assert_eq!(at, vec![0, 0, 1, 1, 2, 2]);
    // Waits over at 11, 12, 13 s: each pair gets its places back as the pair before finishes.
    while fake.in_flight.load(Ordering::SeqCst) > 0 || clock.elapsed() < 3 * SEC {
        tokio::time::sleep(SEC / 2).await;
    }
    assert_eq!(clock.elapsed().as_secs(), 14, "every renewal done at 14 s");
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 2, "places in use");
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 6);
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert!(core.turns < 40, "{} turns for 6 renewals", core.turns);
}

/// However many wait, at most IN_FLIGHT_PER_WORKER renewals per place are in flight.
#[tokio::test(start_paused = true)]
async fn parked_renewals_are_bounded_too() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), SEC);
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for n in &refs {
        fake.plan(n, vec![Ends::Parks(MIN), Ends::Ok]);
    }
    let s = settings(1, &refs, None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    for _ in 0..20 {
        next_start(&mut started).await;
    }
    while fake.in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(SEC).await;
    }
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
    assert_eq!(
        fake.max_in_flight.load(Ordering::SeqCst),
        super::pool::IN_FLIGHT_PER_WORKER
    );
    let core_done = fake.starts().len();
    assert_eq!(core_done, 20, "every certificate renewed once");
    tx.send(Input::Stop).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reload_during_renewals_keeps_the_worker_bound() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), MIN);
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = settings(4, &refs, None);
    let next = Arc::new(Mutex::new(settings(1, &refs, None)));
    let (tx, recorded, task) = daemon(&fake, s, next);
    for _ in 0..4 {
        next_start(&mut started).await;
    }
    // Four renewals run; SIGHUP lowers `workers` to 1.
    tokio::time::sleep(SEC).await;
    tx.send(Input::Reload).unwrap();
    for _ in 0..4 {
        next_start(&mut started).await;
    }
    let at: Vec<u64> = fake.starts().iter().map(|(_, t)| t.as_secs()).collect();
    // The four running finish at 60 s; from then on one at a time.
    assert_eq!(at, vec![0, 0, 0, 0, 60, 120, 180, 240]);
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 4);
    assert_eq!(recorded.lock().unwrap().loads, vec![true]);
    tx.send(Input::Stop).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_neither_spins_the_loop_nor_delays_the_others_or_the_stop() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), SEC);
    fake.plan("stuck", vec![Ends::Hangs]);
    let s = settings(2, &["a", "b", "c", "stuck"], None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    for _ in 0..4 {
        next_start(&mut started).await;
    }
    // The others went through the one free worker while `stuck` holds the other.
    assert_eq!(fake.starts().len(), 4);
    tokio::time::sleep(6 * HOUR).await;
    let t0 = clock.elapsed();
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    // SIGTERM: the hanging renewal gets stop_grace, then is cancelled.
    assert_eq!(clock.elapsed() - t0, 30 * SEC);
    assert!(core.turns < 30, "{} turns in 6 hours", core.turns);
    assert_eq!(fake.running.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn renew_once_renews_what_is_due_and_reports_the_rest() {
    let clock = PausedClock::new();
    let (fake, _started) = Fake::new(clock.clone(), SEC);
    let t0 = clock.now();
    fake.issued("fresh", t0 - DAY);
    fake.issued("old", clock.now() - 70 * DAY);
    fake.plan("broken", vec![Ends::Transient]);
    let s = settings(2, &["fresh", "old", "new", "broken"], None);
    let specs: Vec<Arc<CertSpec>> = s.certs.values().cloned().collect();
    let inspections = fake.clone().inspect(specs).await;
    let mut core = Scheduler::new(
        Arc::new(s),
        fake.clone(),
        clock.clone(),
        Mode::Once { force: false },
        inspections,
        &BTreeMap::new(),
    );
    let results = run_once(&mut core, std::future::pending()).await;
    assert!(matches!(results["old"], RunResult::Renewed(_)));
    assert!(matches!(results["new"], RunResult::Renewed(_)));
    assert!(matches!(results["broken"], RunResult::Failed(_)));
    match &results["fresh"] {
        RunResult::NotDue {
            due, ari: false, ..
        } => {
            assert_eq!(*due, t0 - DAY + 60 * DAY)
        }
        other => panic!("{other:?}"),
    }
    // No backoff, no second attempt in a one-shot run.
    assert_eq!(fake.starts().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_cas_renewal_window_moves_the_renewal_into_it() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), SEC);
    // The lifetime rule says day 60 (+ jitter); the CA's window is days 20..21 after issuance.
    *fake.window.lock().unwrap() = Some((20 * DAY, 21 * DAY, 6 * HOUR));
    fake.issued("web", clock.now());
    let s = settings(4, &["web"], None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    next_start(&mut started).await;
    let at = fake.starts()[0].1;
    assert!(at >= 20 * DAY && at <= 21 * DAY, "renewed after {at:?}");
    // Asked at start, then every 6 hours (the Retry-After) until the moment came.
    let asked = fake.window_requests.load(Ordering::SeqCst);
    let expected = (at.as_secs() / (6 * 3600)) as usize + 1;
    assert!(
        asked.abs_diff(expected) <= 1,
        "{asked} requests, expected about {expected}"
    );
    tx.send(Input::Stop).unwrap();
    task.await.unwrap();
}

/// `cluster:` another member holds the lock: no failure, no backoff; the lock given back (a watch event)
/// wakes the certificate at once instead of the 10-minute backstop.
#[tokio::test(start_paused = true)]
async fn a_certificate_another_member_renews_waits_for_its_lock_without_failing() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), Duration::ZERO);
    fake.plan("web", vec![Ends::ClusterHeld, Ends::Ok]);
    let s = settings(4, &["web"], None);
    let (tx, recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    next_start(&mut started).await;
    tokio::time::sleep(30 * SEC).await;
    let snap = recorded.lock().unwrap().last.clone().unwrap();
    assert_eq!(snap.certs[0].state, "locked");
    assert_eq!(snap.certs[0].history.consecutive_failures, 0);
    tx.send(Input::Cluster(ClusterNews::Unlocked(vec!["web".into()])))
        .unwrap();
    next_start(&mut started).await;
    let starts = fake.starts();
    assert_eq!(
        starts[1].1 - starts[0].1,
        30 * SEC,
        "woken by the event, not the backstop"
    );
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert_eq!(core.cert("web").unwrap().history.consecutive_failures, 0);
}

/// `cluster:` etcd without quorum: nobody orders, STATUS says since when, and etcd answering again
/// resumes the renewal at once (not after a backoff).
#[tokio::test(start_paused = true)]
async fn without_etcd_nothing_orders_until_it_answers_and_status_says_since_when() {
    let clock = PausedClock::new();
    let (fake, mut started) = Fake::new(clock.clone(), Duration::ZERO);
    fake.plan("web", vec![Ends::ClusterDown, Ends::Ok]);
    let mut s = settings(4, &["web"], None);
    s.cluster = Some(crate::config::ClusterSettings {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        tls: None,
        auth: None,
        prefix: "/renewd/".into(),
        member: "web1".into(),
        seal_key: crate::config::Secret::new(vec![0; 32]),
        seal_key_file: "/etc/renewd/secrets/cluster.seal".into(),
    });
    let (tx, recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    next_start(&mut started).await;
    let since = clock.now();
    tx.send(Input::Cluster(ClusterNews::Down {
        since,
        error: "etcdserver: no leader".into(),
    }))
    .unwrap();
    // Five minutes (the first backoff of a failure) pass without a new attempt.
    assert!(tokio::time::timeout(5 * MIN + SEC, started.recv())
        .await
        .is_err());
    let snap = recorded.lock().unwrap().last.clone().unwrap();
    assert!(
        snap.status_line.contains("etcd unreachable since"),
        "{}",
        snap.status_line
    );
    assert_eq!(
        snap.cluster.as_ref().unwrap().1.as_ref().unwrap().since,
        since
    );
    assert_eq!(snap.certs[0].state, "locked");
    tx.send(Input::Cluster(ClusterNews::Up)).unwrap();
    next_start(&mut started).await;
    tokio::task::yield_now().await;
    let snap = recorded.lock().unwrap().last.clone().unwrap();
    assert!(!snap.status_line.contains("etcd"), "{}", snap.status_line);
    assert!(snap.cluster.unwrap().1.is_none());
    tx.send(Input::Stop).unwrap();
    let core = task.await.unwrap();
    assert_eq!(core.cert("web").unwrap().history.consecutive_failures, 0);
}

/// `cluster:` a version another member wrote: a redeploy job (it installs the version), no order.
#[tokio::test(start_paused = true)]
async fn a_version_from_another_member_is_installed_by_a_redeploy_job_without_an_order() {
    let clock = PausedClock::new();
    let (fake, _started) = Fake::new(clock.clone(), Duration::ZERO);
    fake.issued("web", clock.now());
    let s = settings(4, &["web"], None);
    let (tx, _recorded, task) = daemon(&fake, s.clone(), Arc::new(Mutex::new(s)));
    tokio::time::sleep(SEC).await;
    tx.send(Input::Cluster(ClusterNews::Versions(vec![
        "web".into(),
        "gone".into(),
    ])))
    .unwrap();
    tokio::time::sleep(SEC).await;
    assert_eq!(fake.redeploys.load(Ordering::SeqCst), 1);
    assert!(fake.starts().is_empty(), "nothing ordered");
    tx.send(Input::Stop).unwrap();
    task.await.unwrap();
}
