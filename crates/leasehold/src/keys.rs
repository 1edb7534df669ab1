//! Where a lease lives in Redis (DESIGN §2).

use std::sync::{Arc, OnceLock};

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
    family: Family,
}

impl LeaseKeys {
    /// Builds the keys of `name`, which must already be checked. Every key
    /// (and the wake channel) is in the hash slot of `name`: see [`aux`].
    pub(crate) fn new(name: &[u8]) -> LeaseKeys {
        LeaseKeys {
            name: name.into(),
            fence: aux(name, "fence").into(),
            wake: aux(name, "wake").into(),
            display: display_name(name),
            family: Family::Lease,
        }
    }

    /// The keys of a semaphore named `name` with `limit` permits; `fair`
    /// adds the waiters' queue in Redis (the same keys as a fair lease's:
    /// a name is either a lease or a semaphore, not both).
    pub(crate) fn semaphore(name: &[u8], limit: u32, fair: bool) -> LeaseKeys {
        LeaseKeys {
            family: Family::Permit {
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
            family: if write {
                Family::Write(rw)
            } else {
                Family::Read(rw)
            },
            ..LeaseKeys::new(name)
        }
    }

    /// The keys of a fair (FIFO) lease named `name`: the lease itself as for
    /// a plain lease (so fair and plain holders exclude each other), plus
    /// the waiters' queue in Redis.
    pub(crate) fn fair(name: &[u8]) -> LeaseKeys {
        LeaseKeys {
            family: Family::Fair(FairQueue::new(name)),
            ..LeaseKeys::new(name)
        }
    }

    /// Whether a release wakes every local waiter, not only the first.
    pub(crate) fn wakes_all(&self) -> bool {
        matches!(self.family, Family::Read(_) | Family::Write(_))
    }

    /// Whether waiters stand in a queue in Redis (a fair lease or a fair
    /// semaphore): each waiter then has an id, and a release names the
    /// waiter(s) whose turn it is instead of waking a local one.
    pub(crate) fn is_fair(&self) -> bool {
        matches!(
            self.family,
            Family::Fair(_) | Family::Permit { fair: Some(_), .. }
        )
    }

    /// The key whose content proves that a holder still holds, and how:
    /// a string holding its token (a lease, a fair lease, a writer) or a
    /// sorted set with its token as a live member (a permit, a reader).
    pub(crate) fn hold(&self) -> (&[u8], Hold) {
        match &self.family {
            Family::Lease | Family::Fair(_) => (&self.name, Hold::String),
            Family::Write(rw) => (&rw.writer, Hold::String),
            Family::Permit { permits, .. } => (permits, Hold::Member),
            Family::Read(rw) => (&rw.readers, Hold::Member),
        }
    }

    pub(crate) fn family(&self) -> &Family {
        &self.family
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

    /// Every key this kind keeps beside the name: the fence and the
    /// family's own (a queue, permits, readers...). Not the wake channel.
    pub(crate) fn companions(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = vec![self.fence()];
        match self.family() {
            Family::Lease => {}
            Family::Fair(q) => {
                out.extend([&q.queue, &q.deadlines, &q.ticket, &q.claims].map(|k| &k[..]))
            }
            Family::Permit {
                permits,
                limit_key,
                fences,
                fair,
                ..
            } => {
                out.extend([permits, limit_key, fences].map(|k| &k[..]));
                if let Some(q) = fair {
                    out.extend([&q.queue, &q.deadlines, &q.ticket].map(|k| &k[..]));
                }
            }
            Family::Read(rw) | Family::Write(rw) => {
                out.extend([&rw.readers, &rw.writer, &rw.intent, &rw.fences].map(|k| &k[..]))
            }
        }
        out
    }

    /// The name as people read it (lossy UTF-8, escaped, shortened).
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// The kind of primitive, as traces and metrics name it: `lease`,
    /// `fair`, `semaphore`, `rwlock-read`, `rwlock-write`.
    pub(crate) fn kind(&self) -> &'static str {
        match self.family {
            Family::Lease => "lease",
            Family::Fair(_) => "fair",
            Family::Permit { .. } => "semaphore",
            Family::Read(_) => "rwlock-read",
            Family::Write(_) => "rwlock-write",
        }
    }
}

/// The companion key `suffix` of `name`: in the hash slot of `name`, and
/// never the companion of another name. Three forms, by the name:
///
/// - `N` has a hash tag: `N:leasehold:suffix`, whose first tag is `N`'s.
/// - `N` has no `}` (nor is empty): `leasehold:{N}:suffix`. The braces make
///   all of `N` the tag, and `N` without a tag hashes whole: same slot.
/// - Otherwise (`a{}b`, `x}y`, `}{`, ...) `N` hashes whole too, but braced it
///   would not: its own `}` would end the tag early. Its keys are
///   `{T}:leasehold:{N}:suffix`, where the tag `T` is [`slot_tag`] of `N`'s
///   slot. This form does not begin with `leasehold:{` nor end with
///   `:leasehold:suffix`, so no name of the other two forms builds it; `T`
///   has a fixed length, so two names never share one.
///
/// The first two are the forms of every release so far; names of the third
/// had keys in another slot than the name (fine on one node, refused by a
/// cluster) and move.
fn aux(name: &[u8], suffix: &str) -> Vec<u8> {
    let suffix = suffix.as_bytes();
    if hash_tag(name).is_some() {
        [name, b":leasehold:", suffix].concat()
    } else if braces_whole(name) {
        [b"leasehold:{", name, b"}:", suffix].concat()
    } else {
        let tag = slot_tag(key_slot(name));
        [b"{", &tag[..], b"}:leasehold:{", name, b"}:", suffix].concat()
    }
}

/// Whether `{key}` has all of `key` as its hash tag: `key` is not empty and
/// has no `}` to end the tag early.
fn braces_whole(key: &[u8]) -> bool {
    !key.is_empty() && !key.contains(&b'}')
}

/// The name of the lease under which [`Client::single_flight`] rebuilds
/// the cache entry `cache_key`. It hashes like `cache_key`, so the lease and
/// the entry share a slot: `leasehold:rebuild:{K}` when the braces make all
/// of `K` the tag (the name of every release so far), else the companion
/// `rebuild` of `K` (see [`aux`]).
///
/// [`Client::single_flight`]: crate::Client::single_flight
pub(crate) fn rebuild_lease(cache_key: &[u8]) -> Vec<u8> {
    if braces_whole(cache_key) {
        [b"leasehold:rebuild:{", cache_key, b"}"].concat()
    } else {
        aux(cache_key, "rebuild")
    }
}

/// What a name's holders hold: the lease itself, or one permit of a
/// semaphore. Decides which scripts acquire, extend and release.
#[derive(Debug, Clone)]
pub(crate) enum Family {
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
    /// `leasehold:{N}:queue-claims`: hash, waiter id -> `<ttl ms>:<owner
    /// token>`, what a fair lease's release needs to give the lease to
    /// its queue's head in the release script itself (fair semaphores
    /// leave none).
    pub(crate) claims: Arc<[u8]>,
}

impl FairQueue {
    fn new(name: &[u8]) -> FairQueue {
        FairQueue {
            queue: aux(name, "queue").into(),
            deadlines: aux(name, "queue-deadlines").into(),
            ticket: aux(name, "queue-ticket").into(),
            claims: aux(name, "queue-claims").into(),
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

/// The number of hash slots of Redis Cluster.
const SLOTS: u16 = 16384;

/// The hash slot of `key` in Redis Cluster: CRC16 (XMODEM) of its hash tag,
/// or of the whole key without one, modulo 16384 (the cluster spec's
/// `HASH_SLOT`).
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// CRC16-CCITT as XMODEM computes it (polynomial 0x1021, initial 0), the
/// CRC of Redis Cluster.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// [`crc16`] one byte at a time: the CRC of each byte value alone.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The alphabet of [`slot_tag`]s, in byte order.
const TAG_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A 4-character hash tag whose slot is `slot`: the first of `0000`,
/// `0001`, ..., `zzzz` (base 36, digits then lowercase letters) in that
/// slot. This choice is part of where names keep their keys (see [`aux`]):
/// changing it moves them.
///
/// Every slot has one, at most 73 025 candidates in; the table of all
/// 16384 is built once, on the first name that needs it.
pub(crate) fn slot_tag(slot: u16) -> [u8; 4] {
    static TAGS: OnceLock<Box<[[u8; 4]]>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![[0; 4]; usize::from(SLOTS)];
        let mut found = vec![false; usize::from(SLOTS)];
        let mut left = SLOTS;
        for tag in (0..36usize.pow(4)).map(base36) {
            let slot = usize::from(crc16(&tag) % SLOTS);
            if !found[slot] {
                found[slot] = true;
                tags[slot] = tag;
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        tags.into_boxed_slice()
    });
    tags[usize::from(slot % SLOTS)]
}

/// `n` in four base-36 digits of [`TAG_ALPHABET`], most significant first.
fn base36(mut n: usize) -> [u8; 4] {
    let mut out = [0; 4];
    for d in out.iter_mut().rev() {
        *d = TAG_ALPHABET[n % 36];
        n /= 36;
    }
    out
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
    use proptest::prelude::*;
    use redis::cluster_routing::Slot;

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
        let (Family::Permit { fair: Some(s), .. }, Family::Fair(l)) =
            (sem.family(), lease.family())
        else {
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

    /// Every key that `name` has as a lease, fair lease, fair semaphore or
    /// read-write lock (all 13 companions, wake channels included).
    fn companions(name: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut add = |k: &LeaseKeys| {
            out.push(k.wake().to_vec());
            out.extend(k.companions().into_iter().map(<[u8]>::to_vec));
        };
        add(&LeaseKeys::new(name));
        add(&LeaseKeys::fair(name));
        add(&LeaseKeys::semaphore(name, 2, true));
        add(&LeaseKeys::rwlock(name, true));
        add(&LeaseKeys::rwlock(name, false));
        out.sort();
        out.dedup();
        out
    }

    /// The names that could have built `key` as their companion: every way
    /// to read it as one of the three forms of [`aux`], and the suffix
    /// (every suffix is ASCII, without a `:`).
    fn readings(key: &[u8]) -> Vec<(Vec<u8>, String)> {
        let Some(colon) = key.iter().rposition(|&b| b == b':') else {
            return Vec::new();
        };
        let (rest, suffix) = (&key[..colon], &key[colon + 1..]);
        let Ok(suffix) = String::from_utf8(suffix.to_vec()) else {
            return Vec::new();
        };
        let tagged = rest.strip_suffix(b":leasehold");
        let braced = rest
            .strip_prefix(b"leasehold:{")
            .and_then(|r| r.strip_suffix(b"}"));
        let slot_tagged = rest
            .strip_prefix(b"{")
            .and_then(|r| r.get(4..))
            .and_then(|r| r.strip_prefix(b"}:leasehold:{"))
            .and_then(|r| r.strip_suffix(b"}"));
        [tagged, braced, slot_tagged]
            .into_iter()
            .flatten()
            .map(|name| (name.to_vec(), suffix.clone()))
            .collect()
    }

    /// Redis's own examples (cluster spec) and the CRC's check value.
    #[test]
    fn slots_as_redis_computes_them() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
    }

    /// Issue 12: names with braces but no valid tag, and a tagged cache key.
    #[test]
    fn the_issues_examples_stay_in_their_slot() {
        assert_eq!(key_slot(b"a{}b"), 13694);
        assert_eq!(key_slot(b"x}y"), 8210);
        for name in [&b"a{}b"[..], b"x}y"] {
            for key in companions(name) {
                assert_eq!(key_slot(&key), key_slot(name), "{}", display_name(&key));
            }
        }
        // The form is pinned: a change would move every such name's keys.
        assert_eq!(
            LeaseKeys::new(b"a{}b").fence(),
            b"{01ez}:leasehold:{a{}b}:fence"
        );
        assert_eq!(
            &**LeaseKeys::new(b"x}y").wake(),
            b"{0090}:leasehold:{x}y}:wake"
        );

        let cache = b"{user:7}:profile";
        let lease = rebuild_lease(cache);
        assert_eq!(lease, b"{user:7}:profile:leasehold:rebuild");
        assert_eq!(key_slot(&lease), key_slot(cache));
        // Plain cache keys keep the lease name of every release so far.
        assert_eq!(
            rebuild_lease(b"cache:home"),
            b"leasehold:rebuild:{cache:home}"
        );
        for key in [&b"a{}b"[..], b"x}y", b"", b"{", b"a{b"] {
            assert_eq!(key_slot(&rebuild_lease(key)), key_slot(key));
        }
    }

    #[test]
    fn every_slot_has_a_tag_of_its_own() {
        for slot in 0..SLOTS {
            let tag = slot_tag(slot);
            assert_eq!(key_slot(&tag), slot, "{tag:?}");
            assert!(tag.iter().all(|b| TAG_ALPHABET.contains(b)));
        }
    }

    /// Names rich in the bytes that decide hash tags and our key forms.
    fn names() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => Just(b"{".to_vec()),
            3 => Just(b"}".to_vec()),
            2 => Just(b":".to_vec()),
            1 => Just(b"leasehold".to_vec()),
            1 => Just(b":leasehold:".to_vec()),
            1 => Just(b"leasehold:{".to_vec()),
            1 => Just(b"}:fence".to_vec()),
            1 => Just(b"0000".to_vec()),
            4 => prop::collection::vec(any::<u8>(), 1..4),
        ];
        prop::collection::vec(piece, 1..10).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every key of a name is in its slot (ours agrees with redis-rs's
        /// slot too), and no other name builds it.
        #[test]
        fn companions_share_the_slot_and_no_other_name(name in names()) {
            let slot = key_slot(&name);
            prop_assert_eq!(Slot::for_key(&name), Slot::new(slot).unwrap());
            let keys = companions(&name);
            prop_assert_eq!(keys.len(), 13);
            for key in &keys {
                prop_assert_eq!(key_slot(key), slot, "{}", display_name(key));
                // The readings below are complete: they find `name` itself.
                prop_assert!(readings(key).iter().any(|(n, s)| *n == name && aux(n, s) == *key));
                prop_assert_eq!(Slot::for_key(key), Slot::new(slot).unwrap());
                for (other, suffix) in readings(key) {
                    if other != name {
                        prop_assert_ne!(&aux(&other, &suffix), key, "{}", display_name(&other));
                    }
                }
            }
            let lease = rebuild_lease(&name);
            prop_assert_eq!(key_slot(&lease), slot);
            // Two cache keys never share a rebuild lease.
            for (other, _) in readings(&lease) {
                if other != name {
                    prop_assert_ne!(rebuild_lease(&other), lease.clone());
                }
            }
            if let Some(other) = lease.strip_prefix(b"leasehold:rebuild:{").and_then(|r| r.strip_suffix(b"}")) {
                prop_assert!(other == &name[..] || rebuild_lease(other) != lease);
            }
        }

        /// The pairs the proof above reads off the keys, and any two names.
        #[test]
        fn two_names_share_no_key(a in names(), b in names()) {
            prop_assume!(a != b);
            let b_keys = companions(&b);
            for key in companions(&a) {
                prop_assert!(b_keys.binary_search(&key).is_err(), "{}", display_name(&key));
            }
            prop_assert_ne!(rebuild_lease(&a), rebuild_lease(&b));
        }
    }

    /// Our slots against a cluster-enabled redis-server's `CLUSTER KEYSLOT`,
    /// for 3000 generated names, all their keys and rebuild leases.
    #[test]
    fn slots_agree_with_a_cluster_node() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        let server = testkit::RedisServer::start_with(testkit::ServerOptions {
            cluster: true,
            ..Default::default()
        })
        .expect("start a cluster-enabled redis-server");
        let mut conn = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let mut runner = TestRunner::deterministic();
        let mut checked = 0;
        for _ in 0..30 {
            let mut groups = Vec::new();
            for _ in 0..100 {
                let name = names().new_tree(&mut runner).unwrap().current();
                let mut keys = vec![name.clone(), rebuild_lease(&name)];
                keys.extend(companions(&name));
                groups.push(keys);
            }
            let mut pipe = redis::pipe();
            for key in groups.iter().flatten() {
                pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
            }
            let slots: Vec<u16> = pipe.query(&mut conn).unwrap();
            let mut slots = slots.into_iter();
            for keys in &groups {
                let name_slot = key_slot(&keys[0]);
                for key in keys {
                    let server_slot = slots.next().expect("one reply per key");
                    assert_eq!(server_slot, key_slot(key), "{}", display_name(key));
                    assert_eq!(server_slot, name_slot, "{}", display_name(key));
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3000 * 15);
    }

    #[test]
    fn display_is_short_and_escaped() {
        assert_eq!(display_name(b"a\nb"), "a\\nb");
        let long = vec![b'x'; 500];
        assert!(display_name(&long).chars().count() <= 81);
    }
}
