//! The checkers: from a history, the breaches of the lock's promise.
//!
//! - **C1 no lost update**: the counter equals the number of accepted
//!   increments, and no two accepted writes wrote the same value.
//! - **C2 one holder at a time**: the validity intervals
//!   `[granted, min(release sent, claimed valid until)]` of different
//!   holdings never overlap. `claimed valid until` is the latest
//!   `now + guard.remaining()` the holder read (after the acquire and at each
//!   step of its work, so renewals count), i.e. the send time of the last
//!   successful acquire or extend + ttl − drift.
//! - **C3 fences**: fences strictly increase in grant order, and no write was
//!   accepted after an access with a higher fence had been accepted (a stale
//!   write).
//! - **C4 recovery**: after a holder's process is killed, the next grant
//!   comes within ttl + the waiters' fallback cap (+ slack for a loaded
//!   machine).
//! - **C5 nothing left held**: counted by the scenario after the last TTL
//!   (lease keys without a TTL, or still there) and passed in.
//! - **C6 quorum** (Redlock): no acquire sent and answered while a
//!   majority of the masters was stopped (a grant then would have come
//!   from a minority), and while only a minority was, grants go on: each
//!   such stop of [`MINORITY_WINDOW`] or more saw one (when no other fault
//!   overlapped it).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::history::{Event, Kind, Op};

/// What the checkers need besides the events.
#[derive(Clone, Debug)]
pub struct Params {
    /// The lease's ttl.
    pub ttl: Duration,
    /// The longest a waiter sleeps before looking again (its backoff max).
    pub fallback_cap: Duration,
    /// Added to C4's bound for scheduling delays on a loaded machine.
    pub slack: Duration,
    /// Whether fences are real (the library) or only observed (the control
    /// arm, whose "fence" is a counter bumped after the grant): only real
    /// ones must never go back.
    pub real_fences: bool,
    /// The counter's final value in the store.
    pub final_counter: i64,
    /// C5: lease keys left held after the last TTL.
    pub leftovers: usize,
    /// When the workers stopped (monotonic ns); C4 gives up there.
    pub end: u64,
    /// C6: when a majority of Redlock's masters was stopped (monotonic ns,
    /// start and end of each fault).
    pub no_quorum: Vec<(u64, u64)>,
    /// C6: when only a minority of them was, and no other fault meanwhile.
    pub minority_stopped: Vec<(u64, u64)>,
}

/// C6: a minority stop at least this long must see a grant.
pub const MINORITY_WINDOW: Duration = Duration::from_millis(500);

/// C6: how long after a stop begins, and before it ends, an acquire's send
/// and answer must fall to count as made while it lasted (the signals go
/// out right after the fault's start and right before its end).
const STOP_MARGIN: Duration = Duration::from_millis(20);

/// One holding: an acquire that succeeded, until it was let go or ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// Who held it.
    pub worker: String,
    /// The token hash.
    pub token: u64,
    /// Its fence.
    pub fence: u64,
    /// When the acquire returned.
    pub granted: u64,
    /// The end of its validity interval.
    pub end: u64,
}

/// What the checkers found in one history.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Findings {
    /// Operations completed (acquire, read, write, release with a reply).
    pub operations: usize,
    /// Holdings with a non-empty validity interval.
    pub holdings: usize,
    /// C2: holdings that began inside another's validity interval.
    pub overlaps: usize,
    /// C2: the first overlapping pair, described.
    pub overlap_example: Option<String>,
    /// C3: grants whose fence is not above every earlier grant's.
    pub fence_regressions: usize,
    /// C3: writes the store accepted after it had accepted a higher fence.
    pub stale_accepted: usize,
    /// Accesses the store refused (stale fences it caught).
    pub stale_refused: usize,
    /// C1: updates lost.
    pub lost_updates: usize,
    /// Writes the store accepted.
    pub acked_writes: usize,
    /// Writes whose outcome is unknown (their process died).
    pub unknown_writes: usize,
    /// The counter's final value.
    pub final_counter: i64,
    /// The longest time from the end of a fault to the next grant, in ms.
    pub worst_recovery_ms: Option<f64>,
    /// C4: holder kills after which no grant came within the bound.
    pub slow_recoveries: usize,
    /// C5: lease keys left held after the last TTL.
    pub leftovers: usize,
    /// C6: acquires sent and granted while a majority of masters was
    /// stopped.
    pub grants_without_quorum: usize,
    /// C6: stops of a minority of masters during which no grant came.
    pub starved_minority_stops: usize,
    /// Faults the scheduler injected.
    pub faults: usize,
    /// Operations cancelled on purpose (a timeout around the future).
    pub cancellations: usize,
    /// Operations that failed or whose outcome is unknown, cancellations
    /// aside: what the faults did to the workers.
    pub errors: usize,
}

