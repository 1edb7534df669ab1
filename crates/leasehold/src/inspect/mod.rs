//! Looking at leases from outside: who holds a name, for how long, and
//! which names exist. For `leasehold status` and `leasehold list`.
//!
//! A name can be a plain lease, a [`Semaphore`](crate::Semaphore) or a
//! [`RwLock`](crate::RwLock); [`LeaseStatus::kind`] says which, with its
//! holders. Everything about one name is read in one pipelined round trip,
//! together with the server's `TIME`, so that the expiries of permits and
//! readers (sorted-set scores in server milliseconds) are judged by the
//! server's clock, as the scripts judge them.

use std::time::Duration;

use redis::Value;

mod force;
mod read;

pub(crate) use force::force_release;
pub use force::{FORCED_CHANNEL, ForcedRelease};

pub(crate) use read::{list, status};

use crate::backend::redlock::{majority, permit_quorum};
use crate::keys::{FairQueue, Family, LeaseKeys};

/// How many names [`Client::list`] reads per round trip.
pub(super) const LIST_BATCH: usize = 64;

/// What Redis says of one lease name right now.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// let s = client.status("deploy").await?;
/// match &s.holder {
///     Some(h) => println!("held by {h}…, {:?} left, fence {}", s.remaining, s.fence),
///     None => println!("free; {} acquisitions so far", s.fence),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseStatus {
    /// The name, as bytes.
    pub name: Vec<u8>,
    /// The name as people read it (escaped, shortened).
    pub display: String,
    /// An 8-character prefix of the holder's token; `None` when free. For a
    /// semaphore or read-write lock, the holder that stays longest (the
    /// writer, else the permit or reader whose TTL runs out last): every
    /// holder is in [`kind`](LeaseStatus::kind).
    pub holder: Option<String>,
    /// The holder's remaining TTL; `None` when free, or when the key has no
    /// TTL (a foreign client set it without one). For a semaphore or
    /// read-write lock, how long until the last holder's TTL runs out: the
    /// name stays held at least that long, unless its holders release it.
    pub remaining: Option<Duration>,
    /// The fencing counter: the fence of the latest acquisition (0: never
    /// acquired through leasehold).
    pub fence: u64,
    /// Clients subscribed to the name's wake channel: one per client with
    /// tasks waiting (each client holds one subscription however many of its
    /// tasks wait). For a read-write lock, its own channel's.
    pub waiting_clients: u64,
    /// What the name is (lease, semaphore, read-write lock) and who holds it.
    pub kind: LeaseKind,
    /// Fair waiters queued in Redis whose wait has not run out, when the name
    /// has a fair queue ([`Lease::fair`](crate::Lease::fair)); `None` when it has none. Unlike
    /// [`waiting_clients`](LeaseStatus::waiting_clients), this counts every
    /// waiting task, of every client.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// if let Some(n) = client.status("printer").await?.fair_waiters {
    ///     println!("{n} jobs queued for the printer");
    /// }
    /// # Ok(()) }
    /// ```
    pub fair_waiters: Option<u64>,
    /// Over Redlock, how the independent masters see the name; `None`
    /// on one server or a cluster. There the other fields are the
    /// quorum's view: [`holder`](LeaseStatus::holder) (and each permit)
    /// only when it holds on enough masters, [`remaining`](LeaseStatus::remaining)
    /// until fewer than enough would still hold it, [`fence`](LeaseStatus::fence)
    /// the highest counter.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// if let Some(q) = client.status("nightly").await?.quorum {
    ///     for (token, n) in &q.holding {
    ///         println!("{token}… on {n} of {} masters ({} needed)", q.masters, q.needed);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub quorum: Option<Quorum>,
}

/// How the independent masters of a Redlock deployment see one name; in
/// [`LeaseStatus::quorum`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quorum {
    /// Masters in the deployment.
    pub masters: usize,
    /// Masters that answered.
    pub answered: usize,
    /// Masters that must hold a token for it to hold: a majority, more
    /// for a semaphore's permits (see
    /// [`ClientBuilder::redlock`](crate::ClientBuilder::redlock)).
    pub needed: usize,
    /// Every token (its 8-character prefix) held on any master, with how
    /// many masters hold it; most first.
    pub holding: Vec<(String, usize)>,
}

