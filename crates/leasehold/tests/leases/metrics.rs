//! Metrics (crate feature `metrics`): real acquires, waits, releases,
//! renewals, a loss, batches and a Redis error move the counters and
//! histograms they should, with the documented names and labels.
//!
//! Each test records into a recorder of its own, set for its thread, and
//! runs on a current-thread runtime: the client's background work
//! (renewals, batches) runs on that thread too, and the tests running
//! beside it in this binary record nothing into it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::task::JoinSet;

use crate::common::*;

/// What a test's recorder has seen so far: each snapshot empties the
/// recorder, so they are added up here.
struct Recorded {
    snapshotter: Snapshotter,
    counters: RefCell<HashMap<String, u64>>,
    histograms: RefCell<HashMap<String, Vec<f64>>>,
}

impl Recorded {
    fn refresh(&self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.borrow_mut().entry(name).or_default() += n,
                DebugValue::Histogram(v) => self
                    .histograms
                    .borrow_mut()
                    .entry(name)
                    .or_default()
                    .extend(v.into_iter().map(|f| f.into_inner())),
                DebugValue::Gauge(_) => panic!("leasehold records no gauge: {name}"),
            }
        }
    }

    /// A counter, as `name{label=value,...}` (labels sorted).
    fn counter(&self, key: &str) -> u64 {
        self.refresh();
        self.counters.borrow().get(key).copied().unwrap_or(0)
    }

    /// A histogram's values, as `name{label=value,...}`.
    fn histogram(&self, key: &str) -> Vec<f64> {
        self.refresh();
        self.histograms
            .borrow()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Every name seen, for messages.
    fn names(&self) -> String {
        self.refresh();
        let mut all: Vec<String> = self.counters.borrow().keys().cloned().collect();
        all.extend(self.histograms.borrow().keys().cloned());
        all.sort();
        all.join("\n")
    }
}

/// Runs `test` on a current-thread runtime with a recorder of its own.
fn recorded(test: impl AsyncFnOnce(&Recorded)) {
    let recorder = DebuggingRecorder::new();
    let seen = Recorded {
        snapshotter: recorder.snapshotter(),
        counters: RefCell::default(),
        histograms: RefCell::default(),
    };
    let _local = metrics::set_default_local_recorder(&recorder);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test(&seen));
}

#[test]
fn acquires_waits_releases_and_handovers_are_counted() {
    recorded(async |m| {
        let (_server, client) = setup().await;
        let lease = client.lease("m:a").ttl(Duration::from_secs(5));

        lease.acquire().await.unwrap().release().await.unwrap();
        let acquired = "leasehold_acquisitions_total{kind=lease,outcome=acquired}";
        assert_eq!(m.counter(acquired), 1, "{}", m.names());
        assert_eq!(
            m.histogram("leasehold_wait_seconds{kind=lease,outcome=acquired}")
                .len(),
            1
        );
        assert_eq!(m.histogram("leasehold_hold_seconds{kind=lease}").len(), 1);

        // Held: a try is busy, a short wait times out.
        let guard = lease.acquire().await.unwrap();
        assert!(lease.try_acquire().await.unwrap_err().is_held());
        assert_eq!(
            m.counter("leasehold_acquisitions_total{kind=lease,outcome=busy}"),
            1
        );
        let e = lease
            .clone()
            .wait(Duration::from_millis(200))
            .acquire()
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(
            m.counter("leasehold_acquisitions_total{kind=lease,outcome=timeout}"),
            1
        );
        let waited = m.histogram("leasehold_wait_seconds{kind=lease,outcome=timeout}");
        assert_eq!(waited.len(), 1);
        assert!(
            (0.2..5.0).contains(&waited[0]),
            "waited {}s for a 200ms wait",
            waited[0]
        );

        // A local waiter: the release hands the lease straight to it.
        let waiter = tokio::spawn({
            let lease = lease.clone();
            async move { lease.acquire().await.unwrap() }
        });
        eventually(Duration::from_secs(5), "the waiter to queue", || async {
            lease.local_waiters() == 1
        })
        .await;
        guard.release().await.unwrap();
        let next = waiter.await.unwrap();
        next.release().await.unwrap();
        assert_eq!(m.counter("leasehold_handovers_total{}"), 1, "{}", m.names());
        assert_eq!(m.counter(acquired), 3);
        assert_eq!(
            m.histogram("leasehold_wait_seconds{kind=lease,outcome=acquired}")
                .len(),
            3
        );
        // Each hold counted once, when it ended.
        assert_eq!(m.histogram("leasehold_hold_seconds{kind=lease}").len(), 3);
        assert_eq!(
            m.counter("leasehold_losses_total{cause=gone,kind=lease}"),
            0
        );
    });
}