impl Findings {
    /// The checks this history fails: `C1`..`C5`.
    pub fn breaches(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.lost_updates > 0 {
            out.push("C1");
        }
        if self.overlaps > 0 {
            out.push("C2");
        }
        if self.fence_regressions > 0 || self.stale_accepted > 0 {
            out.push("C3");
        }
        if self.slow_recoveries > 0 {
            out.push("C4");
        }
        if self.leftovers > 0 {
            out.push("C5");
        }
        if self.grants_without_quorum > 0 || self.starved_minority_stops > 0 {
            out.push("C6");
        }
        out
    }
}

/// The holdings of a history: each successful acquire, with its validity
/// interval (possibly empty: a grant whose reply came after its validity).
pub fn holdings(events: &[Event]) -> Vec<Holding> {
    let mut by_token: HashMap<u64, (Holding, u64, Option<u64>)> = HashMap::new();
    let mut order = Vec::new();
    for e in sorted(events) {
        let Some(token) = e.token else { continue };
        match (e.op, e.kind) {
            (Op::Acquire, Kind::Ok) => {
                let h = Holding {
                    worker: e.worker.clone(),
                    token,
                    fence: e.fence.unwrap_or(0),
                    granted: e.t,
                    end: 0,
                };
                by_token.insert(token, (h, e.valid_until.unwrap_or(e.t), None));
                order.push(token);
            }
            (Op::Valid, Kind::Ok) => {
                if let Some((_, until, released)) = by_token.get_mut(&token)
                    && released.is_none()
                {
                    *until = (*until).max(e.valid_until.unwrap_or(0));
                }
            }
            (Op::Release | Op::Drop, Kind::Invoke) => {
                if let Some((_, _, released)) = by_token.get_mut(&token) {
                    released.get_or_insert(e.t);
                }
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|token| by_token.remove(&token))
        .map(|(mut h, until, released)| {
            h.end = released.map_or(until, |r| r.min(until));
            h
        })
        .collect()
}

/// Runs C1 to C4 on `events` (C5 comes in through `params`).
pub fn check(events: &[Event], params: &Params) -> Findings {
    let mut f = Findings {
        final_counter: params.final_counter,
        leftovers: params.leftovers,
        ..Findings::default()
    };
    let events = sorted(events);
    f.operations = events
        .iter()
        .filter(|e| {
            matches!(e.kind, Kind::Ok)
                && matches!(e.op, Op::Acquire | Op::Read | Op::Write | Op::Release)
        })
        .count();
    f.cancellations = events
        .iter()
        .filter(|e| e.kind == Kind::Unknown && e.why.as_deref() == Some("cancelled"))
        .count();
    f.errors = events
        .iter()
        .filter(|e| matches!(e.kind, Kind::Fail | Kind::Unknown))
        .count()
        - f.cancellations;

    // C2 and C3 (fences) on the non-empty holdings, in grant order.
    let mut held: Vec<Holding> = holdings(&events.iter().map(|e| (*e).clone()).collect::<Vec<_>>())
        .into_iter()
        .filter(|h| h.end > h.granted)
        .collect();
    held.sort_by_key(|h| (h.granted, h.fence));
    f.holdings = held.len();
    let mut latest: Option<&Holding> = None;
    let mut highest_fence = 0;
    for h in &held {
        if let Some(prev) = latest
            && h.granted < prev.end
            && h.token != prev.token
        {
            f.overlaps += 1;
            f.overlap_example.get_or_insert_with(|| {
                format!(
                    "{} (fence {}) valid until +{:.1} ms while {} (fence {}) was granted at +{:.1} ms",
                    prev.worker,
                    prev.fence,
                    ms(prev.end.saturating_sub(prev.granted)),
                    h.worker,
                    h.fence,
                    ms(h.granted.saturating_sub(prev.granted)),
                )
            });
        }
        if latest.is_none_or(|prev| h.end > prev.end) {
            latest = Some(h);
        }
        if params.real_fences && h.fence <= highest_fence {
            f.fence_regressions += 1;
        }
        highest_fence = highest_fence.max(h.fence);
    }

    // C3 (stale writes) and C1.
    let mut write_sent: HashMap<&str, u64> = HashMap::new();
    // Completion time -> highest fence accepted by then.
    let mut accepted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut writes: Vec<(u64, u64)> = Vec::new();
    let mut values: HashMap<i64, usize> = HashMap::new();
    let mut open_writes: HashMap<&str, bool> = HashMap::new();
    for e in &events {
        match (e.op, e.kind) {
            (Op::Write, Kind::Invoke) => {
                write_sent.insert(&e.worker, e.t);
                open_writes.insert(&e.worker, true);
            }
            (Op::Write, Kind::Ok | Kind::Fail | Kind::Unknown) => {
                open_writes.insert(&e.worker, false);
            }
            _ => {}
        }
        if matches!(e.op, Op::Read | Op::Write) && e.kind == Kind::Ok {
            match e.accepted {
                Some(true) => {
                    let fence = e.fence.unwrap_or(0);
                    let entry = accepted.entry(e.t).or_insert(0);
                    *entry = (*entry).max(fence);
                    if e.op == Op::Write {
                        f.acked_writes += 1;
                        *values.entry(e.value.unwrap_or(0)).or_insert(0) += 1;
                        writes.push((
                            write_sent.get(e.worker.as_str()).copied().unwrap_or(e.t),
                            fence,
                        ));
                    }
                }
                Some(false) => f.stale_refused += 1,
                None => {}
            }
        }
        if e.op == Op::Write && e.kind == Kind::Unknown {
            f.unknown_writes += 1;
        }
    }
    f.unknown_writes += open_writes.values().filter(|open| **open).count();
    let mut running = 0;
    let prefix: Vec<(u64, u64)> = accepted
        .into_iter()
        .map(|(t, fence)| {
            running = running.max(fence);
            (t, running)
        })
        .collect();
    for (sent, fence) in writes {
        let i = prefix.partition_point(|(t, _)| *t < sent);
        if i > 0 && prefix[i - 1].1 > fence {
            f.stale_accepted += 1;
        }
    }
    let duplicates: usize = values.values().map(|n| n - 1).sum();
    let missing = (f.acked_writes as i64 - params.final_counter).max(0) as usize;
    f.lost_updates = duplicates.max(missing);

    // C4 and recovery times.
    let grants: Vec<u64> = held.iter().map(|h| h.granted).collect();
    let bound = (params.ttl + params.fallback_cap + params.slack).as_nanos() as u64;
    let mut worst: Option<u64> = None;
    for e in events.iter().filter(|e| e.op == Op::Fault) {
        f.faults += 1;
        let ended = e.valid_until.unwrap_or(e.t);
        let i = grants.partition_point(|g| *g <= ended);
        let recovery = grants
            .get(i)
            .map_or(params.end.saturating_sub(ended), |g| g - ended);
        worst = Some(worst.map_or(recovery, |w| w.max(recovery)));
        let killed = matches!(e.why.as_deref(), Some("sigkill-holder" | "sigkill-run"));
        if killed && recovery > bound {
            f.slow_recoveries += 1;
        }
    }
    f.worst_recovery_ms = worst.map(ms);

    // C6: each acquire's send (the worker's last invoke before it) and
    // answer; `leasehold run` commands log no send and are left out.
    let mut sent: HashMap<&str, u64> = HashMap::new();
    let mut acquires: Vec<(u64, u64)> = Vec::new();
    for e in &events {
        match (e.op, e.kind) {
            (Op::Acquire, Kind::Invoke) => {
                sent.insert(&e.worker, e.t);
            }
            (Op::Acquire, Kind::Ok) => {
                if let Some(s) = sent.remove(e.worker.as_str()) {
                    acquires.push((s, e.t));
                }
            }
            (Op::Acquire, _) => {
                sent.remove(e.worker.as_str());
            }
            _ => {}
        }
    }
    let margin = STOP_MARGIN.as_nanos() as u64;
    f.grants_without_quorum = acquires
        .iter()
        .filter(|(s, t)| {
            params
                .no_quorum
                .iter()
                .any(|(from, to)| *s > from + margin && *t + margin < *to)
        })
        .count();
    let window = MINORITY_WINDOW.as_nanos() as u64;
    f.starved_minority_stops = params
        .minority_stopped
        .iter()
        .filter(|(from, to)| to.saturating_sub(*from) >= window)
        .filter(|(from, to)| !acquires.iter().any(|(_, t)| t > from && t < to))
        .count();
    f
}

fn sorted(events: &[Event]) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().collect();
    // Stable: events of one worker logged at the same nanosecond keep their
    // order.
    v.sort_by_key(|e| e.t);
    v
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ev(worker: &str, kind: Kind, op: Op, t_ms: u64) -> Event {
        Event {
            worker: worker.into(),
            kind,
            op,
            fence: None,
            token: None,
            t: t_ms * MS,
            valid_until: None,
            value: None,
            accepted: None,
            pid: None,
            why: None,
        }
    }

    /// A whole cycle of `worker`: acquire at `at` ms with `fence`, valid for
    /// `valid` ms, read `value`, write `value + 1` (accepted or not), release
    /// at `at + hold`.
    #[allow(clippy::too_many_arguments)]
    fn cycle(
        worker: &str,
        token: u64,
        fence: u64,
        at: u64,
        valid: u64,
        hold: u64,
        value: i64,
        accepted: bool,
    ) -> Vec<Event> {
        let with = |mut e: Event| {
            e.token = Some(token);
            e.fence = Some(fence);
            e
        };
        let mut acquired = with(ev(worker, Kind::Ok, Op::Acquire, at));
        acquired.valid_until = Some((at + valid) * MS);
        let mut read = with(ev(worker, Kind::Ok, Op::Read, at + 1));
        read.value = Some(value);
        read.accepted = Some(true);
        let mut write = with(ev(worker, Kind::Ok, Op::Write, at + 3));
        write.value = Some(value + 1);
        write.accepted = Some(accepted);
        vec![
            with(ev(worker, Kind::Invoke, Op::Acquire, at)),
            acquired,
            with(ev(worker, Kind::Invoke, Op::Read, at + 1)),
            read,
            with(ev(worker, Kind::Invoke, Op::Write, at + 2)),
            write,
            with(ev(worker, Kind::Invoke, Op::Release, at + hold)),
            with(ev(worker, Kind::Ok, Op::Release, at + hold + 1)),
        ]
    }

    fn params(final_counter: i64) -> Params {
        Params {
            ttl: Duration::from_millis(100),
            fallback_cap: Duration::from_millis(50),
            slack: Duration::ZERO,
            real_fences: true,
            final_counter,
            leftovers: 0,
            end: 10_000 * MS,
            no_quorum: Vec::new(),
            minority_stopped: Vec::new(),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let mut events = cycle("a", 1, 1, 0, 100, 10, 0, true);
        events.extend(cycle("b", 2, 2, 20, 100, 10, 1, true));
        events.extend(cycle("a", 3, 3, 40, 100, 10, 2, true));
        let f = check(&events, &params(3));
        assert_eq!(f.breaches(), Vec::<&str>::new(), "{f:?}");
        assert_eq!((f.holdings, f.acked_writes, f.operations), (3, 3, 12));
    }

    #[test]
    fn an_overlapping_pair_is_caught() {
        // b is granted at 20 ms while a's validity runs to 100 ms and a
        // releases only at 50 ms.
        let mut events = cycle("a", 1, 1, 0, 100, 50, 0, true);
        events.extend(cycle("b", 2, 2, 20, 100, 10, 1, true));
        let f = check(&events, &params(2));
        assert_eq!(f.overlaps, 1, "{f:?}");
        assert!(f.breaches().contains(&"C2"));
        assert!(f.overlap_example.unwrap().contains("fence 1"));
    }

    #[test]
    fn a_holder_past_its_validity_does_not_overlap() {
        // a's validity ended at 15 ms (say, paused) though it released late.
        let mut events = cycle("a", 1, 1, 0, 15, 50, 0, true);
        events.extend(cycle("b", 2, 2, 20, 100, 10, 1, true));
        let f = check(&events, &params(2));
        assert_eq!(f.overlaps, 0, "{f:?}");
    }

    #[test]
    fn a_renewal_extends_the_validity() {
        let mut events = cycle("a", 1, 1, 0, 15, 50, 0, true);
        let mut renewed = ev("a", Kind::Ok, Op::Valid, 10);
        renewed.token = Some(1);
        renewed.valid_until = Some(60 * MS);
        events.push(renewed);
        events.extend(cycle("b", 2, 2, 20, 100, 10, 1, true));
        assert_eq!(check(&events, &params(2)).overlaps, 1);
    }

    #[test]
    fn a_grant_while_a_majority_is_stopped_is_caught() {
        // a's acquire is sent at 100 ms and granted at 103 ms, inside a
        // stop of a majority from 50 to 300 ms; b's was sent before it.
        let mut events = cycle("b", 2, 1, 20, 25, 10, 0, true);
        events.extend(cycle("a", 1, 2, 100, 50, 10, 1, true));
        let mut p = params(2);
        p.no_quorum = vec![(50 * MS, 300 * MS)];
        let f = check(&events, &p);
        assert_eq!(f.grants_without_quorum, 1, "{f:?}");
        assert_eq!(f.breaches(), ["C6"]);
        // The same history with the stop ended before a's acquire: clean.
        p.no_quorum = vec![(30 * MS, 90 * MS)];
        assert_eq!(check(&events, &p).breaches(), Vec::<&str>::new());
    }

    #[test]
    fn a_minority_stop_without_a_grant_is_caught() {
        let events = cycle("a", 1, 1, 100, 50, 10, 0, true);
        let mut p = params(1);
        // 1 s with no grant, then one with a's grant inside.
        p.minority_stopped = vec![(200 * MS, 1200 * MS), (0, 600 * MS)];
        let f = check(&events, &p);
        assert_eq!(f.starved_minority_stops, 1, "{f:?}");
        assert_eq!(f.breaches(), ["C6"]);
        // Shorter than the window: not held against the lock.
        p.minority_stopped = vec![(200 * MS, 400 * MS)];
        assert_eq!(check(&events, &p).breaches(), Vec::<&str>::new());
    }

    #[test]
    fn a_stale_write_is_caught() {
        // a reads 0 with fence 1 and pauses; b (fence 2) reads 0 and writes 1;
        // a's write of 1 with fence 1 is accepted after b's accepted access.
        let mut events = cycle("b", 2, 2, 20, 100, 10, 0, true);
        let mut a = cycle("a", 1, 1, 0, 15, 50, 0, true);
        for e in &mut a {
            if e.op == Op::Write {
                e.t += 40 * MS;
            }
        }
        events.extend(a);
        let f = check(&events, &params(1));
        assert_eq!(f.stale_accepted, 1, "{f:?}");
        assert_eq!(f.lost_updates, 1, "{f:?}");
        assert!(f.breaches().contains(&"C3") && f.breaches().contains(&"C1"));
    }

    #[test]
    fn a_refused_stale_write_is_no_breach() {
        let mut events = cycle("b", 2, 2, 20, 100, 10, 0, true);
        let mut a = cycle("a", 1, 1, 0, 15, 50, 0, false);
        for e in &mut a {
            if e.op == Op::Write {
                e.t += 40 * MS;
            }
        }
        events.extend(a);
        let f = check(&events, &params(1));
        assert_eq!(f.breaches(), Vec::<&str>::new(), "{f:?}");
        assert_eq!(f.stale_refused, 1);
    }

    #[test]
    fn a_fence_going_back_is_caught() {
        let mut events = cycle("a", 1, 7, 0, 100, 10, 0, true);
        events.extend(cycle("b", 2, 1, 20, 100, 10, 1, false));
        let f = check(&events, &params(1));
        assert_eq!(f.fence_regressions, 1, "{f:?}");
        assert!(f.breaches().contains(&"C3"));
    }

    #[test]
    fn a_slow_recovery_after_a_kill_is_caught() {
        let mut events = cycle("a", 1, 1, 0, 100, 10, 0, true);
        let mut kill = ev("faults", Kind::Ok, Op::Fault, 20);
        kill.why = Some("sigkill-holder".into());
        kill.valid_until = Some(20 * MS);
        events.push(kill);
        // Next grant 400 ms later: more than ttl (100) + cap (50).
        events.extend(cycle("b", 2, 2, 420, 100, 10, 1, true));
        let f = check(&events, &params(2));
        assert_eq!(f.slow_recoveries, 1, "{f:?}");
        assert_eq!(f.worst_recovery_ms, Some(400.0));
    }
}
