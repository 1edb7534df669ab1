//! Where a lease lives in Redis (DESIGN §2).

use std::sync::Arc;

/// The longest name accepted: 1 KiB.
pub const MAX_NAME_LEN: usize = 1024;

/// The keys of one lease name: the lease itself, its fencing counter and its
/// wake channel, all in the hash slot of the name.
#[derive(Debug)]
pub(crate) struct LeaseKeys {
    name: Box<[u8]>,
    fence: Box<[u8]>,
    /// Shared with the wait hub, which keys its queues by channel.
    wake: Arc<[u8]>,
    display: String,
    kind: Kind,
}

impl LeaseKeys {
    /// Builds the keys of `name`, which must already be checked.
    ///
    /// Plain names get `leasehold:{N}:fence`: the braces make `N` the hash
    /// tag, so the slot of the counter is the slot of `N`. A name that
    /// already carries a hash tag keeps it: the counter is `N:leasehold:fence`,
    /// whose first tag is `N`'s.
    pub(crate) fn new(name: &[u8]) -> LeaseKeys {
        LeaseKeys {
            name: name.into(),
            fence: aux(name, "fence").into(),
            wake: aux(name, "wake").into(),
            display: display_name(name),
            kind: Kind::Lease,
        }
    }

    /// The keys of a semaphore named `name` with `limit` permits; `fair`
    /// adds the waiters' queue in Redis (the same keys as a fair lease's:
    /// a name is either a lease or a semaphore, not both).
    pub(crate) fn semaphore(name: &[u8], limit: u32, fair: bool) -> LeaseKeys {
        LeaseKeys {
            kind: Kind::Permit {
                permits: aux(name, "permits").into(),
                limit_key: aux(name, "limit").into(),
                fences: aux(name, "fences").into(),
                limit,
                fair: fair.then(|| FairQueue::new(name)),
            },
            ..LeaseKeys::new(name)
        }
    }

    /// The keys of a read-write lock named `name`, for its readers
    /// (`write == false`) or its writer. Readers and writers share one wake
    /// channel of their own, `leasehold:{N}:rwwake`, whose releases wake
    /// every local waiter.
    pub(crate) fn rwlock(name: &[u8], write: bool) -> LeaseKeys {
        let rw = RwKeys {
            readers: aux(name, "readers").into(),
            writer: aux(name, "writer").into(),
            intent: aux(name, "intent").into(),
            fences: aux(name, "fences").into(),
        };
        LeaseKeys {
            wake: aux(name, "rwwake").into(),
            kind: if write {
                Kind::Write(rw)
            } else {
                Kind::Read(rw)
            },
            ..LeaseKeys::new(name)
        }
    }

    /// The keys of a fair (FIFO) lease named `name`: the lease itself as for
    /// a plain lease (so fair and plain holders exclude each other), plus
    /// the waiters' queue in Redis.
    pub(crate) fn fair(name: &[u8]) -> LeaseKeys {
        LeaseKeys {
            kind: Kind::Fair(FairQueue::new(name)),
            ..LeaseKeys::new(name)
        }
    }

    /// Whether a release wakes every local waiter, not only the first.
    pub(crate) fn wakes_all(&self) -> bool {
        matches!(self.kind, Kind::Read(_) | Kind::Write(_))
    }

    /// Whether waiters stand in a queue in Redis (a fair lease or a fair
    /// semaphore): each waiter then has an id, and a release names the
    /// waiter(s) whose turn it is instead of waking a local one.
    pub(crate) fn is_fair(&self) -> bool {
        matches!(
            self.kind,
            Kind::Fair(_) | Kind::Permit { fair: Some(_), .. }
        )
    }

    /// The key whose content proves that a holder still holds, and how:
    /// a string holding its token (a lease, a fair lease, a writer) or a
    /// sorted set with its token as a live member (a permit, a reader).
    pub(crate) fn hold(&self) -> (&[u8], Hold) {
        match &self.kind {
            Kind::Lease | Kind::Fair(_) => (&self.name, Hold::String),
            Kind::Write(rw) => (&rw.writer, Hold::String),
            Kind::Permit { permits, .. } => (permits, Hold::Member),
            Kind::Read(rw) => (&rw.readers, Hold::Member),
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    pub(crate) fn name(&self) -> &[u8] {
        &self.name
    }

    pub(crate) fn fence(&self) -> &[u8] {
        &self.fence
    }

    pub(crate) fn wake(&self) -> &Arc<[u8]> {
        &self.wake
    }

    /// The name as people read it (lossy UTF-8, escaped, shortened).
    pub(crate) fn display(&self) -> &str {
        &self.display
    }
}

/// `leasehold:{N}:suffix`, or `N:leasehold:suffix` when `N` has a hash tag.
fn aux(name: &[u8], suffix: &str) -> Vec<u8> {
    if hash_tag(name).is_some() {
        [name, b":leasehold:", suffix.as_bytes()].concat()
    } else {
        [b"leasehold:{", name, b"}:", suffix.as_bytes()].concat()
    }
}

/// What a name's holders hold: the lease itself, or one permit of a
/// semaphore. Decides which scripts acquire, extend and release.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// The string key `N` holds the token.
    Lease,
    /// A member of the `permits` sorted set; at most `limit` of them live.
    Permit {
        /// `leasehold:{N}:permits`
        permits: Arc<[u8]>,
        /// `leasehold:{N}:limit`
        limit_key: Arc<[u8]>,
        /// `leasehold:{N}:fences`: hash, token -> the fence its permit was
        /// granted (a retry answers it again).
        fences: Arc<[u8]>,
        /// K
        limit: u32,
        /// Fair mode: permits go to waiters in arrival order.
        fair: Option<FairQueue>,
    },
    /// A lease served in arrival order.
    Fair(FairQueue),
    /// A reader of a read-write lock.
    Read(RwKeys),
    /// The writer of a read-write lock.
    Write(RwKeys),
}

/// How a key proves a hold (see [`LeaseKeys::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The string key holds the token.
    String,
    /// The token is a member of the sorted set, its score (expiry, server
    /// ms) still ahead of the server's clock.
    Member,
}

