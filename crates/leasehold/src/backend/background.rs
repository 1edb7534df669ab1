//! The releases a client still runs in the background (and the batches
//! whose replies may call for one), counted, so that a process about to
//! exit can wait for them
//! ([`Client::settle`](crate::Client::settle)): a runtime that shuts down
//! drops its tasks at their next await, and a command whose caller is gone
//! before its connection wrote it is never sent. The leases those
//! releases were for would stay held until their TTL.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of running background releases, shared by the client's parts.
#[derive(Clone, Default)]
pub(crate) struct Background(Arc<Count>);

#[derive(Default)]
struct Count {
    running: AtomicUsize,
    idle: Notify,
}

/// Counts one task out when it ends, finished or dropped.
struct Running(Background);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl Background {
    /// Runs `work` on `runtime`, counted until it ends.
    pub(crate) fn spawn(
        &self,
        runtime: &tokio::runtime::Handle,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.clone());
        drop(runtime.spawn(async move {
            let _running = running;
            work.await;
        }));
    }

    /// Returns once no counted task runs (at once if none does).
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: an end in between wakes it.
            notified.as_mut().enable();
            if self.0.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}