/// What a name is in Redis, with its holders; in [`LeaseStatus::kind`].
///
/// Told apart by the keys that exist: a semaphore's limit, a read-write
/// lock's readers, writer or writer's intent. A semaphore or read-write lock
/// that nobody holds or waits for leaves nothing in Redis but its fencing
/// counter (its keys expire with the last holder), so it reads as a free
/// [`Lease`](LeaseKind::Lease).
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use leasehold::LeaseKind;
///
/// match client.status("upstream/api").await?.kind {
///     LeaseKind::Semaphore { limit, permits, .. } => {
///         println!("{}/{limit} permits taken", permits.len());
///         for p in &permits {
///             println!("  {}… {:?} left", p.token, p.remaining);
///         }
///     }
///     LeaseKind::RwLock { writer: Some(w), .. } => println!("written by {}…", w.token),
///     LeaseKind::RwLock { readers, .. } => println!("{} readers", readers.len()),
///     _ => println!("a plain lease"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseKind {
    /// A plain lease (or a fair one, see [`LeaseStatus::fair_waiters`]): the
    /// key `N` holds the token; its holder is [`LeaseStatus::holder`].
    Lease,
    /// A [`Semaphore`](crate::Semaphore).
    #[non_exhaustive]
    Semaphore {
        /// K, the number of permits, as the permits in use were taken with.
        limit: u32,
        /// The live permits, soonest to expire first. Expired permits that
        /// the next acquire will reclaim are not holders and not listed.
        permits: Vec<Holder>,
    },
    /// A [`RwLock`](crate::RwLock).
    #[non_exhaustive]
    RwLock {
        /// The writer, when one holds the lock.
        writer: Option<Holder>,
        /// The live readers, soonest to expire first.
        readers: Vec<Holder>,
        /// Whether a writer waits for the readers to leave (its intent keeps
        /// new readers out).
        writer_waiting: bool,
    },
}

/// One holder of a name: whose (a token prefix) and for how long.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// for (role, h) in client.status("config/routing").await?.holders() {
///     println!("{} {}… {:?}", role.as_str(), h.token, h.remaining);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The first 8 characters of the holder's token: enough to tell holders
    /// apart, never the whole secret.
    pub token: String,
    /// How long until its TTL runs out, by the server's clock. `None` only
    /// when the key has no TTL (a foreign client set it without one);
    /// permits and readers always have one.
    pub remaining: Option<Duration>,
}

/// What a [`Holder`] holds; see [`LeaseStatus::holders`].
///
/// ```
/// assert_eq!(leasehold::Role::Permit.as_str(), "permit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The holder of a plain lease.
    Lease,
    /// One permit of a semaphore.
    Permit,
    /// A reader of a read-write lock.
    Reader,
    /// The writer of a read-write lock.
    Writer,
}

impl Role {
    /// The role in lowercase, as `leasehold status --json` prints it:
    /// `lease`, `permit`, `reader`, `writer`.
    ///
    /// ```
    /// assert_eq!(leasehold::Role::Writer.as_str(), "writer");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lease => "lease",
            Role::Permit => "permit",
            Role::Reader => "reader",
            Role::Writer => "writer",
        }
    }
}

impl LeaseStatus {
    /// True when someone holds the name: the lease, any live permit, reader
    /// or writer.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// if !client.status("deploy").await?.is_held() {
    ///     println!("nobody deploys right now");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_held(&self) -> bool {
        self.holder.is_some()
    }

    /// Every holder with its role, whatever the kind: the lease's holder,
    /// the permits, or the writer and the readers.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let s = client.status("upstream/api").await?;
    /// for (role, h) in s.holders() {
    ///     println!("{:<6} {}… {:?}", role.as_str(), h.token, h.remaining);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn holders(&self) -> Vec<(Role, Holder)> {
        match &self.kind {
            LeaseKind::Lease => self
                .holder
                .iter()
                .map(|token| {
                    let h = Holder {
                        token: token.clone(),
                        remaining: self.remaining,
                    };
                    (Role::Lease, h)
                })
                .collect(),
            LeaseKind::Semaphore { permits, .. } => {
                permits.iter().map(|h| (Role::Permit, h.clone())).collect()
            }
            LeaseKind::RwLock {
                writer, readers, ..
            } => writer
                .iter()
                .map(|h| (Role::Writer, h.clone()))
                .chain(readers.iter().map(|h| (Role::Reader, h.clone())))
                .collect(),
        }
    }
}