#[test]
fn renewals_their_lag_and_a_loss_are_counted() {
    recorded(async |m| {
        let (server, client) = setup().await;
        let mut conn = raw(&server).await;
        // Renewed every 100 ms.
        let guard = client
            .lease("m:renewed")
            .ttl(Duration::from_millis(300))
            .acquire()
            .await
            .unwrap();
        let ok = "leasehold_renewals_total{kind=lease,outcome=ok}";
        eventually(Duration::from_secs(5), "two renewals", || async {
            m.counter(ok) >= 2
        })
        .await;
        let lag = m.histogram("leasehold_renewal_lag_seconds{kind=lease}");
        assert!(lag.len() >= 2, "{lag:?}");
        assert!(lag.iter().all(|s| (0.0..1.0).contains(s)), "{lag:?}");

        // Taken away behind its back: the next renewal finds it gone.
        let () = redis::cmd("DEL")
            .arg("m:renewed")
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), guard.lost())
            .await
            .expect("the loss is seen within two renewal periods");
        assert_eq!(
            m.counter("leasehold_losses_total{cause=gone,kind=lease}"),
            1,
            "{}",
            m.names()
        );
        assert_eq!(
            m.counter("leasehold_renewals_total{kind=lease,outcome=lost}"),
            1
        );
        assert_eq!(m.histogram("leasehold_hold_seconds{kind=lease}").len(), 1);
        // Released after the loss: told lost, and neither the loss nor
        // the hold counted twice.
        assert!(guard.release().await.unwrap_err().is_lost());
        assert_eq!(
            m.counter("leasehold_losses_total{cause=gone,kind=lease}"),
            1,
            "counted once, before"
        );
        assert_eq!(
            m.histogram("leasehold_hold_seconds{kind=lease}").len(),
            1,
            "counted once, before"
        );

        // Not renewed (auto_renew off): its validity runs out.
        let guard = client
            .lease("m:unrenewed")
            .ttl(Duration::from_millis(50))
            .auto_renew(false)
            .acquire()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), guard.lost())
            .await
            .unwrap();
        assert_eq!(
            m.counter("leasehold_losses_total{cause=expired,kind=lease}"),
            1
        );
    });
}

#[test]
fn each_kind_is_labelled() {
    recorded(async |m| {
        let (_server, client) = setup().await;
        let sem = client.semaphore("m:sem", 2);
        sem.acquire().await.unwrap().release().await.unwrap();
        let rw = client.rwlock("m:rw");
        rw.read().acquire().await.unwrap().release().await.unwrap();
        rw.write()
            .try_acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        let fair = client.lease("m:fair").fair(true);
        fair.acquire().await.unwrap().release().await.unwrap();
        for kind in ["semaphore", "rwlock-read", "rwlock-write", "fair"] {
            let key = format!("leasehold_acquisitions_total{{kind={kind},outcome=acquired}}");
            assert_eq!(m.counter(&key), 1, "{key}: {}", m.names());
            let key = format!("leasehold_hold_seconds{{kind={kind}}}");
            assert_eq!(m.histogram(&key).len(), 1, "{key}");
        }
    });
}

#[test]
fn redis_errors_are_counted_by_kind() {
    recorded(async |m| {
        let (server, client) = setup().await;
        let mut conn = raw(&server).await;
        // The fencing counter made a hash: the acquire script's INCR on it fails.
        let () = redis::cmd("HSET")
            .arg("leasehold:{m:err}:fence")
            .arg("f")
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap();
        let e = client.lease("m:err").try_acquire().await.unwrap_err();
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        assert_eq!(
            m.counter("leasehold_redis_errors_total{kind=wrongtype}"),
            1,
            "{}",
            m.names()
        );
        assert_eq!(
            m.counter("leasehold_acquisitions_total{kind=lease,outcome=error}"),
            1
        );
    });
}

#[test]
fn batches_are_counted_with_their_size() {
    recorded(async |m| {
        let (_server, client) = setup().await;
        const TASKS: usize = 40;
        const CYCLES: usize = 5;
        let mut set = JoinSet::new();
        for i in 0..TASKS {
            let lease = client.lease(format!("m:own:{i}"));
            set.spawn(async move {
                for _ in 0..CYCLES {
                    lease.try_acquire().await.unwrap().release().await.unwrap();
                }
            });
        }
        set.join_all().await;
        let batches = m.counter("leasehold_batches_total{}");
        let sizes = m.histogram("leasehold_batch_size{}");
        assert!(batches >= 1, "40 tasks at once make batches: {}", m.names());
        assert_eq!(sizes.len() as u64, batches);
        assert!(sizes.iter().all(|&n| n >= 1.0), "{sizes:?}");
        let batched: f64 = sizes.iter().sum();
        assert!(batched <= (2 * TASKS * CYCLES) as f64, "{batched}");
        assert_eq!(
            m.counter("leasehold_acquisitions_total{kind=lease,outcome=acquired}"),
            (TASKS * CYCLES) as u64
        );
    });
}
