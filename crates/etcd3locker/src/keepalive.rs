//! Keeping one lease alive, and deciding locally when it is lost.
//!
//! Loss is decided here, before etcd could decide it: the lease counts as
//! valid until the *send* time of the last acknowledged keep-alive plus two
//! thirds of the TTL. etcd renewed the lease when it received that keep-alive,
//! which was after we sent it, so etcd keeps the lease at least a third of
//! the TTL longer than we trust it. Past our deadline, or when etcd answers
//! a keep-alive with TTL 0 (the lease is gone), every lock under the lease is
//! told at once ([`tusd_core::LockSignals::mark_lost`]); the session then
//! revokes the lease and grants a new one for the next lock.
//!
//! Keep-alives go out every sixth of the TTL on one stream per route (see
//! [`Route`]), and while a stream's keep-alive is unanswered a fresh stream
//! is opened next to it every [`Timing::unanswered`], so a hung member
//! costs its stream but never the lease while another member answers.
//! The budget behind these numbers is in `docs/cluster.md`, "Timing budget".

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeeper};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::call::{classify, Failure};
use crate::connect::Endpoints;
use crate::session::Lease;

/// Keep-alive timing derived from the TTL.
/// Keep-alive timing derived from the TTL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// How often each stream sends a keep-alive.
    pub(crate) interval: Duration,
    /// How long after a keep-alive's send time an answer keeps the lease
    /// trusted.
    pub(crate) window: Duration,
    /// How long a keep-alive may go unanswered before a fresh stream is
    /// opened next to its stream, and how often while that lasts.
    pub(crate) unanswered: Duration,
}

impl Timing {
    pub(crate) fn for_ttl(ttl: Duration) -> Timing {
        Timing {
            interval: ttl / 6,
            window: ttl * 2 / 3,
            // A healthy member answers within milliseconds. A stalled stream
            // is not dropped, only joined by a fresh one, so this can be
            // short; short TTLs need it short to leave room for a leader
            // election (see the timing budget).
            unanswered: Duration::from_secs(1).min(ttl / 24),
        }
    }
}

/// Where keep-alive streams are opened.
///
/// etcd-client balances every request of a client over its endpoints at
/// random, so a stream reopened through the shared client may land on the
/// same hung member again. A client made by [`crate::connect()`] leaves its
/// endpoints and options behind (see the `connect` module), and then each
/// endpoint gets a client and a stream of its own: a hung member stalls only
/// its stream. For any other client the locker opens two streams through it
/// and reopens one while both answer from the same member.
#[derive(Clone)]
pub(crate) enum Route {
    Shared(Box<Client>),
    Endpoint(Arc<EndpointRoute>),
}

pub(crate) struct EndpointRoute {
    endpoint: String,
    options: etcd_client::ConnectOptions,
    client: tokio::sync::OnceCell<Client>,
}

impl Route {
    /// The routes for a client connected to cluster `cluster_id`: one per
    /// endpoint when [`crate::connect()`] made a client for it, else two
    /// through `client`.
    pub(crate) fn for_cluster(client: &Client, cluster_id: u64) -> Vec<Route> {
        match Endpoints::of_cluster(cluster_id) {
            Some(endpoints) => endpoints
                .endpoints
                .iter()
                .map(|endpoint| {
                    Route::Endpoint(Arc::new(EndpointRoute {
                        endpoint: endpoint.clone(),
                        options: endpoints.options.clone(),
                        client: tokio::sync::OnceCell::new(),
                    }))
                })
                .collect(),
            None => vec![Route::Shared(Box::new(client.clone())); 2],
        }
    }

    async fn client(&self) -> Result<Client, etcd_client::Error> {
        match self {
            Route::Shared(client) => Ok((**client).clone()),
            Route::Endpoint(route) => route
                .client
                .get_or_try_init(|| Client::connect([&route.endpoint], Some(route.options.clone())))
                .await
                .cloned(),
        }
    }

    fn is_shared(&self) -> bool {
        matches!(self, Route::Shared(_))
    }
}

