//! The engine of a [`Client`](crate::Client): what every lease, guard and
//! data call of the client shares.
//!
//! [`Core`] owns the [`Backend`] (the deployment), the wake hub (how waiters
//! hear of releases), the renewal [`Schedule`] and the runtime that
//! background work runs on. Primitives and guards hold an `Arc<Core>`. The
//! public [`Client`] is only a handle on it: the type is defined here, its
//! methods (which make the primitives) in `client.rs`, at the top, so
//! that nothing below that file refers to it, except the data layer that
//! takes a `&Client` to find its core.

pub(crate) mod schedule;

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::backend::background::Background;
use crate::backend::{Backend, HandoverReply, Released, Replicas};
use crate::error::Result;
use crate::keys::{Family, LeaseKeys};
use crate::observe;
use crate::token::Token;
use crate::wake::WakeHub;
use schedule::Schedule;

/// A handle on one Redis deployment; cheap to clone, meant to be shared.
///
/// A `Client` owns:
/// - one multiplexed connection that every lease of the process shares
///   (commands of many tasks are pipelined on it) and that reconnects by
///   itself when it breaks. It never carries a blocking command, which would
///   stall every task behind it. When many tasks take and give back plain
///   leases at once, their scripts travel as one call that runs each in
///   turn, exactly as alone (a lone call never waits for company);
/// - one subscriber connection, opened on the first wait, through which the
///   releases of the names local tasks wait for arrive (see
///   [Waiting](crate#waiting));
/// - the handle of the tokio runtime it was created on, so that dropping a
///   guard can release its lease in the background from anywhere.
///
/// ```no_run
/// # async fn f() -> leasehold::Result<()> {
/// let client = leasehold::Client::connect("redis://127.0.0.1:6379").await?;
/// let guard = client.lease("reports/nightly").acquire().await?;
/// println!("fence {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) core: Arc<Core>,
}

impl Client {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.core.addr())
            .finish()
    }
}

/// What a client's leases, guards and data calls share.
pub(crate) struct Core {
    pub(crate) backend: Backend,
    pub(crate) hub: WakeHub,
    /// When each self-renewing guard is next due.
    pub(crate) renewals: Schedule,
    /// Where background work (releases of dropped guards) runs, whatever
    /// runtime the dropping code is on.
    pub(crate) runtime: tokio::runtime::Handle,
    /// How many replicas must acknowledge a grant before its guard is
    /// returned ([`ClientBuilder::replicas`](crate::ClientBuilder::replicas)).
    pub(crate) replicas: Option<Replicas>,
    /// The releases running in the background, for
    /// [`Client::settle`](crate::Client::settle).
    pub(crate) background: Background,
}

impl Core {
    /// The engine over `backend`, whose releases publish `id`.
    pub(crate) fn new(backend: Backend, id: Token, replicas: Option<Replicas>) -> Arc<Core> {
        let runtime = tokio::runtime::Handle::current();
        let hub = WakeHub::new(backend.wake_source(), id.as_bytes(), runtime.clone());
        let core = Arc::new(Core {
            background: backend.background(),
            backend,
            hub,
            renewals: Schedule::new(runtime.clone()),
            runtime,
            replicas,
        });
        // A plain lease taken by an acquire whose caller gave up while its
        // batch was out is released as any other (and may be handed over).
        let weak = Arc::downgrade(&core);
        core.backend.on_abandoned(Box::new(move |keys, token| {
            if let Some(core) = weak.upgrade() {
                core.release_in_background(keys, token);
            }
        }));
        core
    }

    /// The printable address of the deployment.
    pub(crate) fn addr(&self) -> &str {
        self.backend.addr()
    }

    /// Releases `token`'s hold on `keys` in a background task; for drops.
    pub(crate) fn release_in_background(self: &Arc<Self>, keys: Arc<LeaseKeys>, token: Token) {
        self.settle_in_background(keys, Some(token), None);
    }

