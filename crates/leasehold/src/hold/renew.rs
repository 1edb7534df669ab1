//! Self-renewal: what a guard's holding does when its renewal is due.
//!
//! A guard that renews itself is entered in its client's schedule
//! ([`crate::engine::schedule`]) every `ttl/3`. Why `ttl/3`: a renewal that
//! fails (a timeout, a broken connection) is retried several times before
//! the validity runs out, and even two missed periods leave a third of the
//! ttl. The backend sends a renewal stuck on the shared connection again on
//! a connection of its own ([`Backend::extend`](crate::backend::Backend::extend)).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::guard::Holding;
use crate::engine::schedule::{Due, Entry};
use crate::observe::{self, Loss};

impl Due for Holding {
    fn entry(&self) -> MutexGuard<'_, Option<Entry>> {
        self.lock_entry()
    }

    fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    fn fire(self: Arc<Self>, due: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(renew_once(self, due))
    }
}

/// One renewal of `holding`, which enters it again for the next one.
///
/// A failure that may pass ([`Error::is_retryable`](crate::Error::is_retryable):
/// a broken connection, a reply that did not come, Redis loading or busy)
/// is retried while the lease is still valid; any other refusal (the key
/// gone or taken, a read-only replica, Redis out of memory) ends the guard
/// at once: it can no longer be proved held, and the sooner its holder
/// stops the better.
async fn renew_once(holding: Arc<Holding>, due: Instant) {
    if holding.stop.is_cancelled() || holding.lost.is_cancelled() {
        return;
    }
    let kind = holding.keys.kind();
    observe::renewal_lag(kind, due);
    let span = observe::renew_span!(
        holding.keys,
        holding.token,
        holding.fence,
        Instant::now().saturating_duration_since(due)
    );
    let outcome = renew(&holding).instrument(span.clone()).await;
    if let Some(outcome) = outcome {
        span.record("outcome", outcome);
        observe::renewal(kind, outcome);
    }
}

/// The renewal itself; its outcome (`ok`, `retry`, `lost`), or `None` when
/// the guard let go meanwhile.
async fn renew(holding: &Arc<Holding>) -> Option<&'static str> {
    let period = holding.ttl / 3;
    // After a failure, try again sooner, but not in a tight loop.
    let retry = (period / 4).max(Duration::from_millis(5));
    let left = holding
        .valid_until()
        .saturating_duration_since(Instant::now());
    let result = tokio::select! {
        _ = holding.stop.cancelled() => return None,
        r = tokio::time::timeout(left, holding.extend()) => r,
    };
    match result {
        Ok(Ok(())) => {
            if holding.auto_renew {
                holding.schedule_renewal(Instant::now() + period);
            }
            Some("ok")
        }
        Ok(Err(e)) if e.is_lost() => Some("lost"),
        Ok(Err(e)) if e.is_retryable() => {
            let now = Instant::now();
            let valid_until = holding.valid_until();
            if now >= valid_until {
                holding.mark_lost(
                    Loss::RenewalFailed,
                    &format!("renewal kept failing until the lease's validity ran out ({e})"),
                );
                return Some("lost");
            }
            tracing::debug!(
                target: observe::TARGET,
                name = holding.keys.display(),
                error = %e,
                "leasehold: renewal failed; retrying"
            );
            holding.schedule_renewal((now + retry).min(valid_until));
            Some("retry")
        }
        Ok(Err(e)) => {
            holding.mark_lost(Loss::Refused, &format!("Redis refused the renewal ({e})"));
            Some("lost")
        }
        Err(_) => {
            holding.mark_lost(
                Loss::RenewalTimeout,
                "no renewal was answered before the lease's validity ran out",
            );
            Some("lost")
        }
    }
}