/// What a stream task reports to the keep-alive task.
struct Event {
    route: usize,
    generation: u64,
    happened: Happened,
}

enum Happened {
    /// etcd answered the opening keep-alive; later ones go through the keeper.
    Opened(LeaseKeeper),
    /// An answer to a keep-alive sent on the stream, from member `member`.
    Answer { ttl: i64, member: u64 },
    /// The stream failed or ended; `Some` says how etcd refused it.
    Closed(Option<Failure>),
}

/// One keep-alive stream. Dropping it cancels the request.
struct Stream {
    generation: u64,
    task: JoinHandle<()>,
    /// When the opening keep-alive was sent.
    opened_at: Instant,
    keeper: Option<LeaseKeeper>,
    /// Send times of the keep-alives not answered yet, oldest first.
    outstanding: VecDeque<Instant>,
    member: Option<u64>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream {
    /// Sends a keep-alive; `false` when the stream's task has ended (its
    /// report is on the way).
    async fn send(&mut self, now: Instant) -> bool {
        let Some(keeper) = self.keeper.as_mut() else {
            return true;
        };
        let sent = keeper.keep_alive().await.is_ok();
        if sent {
            self.outstanding.push_back(now);
        }
        sent
    }
}

/// How many streams a route may be opening at once.
const MAX_PROBES: usize = 3;

/// The streams of one route: the open one, and probes being opened while
/// it is missing or stalled.
///
/// A stalled stream is not dropped for being slow: its answers still count
/// when they come. Instead a fresh stream (a probe) is opened next to it
/// every [`Timing::unanswered`], because a stream waits in order behind a
/// keep-alive that a member forwarded to a hung leader, while a new request
/// reaches whichever leader there is by then. The first probe to open
/// replaces the stream.
struct RouteState {
    route: Route,
    generation: u64,
    stream: Option<Stream>,
    probes: VecDeque<Stream>,
    next_probe_at: Instant,
    backoff: Duration,
    /// Shared routes only: how long to wait before reopening a stream that
    /// answered from the same member as another stream; grows while that
    /// keeps happening (a client that reaches one member only).
    duplicate_gap: Duration,
}

impl RouteState {
    /// Since when the route has lacked a stream that answers: for a route
    /// without a stream, when it may try again; `None` while it answers.
    fn stalled_since(&self) -> Option<Instant> {
        match &self.stream {
            None => Some(self.next_probe_at),
            Some(stream) => stream.outstanding.front().copied(),
        }
    }

    fn stream_mut(&mut self, generation: u64) -> Option<&mut Stream> {
        if let Some(stream) = self.stream.as_mut().filter(|s| s.generation == generation) {
            return Some(stream);
        }
        self.probes.iter_mut().find(|s| s.generation == generation)
    }

    fn remove(&mut self, generation: u64) {
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            self.stream = None;
        }
        self.probes.retain(|s| s.generation != generation);
    }
}

const FIRST_OPEN_BACKOFF: Duration = Duration::from_millis(50);
const FIRST_DUPLICATE_GAP: Duration = Duration::from_millis(100);

/// The keep-alive task of one lease.
pub(crate) struct KeepAlive {
    lease: Arc<Lease>,
    timing: Timing,
    valid_until: Instant,
    next_tick: Instant,
    routes: Vec<RouteState>,
    events: mpsc::UnboundedSender<Event>,
    received: mpsc::UnboundedReceiver<Event>,
}

impl KeepAlive {
    pub(crate) fn new(
        lease: Arc<Lease>,
        timing: Timing,
        routes: Vec<Route>,
        granted_at: Instant,
    ) -> Self {
        let (events, received) = mpsc::unbounded_channel();
        let now = Instant::now();
        KeepAlive {
            lease,
            timing,
            valid_until: granted_at + timing.window,
            next_tick: granted_at + timing.interval,
            routes: routes
                .into_iter()
                .map(|route| RouteState {
                    route,
                    generation: 0,
                    stream: None,
                    probes: VecDeque::new(),
                    next_probe_at: now,
                    backoff: FIRST_OPEN_BACKOFF,
                    duplicate_gap: Duration::ZERO,
                })
                .collect(),
            events,
            received,
        }
    }