/// Commands queued per name by [`NameKeys::queue_reads`].
pub(super) const PER_NAME: usize = 12;

/// Every key a name may have, whatever it is.
pub(super) struct NameKeys {
    lease: LeaseKeys,
    rwwake: Vec<u8>,
    permits: Vec<u8>,
    limit: Vec<u8>,
    readers: Vec<u8>,
    writer: Vec<u8>,
    intent: Vec<u8>,
    deadlines: Vec<u8>,
}

impl NameKeys {
    pub(super) fn new(name: &[u8]) -> NameKeys {
        let sem = LeaseKeys::semaphore(name, 1, false);
        let rw = LeaseKeys::rwlock(name, false);
        let fair = LeaseKeys::fair(name);
        let (
            Family::Permit {
                permits, limit_key, ..
            },
            Family::Read(r),
            Family::Fair(FairQueue { deadlines, .. }),
        ) = (sem.family(), rw.family(), fair.family())
        else {
            unreachable!("LeaseKeys builds the kind it is asked for")
        };
        NameKeys {
            rwwake: rw.wake().to_vec(),
            permits: permits.to_vec(),
            limit: limit_key.to_vec(),
            readers: r.readers.to_vec(),
            writer: r.writer.to_vec(),
            intent: r.intent.to_vec(),
            deadlines: deadlines.to_vec(),
            lease: LeaseKeys::new(name),
        }
    }

    /// Queues the [`PER_NAME`] reads of one name; [`parse`](Self::parse)
    /// reads the replies in the same order.
    /// `sharded`: count the wake channels' listeners by sharded pub/sub
    /// (a cluster's waiters listen so).
    pub(super) fn queue_reads(&self, pipe: &mut redis::Pipeline, sharded: bool) {
        let k = &self.lease;
        pipe.cmd("TIME")
            .cmd("GET")
            .arg(k.name())
            .cmd("PTTL")
            .arg(k.name())
            .cmd("GET")
            .arg(k.fence())
            .cmd("PUBSUB")
            .arg(if sharded { "SHARDNUMSUB" } else { "NUMSUB" })
            .arg(&**k.wake())
            .arg(&self.rwwake)
            .cmd("GET")
            .arg(&self.limit)
            .cmd("ZRANGE")
            .arg(&self.permits)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("ZRANGE")
            .arg(&self.readers)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("GET")
            .arg(&self.writer)
            .cmd("PTTL")
            .arg(&self.writer)
            .cmd("EXISTS")
            .arg(&self.intent)
            // The deadlines hold the same waiters as the queue, with the
            // server time at which each stops waiting.
            .cmd("ZRANGE")
            .arg(&self.deadlines)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
    }

