//! Waiting for a condition with a deadline: how tests wait for something
//! to happen (a waiter to subscribe, a lease to expire) instead of
//! sleeping and hoping. Each polls the condition until it holds, and
//! panics naming what it waited for once the deadline has passed.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the condition is looked at again.
const POLL: Duration = Duration::from_millis(5);

/// Polls the async `cond` every 5 ms until it holds; panics, naming
/// `what`, after `within`. For tokio tests (it sleeps with
/// `tokio::time::sleep`, so it needs a tokio runtime with time enabled).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// let calls = AtomicU32::new(0);
/// testkit::eventually(Duration::from_secs(5), "the third look", || async {
///     calls.fetch_add(1, Ordering::Relaxed) == 2
/// })
/// .await;
/// # }
/// ```
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a synchronous condition, sleeping the thread
/// between looks: for tests without a runtime (the CLI's, testkit's own).
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// testkit::eventually_blocking(Duration::from_secs(5), "20 ms to pass", || {
///     start.elapsed() >= Duration::from_millis(20)
/// });
/// ```
pub fn eventually_blocking(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