    /// Keeps the lease alive until `stop` or loss. Marks the lease lost
    /// (telling every holder) and returns `true` when it was lost here.
    pub(crate) async fn run(mut self, stop: CancellationToken) -> bool {
        let lease = self.lease.clone();
        let reason = tokio::select! {
            _ = stop.cancelled() => return false,
            // Invalidated by a lock request that etcd told the lease is gone.
            _ = lease.lost() => return false,
            reason = self.keep() => reason,
        };
        tracing::warn!(
            lease = format_args!("{:x}", lease.id()),
            reason,
            "etcd lease lost"
        );
        lease.mark_lost();
        true
    }

    /// Runs until the lease is lost; returns why.
    async fn keep(&mut self) -> &'static str {
        loop {
            let now = Instant::now();
            if now >= self.valid_until {
                return "no keep-alive answered in time";
            }
            if now >= self.next_tick {
                self.next_tick = now + self.timing.interval;
                let window = self.timing.window;
                for state in &mut self.routes {
                    let Some(stream) = state.stream.as_mut() else {
                        continue;
                    };
                    // An answer to a keep-alive sent a window ago could no
                    // longer extend anything: the stream is of no more use.
                    let useless = stream
                        .outstanding
                        .front()
                        .is_some_and(|&s| s + window <= now);
                    if useless || !stream.send(now).await {
                        state.stream = None;
                    }
                }
            }
            self.probe(now);
            let wake = self.next_wake();
            let event = tokio::select! {
                _ = sleep_until(wake) => None,
                event = self.received.recv() => event,
            };
            if let Some(event) = event {
                if let Err(reason) = self.handle(event).await {
                    return reason;
                }
            }
        }
    }

    /// When the route next needs a probe, if it is stalled.
    fn probe_due(&self, state: &RouteState) -> Option<Instant> {
        let stalled = state.stalled_since()?;
        let due = match &state.stream {
            None => stalled,
            Some(_) => stalled + self.timing.unanswered,
        };
        Some(due.max(state.next_probe_at))
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.valid_until.min(self.next_tick);
        for state in &self.routes {
            if let Some(due) = self.probe_due(state) {
                wake = wake.min(due);
            }
        }
        wake
    }

    /// Opens a fresh stream on every route that is stalled or has none,
    /// one every [`Timing::unanswered`] while that lasts.
    fn probe(&mut self, now: Instant) {
        for index in 0..self.routes.len() {
            let due = self.probe_due(&self.routes[index]);
            if due.is_none_or(|due| due > now) {
                continue;
            }
            let state = &mut self.routes[index];
            if state.stream.is_some() {
                tracing::debug!(
                    lease = format_args!("{:x}", self.lease.id()),
                    "keep-alive unanswered, opening another stream"
                );
            }
            state.generation += 1;
            let task = tokio::spawn(run_stream(
                state.route.clone(),
                self.lease.id(),
                self.events.clone(),
                index,
                state.generation,
            ));
            state.probes.push_back(Stream {
                generation: state.generation,
                task,
                opened_at: now,
                keeper: None,
                outstanding: VecDeque::new(),
                member: None,
            });
            if state.probes.len() > MAX_PROBES {
                state.probes.pop_front();
            }
            state.next_probe_at = now + self.timing.unanswered;
        }
    }

    /// Applies what a stream reported; `Err` when the lease is lost.
    async fn handle(&mut self, event: Event) -> Result<(), &'static str> {
        let now = Instant::now();
        let window = self.timing.window;
        let Some(state) = self.routes.get_mut(event.route) else {
            return Ok(());
        };
        let shared = state.route.is_shared();
        let Some(stream) = state.stream_mut(event.generation) else {
            return Ok(());
        };
        match event.happened {
            Happened::Opened(keeper) => {
                stream.keeper = Some(keeper);
                self.valid_until = self.valid_until.max(stream.opened_at + window);
                // The first probe to open replaces the stream and the others.
                let position = state
                    .probes
                    .iter()
                    .position(|s| s.generation == event.generation);
                if let Some(opened) = position.and_then(|p| state.probes.remove(p)) {
                    state.stream = Some(opened);
                    state.probes.clear();
                }
                state.backoff = FIRST_OPEN_BACKOFF;
                state.next_probe_at = now;
                // On a shared route, learn the member at once, to spread
                // the streams over members.
                if let Some(stream) = state.stream.as_mut().filter(|_| shared) {
                    if !stream.send(now).await {
                        state.stream = None;
                    }
                }
            }
            Happened::Answer { ttl, .. } if ttl <= 0 => {
                return Err("etcd answered a keep-alive with TTL 0");
            }
            Happened::Answer { member, .. } => {
                if let Some(sent) = stream.outstanding.pop_front() {
                    self.valid_until = self.valid_until.max(sent + window);
                }
                stream.member = Some(member);
                if shared {
                    self.spread(event.route, member, now);
                }
            }
            Happened::Closed(Some(Failure::LeaseNotFound)) => {
                return Err("etcd no longer knows the lease");
            }
            Happened::Closed(failure) => {
                if let Some(failure) = failure {
                    tracing::debug!(?failure, "keep-alive stream refused");
                }
                state.remove(event.generation);
                state.next_probe_at = state.next_probe_at.max(now + state.backoff);
                state.backoff = (state.backoff * 2).min(self.timing.unanswered);
            }
        }
        Ok(())
    }

    /// Reopens the shared stream of `route` when another stream answers
    /// from the same `member`, so that one hung member does not stall both.
    fn spread(&mut self, route: usize, member: u64, now: Instant) {
        let duplicate = self.routes.iter().enumerate().any(|(other, state)| {
            other != route
                && state
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.member == Some(member))
        });
        let max_gap = self.timing.window;
        let state = &mut self.routes[route];
        if !duplicate {
            state.duplicate_gap = Duration::ZERO;
            return;
        }
        state.stream = None;
        state.next_probe_at = now + state.duplicate_gap;
        state.duplicate_gap = (state.duplicate_gap * 2)
            .max(FIRST_DUPLICATE_GAP)
            .min(max_gap);
    }
}