    /// Builds the status from the replies to [`queue_reads`](Self::queue_reads).
    pub(super) fn parse(
        &self,
        r: &[Value],
    ) -> std::result::Result<LeaseStatus, redis::ParsingError> {
        use redis::from_redis_value_ref as from;
        let (secs, micros): (u64, u64) = from(&r[0])?;
        // As the scripts compute it: whole server milliseconds.
        let now = secs * 1000 + micros / 1000;
        let lease_token: Option<Vec<u8>> = from(&r[1])?;
        let lease_pttl: i64 = from(&r[2])?;
        let fence: Option<u64> = from(&r[3])?;
        let numsub: Vec<(Value, u64)> = from(&r[4])?;
        let limit: Option<u32> = from(&r[5])?;
        let permits: Vec<(Vec<u8>, f64)> = from(&r[6])?;
        let readers: Vec<(Vec<u8>, f64)> = from(&r[7])?;
        let writer_token: Option<Vec<u8>> = from(&r[8])?;
        let writer_pttl: i64 = from(&r[9])?;
        let intent: bool = from(&r[10])?;
        let deadlines: Vec<(Vec<u8>, f64)> = from(&r[11])?;

        let subscribers = |i: usize| numsub.get(i).map_or(0, |(_, n)| *n);
        let writer = writer_token.map(|t| holder(&t, remaining_of_pttl(writer_pttl)));
        let kind = if let Some(limit) = limit {
            LeaseKind::Semaphore {
                limit,
                permits: live(&permits, now),
            }
        } else if writer.is_some() || intent || !readers.is_empty() {
            LeaseKind::RwLock {
                writer,
                readers: live(&readers, now),
                writer_waiting: intent,
            }
        } else {
            LeaseKind::Lease
        };
        let (holder, remaining, waiting_clients) = match &kind {
            LeaseKind::Lease => (
                lease_token.map(|t| prefix(&t)),
                remaining_of_pttl(lease_pttl),
                subscribers(0),
            ),
            LeaseKind::Semaphore { permits, .. } => {
                let last = permits.last();
                (
                    last.map(|h| h.token.clone()),
                    last.and_then(|h| h.remaining),
                    subscribers(0),
                )
            }
            LeaseKind::RwLock {
                writer, readers, ..
            } => {
                let h = writer.as_ref().or(readers.last());
                (
                    h.map(|h| h.token.clone()),
                    h.and_then(|h| h.remaining),
                    subscribers(1),
                )
            }
        };
        Ok(LeaseStatus {
            name: self.lease.name().to_vec(),
            display: self.lease.display().to_owned(),
            holder,
            remaining,
            fence: fence.unwrap_or(0),
            waiting_clients,
            kind,
            fair_waiters: (!deadlines.is_empty())
                .then(|| deadlines.iter().filter(|(_, at)| *at > now as f64).count() as u64),
            quorum: None,
        })
    }

    /// The quorum's view of the name from each answering master's view
    /// (Redlock, `masters` in all; see [`LeaseStatus::quorum`]).
    pub(super) fn merge(&self, views: Vec<LeaseStatus>, masters: usize) -> LeaseStatus {
        let limit = views.iter().find_map(|v| match v.kind {
            LeaseKind::Semaphore { limit, .. } => Some(limit),
            _ => None,
        });
        let needed = match limit {
            Some(k) => permit_quorum(masters, k),
            None => majority(masters),
        };
        // Each token's remaining time on each master that holds it.
        let mut held: Vec<(String, Vec<Option<Duration>>)> = Vec::new();
        for v in &views {
            for (_, h) in v.holders() {
                match held.iter_mut().find(|(t, _)| *t == h.token) {
                    Some((_, r)) => r.push(h.remaining),
                    None => held.push((h.token, vec![h.remaining])),
                }
            }
        }
        held.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        // A token holds until fewer than `needed` masters still have it:
        // the `needed`-th longest of its remaining times (None, no TTL,
        // counts as the longest).
        let holding_until = |r: &[Option<Duration>]| -> Option<Option<Duration>> {
            let mut r = r.to_vec();
            r.sort_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Less,
                (_, None) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => b.cmp(a),
            });
            r.get(needed.checked_sub(1)?).copied()
        };
        let quorum_holders: Vec<Holder> = held
            .iter()
            .filter_map(|(t, r)| {
                holding_until(r).map(|remaining| Holder {
                    token: t.clone(),
                    remaining,
                })
            })
            .collect();
        let kind = match limit {
            Some(limit) => {
                let mut permits = quorum_holders.clone();
                permits.sort_by_key(|h| h.remaining);
                LeaseKind::Semaphore { limit, permits }
            }
            None => LeaseKind::Lease,
        };
        let top = match &kind {
            LeaseKind::Semaphore { permits, .. } => permits.last().cloned(),
            _ => quorum_holders.first().cloned(),
        };
        LeaseStatus {
            name: self.lease.name().to_vec(),
            display: self.lease.display().to_owned(),
            holder: top.as_ref().map(|h| h.token.clone()),
            remaining: top.and_then(|h| h.remaining),
            fence: views.iter().map(|v| v.fence).max().unwrap_or(0),
            waiting_clients: views.iter().map(|v| v.waiting_clients).max().unwrap_or(0),
            kind,
            fair_waiters: None,
            quorum: Some(Quorum {
                masters,
                answered: views.len(),
                needed,
                holding: held.into_iter().map(|(t, r)| (t, r.len())).collect(),
            }),
        }
    }
}