impl Hold {
    /// As the lease-scoped prelude reads it (ARGV).
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            Hold::String => "string",
            Hold::Member => "member",
        }
    }
}

/// The waiters' queue of a fair lease or a fair semaphore.
#[derive(Debug, Clone)]
pub(crate) struct FairQueue {
    /// `leasehold:{N}:queue`: waiter id -> arrival ticket.
    pub(crate) queue: Arc<[u8]>,
    /// `leasehold:{N}:queue-deadlines`: waiter id -> server ms.
    pub(crate) deadlines: Arc<[u8]>,
    /// `leasehold:{N}:queue-ticket`: the arrival counter.
    pub(crate) ticket: Arc<[u8]>,
}

impl FairQueue {
    fn new(name: &[u8]) -> FairQueue {
        FairQueue {
            queue: aux(name, "queue").into(),
            deadlines: aux(name, "queue-deadlines").into(),
            ticket: aux(name, "queue-ticket").into(),
        }
    }
}

/// The keys of a read-write lock.
#[derive(Debug, Clone)]
pub(crate) struct RwKeys {
    /// `leasehold:{N}:readers`: sorted set, token -> expiry (server ms).
    pub(crate) readers: Arc<[u8]>,
    /// `leasehold:{N}:writer`: the writer's token, PX ttl.
    pub(crate) writer: Arc<[u8]>,
    /// `leasehold:{N}:intent`: the first waiting writer's token, PX.
    pub(crate) intent: Arc<[u8]>,
    /// `leasehold:{N}:fences`: hash, reader's token -> the fence it was
    /// granted (a retry answers it again).
    pub(crate) fences: Arc<[u8]>,
}

/// The hash tag of a key as Redis Cluster computes it: the bytes between
/// the first `{` and the first `}` after it, when not empty.
pub(crate) fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// A printable form of a name for messages: escaped, at most 80 chars.
pub(crate) fn display_name(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut out: String = s.chars().flat_map(char::escape_debug).take(80).collect();
    if out.len() < s.len() && s.chars().flat_map(char::escape_debug).nth(80).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_tagged() {
        let k = LeaseKeys::new(b"jobs/nightly");
        assert_eq!(k.fence(), b"leasehold:{jobs/nightly}:fence");
        assert_eq!(&**k.wake(), b"leasehold:{jobs/nightly}:wake");
        assert_eq!(hash_tag(k.fence()), Some(&b"jobs/nightly"[..]));
    }

    #[test]
    fn tagged_names_keep_their_tag() {
        let k = LeaseKeys::new(b"{user:7}:profile");
        assert_eq!(k.fence(), b"{user:7}:profile:leasehold:fence");
        assert_eq!(hash_tag(k.fence()), hash_tag(k.name()));
        assert_eq!(hash_tag(k.wake()), Some(&b"user:7"[..]));
    }

    #[test]
    fn a_fair_semaphore_queues_where_a_fair_lease_does() {
        let sem = LeaseKeys::semaphore(b"{t}x", 3, true);
        let lease = LeaseKeys::fair(b"{t}x");
        let (Kind::Permit { fair: Some(s), .. }, Kind::Fair(l)) = (sem.kind(), lease.kind()) else {
            panic!("fair keys expected");
        };
        assert_eq!(*s.queue, *l.queue);
        assert_eq!(*s.deadlines, *l.deadlines);
        assert_eq!(*s.ticket, *l.ticket);
        assert_eq!(hash_tag(&s.queue), Some(&b"t"[..]));
        assert!(sem.is_fair() && lease.is_fair());
        assert!(!LeaseKeys::semaphore(b"x", 3, false).is_fair());
        assert!(!LeaseKeys::new(b"x").is_fair());
    }

    #[test]
    fn each_kind_proves_its_hold_by_its_own_key() {
        let hold = |k: LeaseKeys| {
            let (key, how) = k.hold();
            (String::from_utf8(key.to_vec()).unwrap(), how)
        };
        assert_eq!(hold(LeaseKeys::new(b"n")), ("n".into(), Hold::String));
        assert_eq!(hold(LeaseKeys::fair(b"n")), ("n".into(), Hold::String));
        assert_eq!(
            hold(LeaseKeys::rwlock(b"n", true)),
            ("leasehold:{n}:writer".into(), Hold::String)
        );
        assert_eq!(
            hold(LeaseKeys::rwlock(b"n", false)),
            ("leasehold:{n}:readers".into(), Hold::Member)
        );
        for fair in [false, true] {
            assert_eq!(
                hold(LeaseKeys::semaphore(b"n", 2, fair)),
                ("leasehold:{n}:permits".into(), Hold::Member)
            );
        }
    }

    #[test]
    fn empty_braces_are_no_tag() {
        assert_eq!(hash_tag(b"a{}b"), None);
        assert_eq!(hash_tag(b"a{b}c"), Some(&b"b"[..]));
        assert_eq!(hash_tag(b"}{x}"), Some(&b"x"[..]));
    }

    #[test]
    fn display_is_short_and_escaped() {
        assert_eq!(display_name(b"a\nb"), "a\\nb");
        let long = vec![b'x'; 500];
        assert!(display_name(&long).chars().count() <= 81);
    }
}