    /// For a dropped acquire, in a background task: releases what `token`
    /// may hold, then takes the fair waiter `leaving` out of its queue.
    /// For a fair lease, the leave alone does both when `leaving` is given
    /// (`fair_cancel`: it releases a grant the token did not take, and
    /// hands it on), and `token` is the waiter's token whether or not the
    /// claim knew it may hold the lease: a release's grant may be on its
    /// way to a waiter that has given up.
    pub(crate) fn settle_in_background(
        self: &Arc<Self>,
        keys: Arc<LeaseKeys>,
        token: Option<Token>,
        leaving: Option<(Token, Token)>,
    ) {
        let core = Arc::clone(self);
        let fut = async move {
            // What the dropped operation sent runs first.
            core.backend.settled().await;
            let fair_lease = matches!(keys.family(), Family::Fair(_));
            let release = token.filter(|_| !(fair_lease && leaving.is_some()));
            if let Some(token) = release {
                // The fence is the guard's (or none, for an acquire): not known here.
                let span = observe::release_span!(keys, token, tracing::field::Empty);
                match core.release(&keys, &token).instrument(span.clone()).await {
                    Ok(released) => {
                        span.record("outcome", if released { "released" } else { "not-held" });
                    }
                    Err(e) => {
                        span.record("outcome", "error");
                        tracing::warn!(
                            target: observe::TARGET,
                            name = keys.display(),
                            kind = keys.kind(),
                            token = token.prefix(),
                            error = %e,
                            "leasehold: background release failed; the lease ends when its TTL runs out"
                        );
                    }
                }
            }
            if let Some((id, token)) = leaving {
                let lost = LostReply {
                    hub: &core.hub,
                    channel: keys.wake(),
                };
                match core.backend.leave(&keys, id.as_str(), &token).await {
                    Ok(left) => {
                        lost.answered(left.queued || left.released);
                        core.handed(&keys, left.handed);
                    }
                    Err(e) => tracing::debug!(
                        lease = keys.display(),
                        error = %e,
                        "leasehold: leaving the fair queue failed; the place ends at the waiter's deadline (and a grant it did not take, at its claim window)"
                    ),
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => self.background.spawn(&h, fut),
            Err(_) => self.background.spawn(&self.runtime, fut),
        }
    }

    /// A fair lease given to its queue's head by a script of this client:
    /// a local head is told at once, without waiting for the publish to
    /// come back through Redis (whose echo it then ignores).
    fn handed(&self, keys: &LeaseKeys, handed: Released) {
        if let Released::Granted { fence, to, attempt } = handed {
            self.hub.grant(keys.wake(), to.as_str(), fence, attempt);
        }
    }

    /// Releases `token`'s hold on `keys`; wakes the next local waiter when
    /// it released. Whether the token held it.
    ///
    /// A plain lease with a local waiter at the head of its queue is handed
    /// over instead: one script frees it and gives it to that waiter's
    /// token, and the waiter takes it without a round trip of its own.
    pub(crate) async fn release(
        self: &Arc<Self>,
        keys: &Arc<LeaseKeys>,
        token: &Token,
    ) -> Result<bool> {
        let hub = &self.hub;
        if let Some(offer) = matches!(keys.family(), Family::Lease)
            .then(|| hub.offer(keys.wake()))
            .flatten()
        {
            let next = offer.successor();
            let sent = Instant::now();
            let reply = self
                .backend
                .handover(
                    keys,
                    token,
                    &next.token,
                    std::time::Duration::from_millis(next.ttl_ms),
                    offer.tolerated(),
                    hub.freed_payload(),
                )
                .await;
            let (delivered, result) = match reply {
                Ok(HandoverReply::To(fence)) => {
                    observe::handover();
                    tracing::debug!(
                        target: observe::TARGET,
                        name = keys.display(),
                        fence,
                        to = next.token.prefix(),
                        "leasehold: lease handed over to a local waiter"
                    );
                    (offer.grant(fence, sent), Ok(true))
                }
                Ok(HandoverReply::Freed) => {
                    // Other clients wait too: the publish wakes theirs, and
                    // ours tries again after a moment (see `Offer::requeue`).
                    offer.requeue();
                    (true, Ok(true))
                }
                Ok(HandoverReply::NotHeld) => (hub.withdraw(offer, keys.wake()), Ok(false)),
                Err(e) => (offer.unknown(), Err(e)),
            };
            if !delivered {
                // The waiter gave up meanwhile: pass the lease on from
                // its token (a no-op if it was never handed over).
                self.release_in_background(Arc::clone(keys), next.token);
            }
            return result;
        }
        // Only the reply tells this client's waiters that the release freed
        // the lease (the publish's echo is skipped) or, in fair mode, gave
        // it to one of them: should the reply be lost, the local head tries
        // at once (see `LostReply`).
        let lost = LostReply {
            hub,
            channel: keys.wake(),
        };
        let released = self.backend.release(keys, *token).await?;
        lost.answered(!matches!(released, Released::NotHeld));
        self.handed(keys, released);
        // Wake the next local waiter now: the echo of our own publish is
        // skipped. Not when the publish named the waiters whose turn it is
        // (fair mode), who may be in another process; but a fair release
        // that owes nobody queued wakes the local waiters too, and so does
        // a writer's withdrawn intent, which let readers in.
        if released.wakes_local() {
            hub.wake(keys.wake());
        }
        Ok(released.released())
    }
}

/// A release (or a fair waiter's leave) of this client is out, and only
/// its script's reply tells this client's waiters what it did: the client
/// skips the echo of its own publish, and wakes them itself on the reply.
/// A fair release may also give the lease to a waiter of this client,
/// which the script tells by its reply alone (it publishes nothing for
/// it; see `scripts::fair`).
///
/// Dropped before that reply was read (an error, a connection lost, the
/// caller gone), it wakes the head of the name's local queue (all of it
/// for a read-write lock), which tries at once: the lease may be free, or
/// `fair_acquire` finds it holding the waiter's token and answers the
/// grant; else the attempt is refused and the waiter waits on. Another
/// local waiter a fair lease went to (the local head is most often the
/// queue's) finds it by its fallback timer, as it would a lost message;
/// the lease is held meanwhile no longer than the grant's claim window,
/// as for a dead head. Settled by [`answered`](LostReply::answered) once
/// the reply is read.
struct LostReply<'a> {
    hub: &'a WakeHub,
    channel: &'a [u8],
}

impl LostReply<'_> {
    /// The reply was read: `found` when the script found something to
    /// release or leave. When it did not, this may be a second run of the
    /// script, sent again after the first run's reply was lost (a cluster
    /// connection does that after a connection error; a guard whose
    /// release failed releases again), and that first run may have freed
    /// the lease or given it to a waiter of this client: the local head
    /// looks, as for a lost reply. Where nothing was freed or given, the
    /// look costs one refused attempt.
    fn answered(self, found: bool) {
        if found {
            std::mem::forget(self);
        }
    }
}

impl Drop for LostReply<'_> {
    fn drop(&mut self) {
        self.hub.wake(self.channel);
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("addr", &self.addr()).finish()
    }
}