/// A PTTL reply as a remaining time: `None` for -1 (no TTL) and -2 (no key).
fn remaining_of_pttl(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

/// The 8-character prefix of a token, as people may see it.
fn prefix(token: &[u8]) -> String {
    String::from_utf8_lossy(token).chars().take(8).collect()
}

fn holder(token: &[u8], remaining: Option<Duration>) -> Holder {
    Holder {
        token: prefix(token),
        remaining,
    }
}

/// The members of a sorted set of token -> expiry (server ms) still live at
/// `now`, as holders, in the set's order (soonest expiry first). A member
/// whose expiry is `now` has expired, as the scripts judge it.
fn live(members: &[(Vec<u8>, f64)], now: u64) -> Vec<Holder> {
    members
        .iter()
        .filter(|(_, at)| *at > now as f64)
        .map(|(t, at)| holder(t, Some(Duration::from_millis(*at as u64 - now))))
        .collect()
}

/// The lease name a fencing counter key belongs to, if it is one of ours.
/// `plain`: the key was found as `leasehold:{N}:fence` (a name without
/// braces); else as `N:leasehold:fence` (a name with a hash tag) or as
/// `{T}:leasehold:{N}:fence` (a name with a `}` but no tag, `T` four
/// characters that put the key in the name's slot).
pub(super) fn name_of_fence_key(key: &[u8], plain: bool) -> Option<Vec<u8>> {
    let name = if plain {
        key.strip_prefix(b"leasehold:{")?.strip_suffix(b"}:fence")?
    } else if let Some(name) = key.strip_suffix(b":leasehold:fence") {
        name
    } else {
        key.strip_prefix(b"{")?
            .get(4..)?
            .strip_prefix(b"}:leasehold:{")?
            .strip_suffix(b"}:fence")?
    };
    // Keep only keys that leasehold would have built for this name.
    (LeaseKeys::new(name).fence() == key).then(|| name.to_vec())
}

#[cfg(test)]
mod tests {
    use super::name_of_fence_key;
    use crate::keys::LeaseKeys;

    #[test]
    fn fence_keys_map_back_to_names() {
        assert_eq!(
            name_of_fence_key(b"leasehold:{jobs/a}:fence", true).as_deref(),
            Some(&b"jobs/a"[..])
        );
        assert_eq!(
            name_of_fence_key(b"{u:1}:x:leasehold:fence", false).as_deref(),
            Some(&b"{u:1}:x"[..])
        );
        // A plain-looking key whose name has a tag is not ours.
        assert_eq!(name_of_fence_key(b"leasehold:{{t}}:fence", true), None);
        assert_eq!(name_of_fence_key(b"other", true), None);
    }

    /// Names with a `}` but no hash tag (issue 12) keep their keys under a
    /// tag of their slot; the fence key maps back only with that tag.
    #[test]
    fn fence_keys_of_untagged_names_with_braces_map_back() {
        for name in [&b"a{}b"[..], b"x}y", b"}", b"}{", b"{}", b"a}b{c"] {
            let key = LeaseKeys::new(name).fence().to_vec();
            assert!(key.starts_with(b"{"), "{key:?}");
            assert_eq!(name_of_fence_key(&key, false).as_deref(), Some(name));
            assert_eq!(name_of_fence_key(&key, true), None);
            // The same name under another tag is a look-alike.
            let mut other = key.clone();
            other[1] = if other[1] == b'0' { b'1' } else { b'0' };
            assert_eq!(name_of_fence_key(&other, false), None);
        }
        // The braced form of such a name is not ours (nor anyone's).
        assert_eq!(name_of_fence_key(b"leasehold:{x}y}:fence", true), None);
        // A tag form around a name that does not need it is not ours.
        assert_eq!(
            name_of_fence_key(b"{0000}:leasehold:{plain}:fence", false),
            None
        );
        assert_eq!(
            name_of_fence_key(b"{00}:leasehold:{x}y}:fence", false),
            None
        );
    }
}