/// Opens one keep-alive stream on `route` and reports what happens on it.
async fn run_stream(
    route: Route,
    id: i64,
    events: mpsc::UnboundedSender<Event>,
    index: usize,
    generation: u64,
) {
    let report = |happened| {
        let _ = events.send(Event {
            route: index,
            generation,
            happened,
        });
    };
    let client = match route.client().await {
        Ok(client) => client,
        Err(e) => return report(Happened::Closed(Some(classify(&e)))),
    };
    let (keeper, mut answers) = match client.lease_client().keep_alive(id).await {
        Ok(opened) => opened,
        Err(e) => return report(Happened::Closed(Some(classify(&e)))),
    };
    report(Happened::Opened(keeper));
    loop {
        match answers.message().await {
            Ok(Some(answer)) => report(Happened::Answer {
                ttl: answer.ttl(),
                member: answer.header().map_or(0, |h| h.member_id()),
            }),
            Ok(None) => return report(Happened::Closed(None)),
            Err(e) => return report(Happened::Closed(Some(classify(&e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_leaves_half_the_ttl_after_the_last_unanswered_interval() {
        let timing = Timing::for_ttl(Duration::from_secs(6));
        assert_eq!(timing.interval, Duration::from_secs(1));
        assert_eq!(timing.window, Duration::from_secs(4));
        assert_eq!(timing.unanswered, Duration::from_millis(250));
        assert_eq!(timing.window - timing.interval, Duration::from_secs(3));
        let long = Timing::for_ttl(Duration::from_secs(60));
        assert_eq!(long.unanswered, Duration::from_secs(1));
        assert_eq!(long.interval, Duration::from_secs(10));
    }
}
