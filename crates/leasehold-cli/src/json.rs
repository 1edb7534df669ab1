//! The `--json` schema: every record the commands print, typed.
//!
//! With `--json`, stdout carries JSON Lines: one object per line,
//! `{"type": T, "data": {...}}`, where `T` names the record ([`Record`]'s
//! variants, in snake case) and `data` holds its fields. Messages for
//! people stay on stderr. Fields are added over time, never renamed or
//! removed: a script should ignore fields it does not know.
//!
//! | `type` | printed by | `data` |
//! |---|---|---|
//! | `acquired` | `acquire` | [`Acquired`] |
//! | `extended` | `extend` | [`Extended`] |
//! | `released` | `release` | [`Released`] |
//! | `lease` | `status`, `list` (one per name) | [`Lease`] |
//! | `run` | `run`, `sem run` (last, after the command's own output) | [`Run`] |
//! | `top` | `top --json` (one per name) | [`Top`] |
//!
//! `demo` and `bench` print rows of their own, defined by the
//! leasehold-demo and leasehold-bench crates (see their `--help`).
//!
//! Conventions: durations are whole milliseconds, in fields ending in
//! `_ms`; `null` stands for "none" where a field's doc says so; a field
//! that only some kinds of name have is absent from the others.
//!
//! # Names
//!
//! Every record carries the name whole, never shortened or escaped (the
//! text output does both): `name` is a JSON string. A name is bytes; when
//! they are not UTF-8, `name` has each invalid sequence replaced by U+FFFD
//! (so it is not the name). `name_hex` gives the exact bytes as lower-case
//! hex digits, two per byte, whenever `name` could not give the name back
//! on a command line: when its bytes are not UTF-8, or hold a NUL byte (no
//! argument can). To pass back any name a record gave:
//!
//! ```sh
//! leasehold release --name-hex "$(jq -r '.data.name_hex' <<<"$rec")" "$token"  # if name_hex is present
//! leasehold release "$(jq -r '.data.name' <<<"$rec")" "$token"                 # otherwise
//! ```

use std::borrow::Cow;
use std::time::Duration;

use leasehold::{LeaseKind, LeaseStatus};
use serde::Serialize;

use crate::output;

/// One line of `--json` output: `{"type": ..., "data": {...}}`.
#[derive(Serialize, Debug)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Record<'a> {
    /// `acquire` took the lease.
    Acquired(Acquired<'a>),
    /// `extend` reset the lease's TTL.
    Extended(Extended<'a>),
    /// `release` gave the lease back.
    Released(Released<'a>),
    /// A name as `status` and `list` see it.
    Lease(Lease<'a>),
    /// How `run` or `sem run` ended.
    Run(Run<'a>),
    /// A name as `top --json` sees it.
    Top(Top<'a>),
    /// One check of `doctor`.
    Check(Check<'a>),
    /// `doctor`'s summary, last.
    Doctor(Doctor),
}

/// `check`: one finding of `doctor`.
#[derive(Serialize, Debug)]
pub struct Check<'a> {
    /// What was checked: `version`, `role`, `persistence`, `eviction`,
    /// `cluster`, `acl`, `clock`.
    pub check: &'a str,
    /// The server (`host:port`), or the whole deployment.
    pub server: &'a str,
    /// `ok`, `warn` or `fail`.
    pub verdict: &'static str,
    /// What was found, one line.
    pub found: &'a str,
    /// What to do, one line; `null` when ok.
    pub fix: Option<&'a str>,
}

impl<'a> Check<'a> {
    /// The record of one check.
    pub fn new(c: &'a leasehold::Check) -> Self {
        Check {
            check: c.check,
            server: &c.server,
            verdict: c.verdict.as_str(),
            found: &c.found,
            fix: c.fix.as_deref(),
        }
    }
}

/// `doctor`: how many checks had each verdict, and the exit code.
#[derive(Serialize, Debug)]
pub struct Doctor {
    /// Checks passed.
    pub ok: usize,
    /// Warnings: leasehold works, with a risk or something not checked.
    pub warn: usize,
    /// Failed checks.
    pub fail: usize,
    /// What `doctor` exits with: 0 unless a check failed (1).
    pub exit_code: u8,
}

impl Record<'_> {
    /// Prints the record on one line of stdout.
    pub fn print(&self) {
        output::line(&serde_json::to_string(self).expect("a record always serializes"));
    }
}

/// A name, whole: `name`, plus `name_hex` when `name` cannot be passed back
/// (see [Names](self#names)). Flattened into each record.
#[derive(Serialize, Debug)]
pub struct Name<'a> {
    /// The name as a string: exactly its bytes when they are UTF-8, else
    /// with each invalid sequence as U+FFFD.
    pub name: Cow<'a, str>,
    /// The exact bytes, in lower-case hex (two digits per byte); present
    /// only when they are not UTF-8 or hold a NUL byte. `--name-hex` takes
    /// it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
}

impl<'a> Name<'a> {
    /// The JSON form of the name `bytes`.
    pub fn of(bytes: &'a [u8]) -> Self {
        let whole = std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0);
        Name {
            name: String::from_utf8_lossy(bytes),
            name_hex: (!whole).then(|| crate::name::to_hex(bytes)),
        }
    }
}

/// Whole milliseconds, rounded down.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `acquired`: the lease is held, by nobody renewing it.
#[derive(Serialize, Debug)]
pub struct Acquired<'a> {
    /// The lease's name.
    #[serde(flatten)]
    pub name: Name<'a>,
    /// The whole token (32 hex digits): the secret `extend` and `release`
    /// take.
    pub token: &'a str,
    /// The fencing token of this acquisition.
    pub fence: u64,
    /// How long the lease lives unless extended, in milliseconds.
    pub ttl_ms: u64,
}

impl<'a> Acquired<'a> {
    /// The record of a lease acquired and let go of by this process.
    pub fn new(name: &'a [u8], held: &'a leasehold::Detached) -> Self {
        Acquired {
            name: Name::of(name),
            token: held.token.as_str(),
            fence: held.fence,
            ttl_ms: ms(held.ttl),
        }
    }
}

/// `extended`: the token still held the lease, whose TTL now starts over.
#[derive(Serialize, Debug)]
pub struct Extended<'a> {
    /// The lease's name.
    #[serde(flatten)]
    pub name: Name<'a>,
    /// The new TTL, from now, in milliseconds.
    pub ttl_ms: u64,
}

impl<'a> Extended<'a> {
    /// The record of `name` extended to `ttl`.
    pub fn new(name: &'a [u8], ttl: Duration) -> Self {
        Extended {
            name: Name::of(name),
            ttl_ms: ms(ttl),
        }
    }
}

/// `released`: the token held the lease, which is free now.
///
/// With `--force`, also `forced: true`, `holder` (the prefix of the token
/// whose hold was ended), `fence` (the fencing counter after the bump)
/// and `reason`.
#[derive(Serialize, Debug)]
pub struct Released<'a> {
    /// The lease's name.
    #[serde(flatten)]
    pub name: Name<'a>,
    /// `release --force` only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub forced: Option<Forced<'a>>,
}

/// What `release --force` ended.
#[derive(Serialize, Debug)]
pub struct Forced<'a> {
    /// Always true.
    pub forced: bool,
    /// Prefix of the token whose hold was ended.
    pub holder: &'a str,
    /// The fencing counter now.
    pub fence: u64,
    /// Why, as given.
    pub reason: &'a str,
}

impl<'a> Released<'a> {
    /// The record of `name` released.
    pub fn new(name: &'a [u8]) -> Self {
        Released {
            name: Name::of(name),
            forced: None,
        }
    }

    /// The record of `name`'s hold by `holder` ended by force.
    pub fn forced(name: &'a [u8], holder: &'a str, fence: u64, reason: &'a str) -> Self {
        Released {
            name: Name::of(name),
            forced: Some(Forced {
                forced: true,
                holder,
                fence,
                reason,
            }),
        }
    }
}

/// `lease`: what a name is in Redis and who holds it.
#[derive(Serialize, Debug)]
pub struct Lease<'a> {
    /// The name.
    #[serde(flatten)]
    pub name: Name<'a>,
    /// `lease`, `fair` (a lease with fair waiters queued), `semaphore`,
    /// `rwlock`; `unknown` for a kind this leasehold does not know. A
    /// semaphore or read-write lock nobody holds shows as a free `lease`.
    pub kind: &'static str,
    /// Whether anyone holds it.
    pub held: bool,
    /// The first 8 hex digits of the holder's token, never the whole
    /// token; `null` when free. For a semaphore or read-write lock, the
    /// holder that stays longest (every holder is in `holders`).
    pub holder: Option<&'a str>,
    /// The holder's TTL left, in milliseconds; `null` when free, or when
    /// the key has no TTL (set by a foreign client). For a semaphore or
    /// read-write lock, until the last holder's TTL runs out.
    pub remaining_ms: Option<u64>,
    /// The fencing counter: the fence of the latest acquisition (0: never
    /// acquired through leasehold).
    pub fence: u64,
    /// Clients waiting on the name's wake channel (one per client, however
    /// many of its tasks wait).
    pub waiting_clients: u64,
    /// Every holder: a lease's one, a semaphore's permits, a read-write
    /// lock's writer or readers; empty when free.
    pub holders: Vec<Holder>,
    /// A semaphore's limit: how many may hold a permit at once. Absent for
    /// other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A read-write lock's: whether a writer waits (new readers then wait
    /// behind it). Absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_waiting: Option<bool>,
    /// Fair waiters queued, of every client. Absent when the name has no
    /// fair queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// Over Redlock: how the independent masters see the name. Absent on
    /// one server or a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masters: Option<Masters>,
}

/// [`Lease::masters`]: the Redlock masters' view of a name.
#[derive(Serialize, Debug)]
pub struct Masters {
    /// Masters in the deployment.
    pub total: usize,
    /// Masters that answered.
    pub answered: usize,
    /// Masters that must hold a token for it to hold.
    pub needed: usize,
    /// Every token (8 hex digits) held on any master, with how many hold it; most first.
    pub holding: Vec<MasterHolding>,
}

/// One token in [`Masters::holding`].
#[derive(Serialize, Debug)]
pub struct MasterHolding {
    /// The first 8 hex digits of its token.
    pub token: String,
    /// How many masters hold it.
    pub masters: usize,
}

/// One holder in [`Lease::holders`].
#[derive(Serialize, Debug)]
pub struct Holder {
    /// The first 8 hex digits of its token.
    pub token: String,
    /// Its TTL left, in milliseconds; `null` when its key has no TTL (set
    /// by a foreign client; permits and readers always have one).
    pub remaining_ms: Option<u64>,
    /// `lease`, `permit`, `reader` or `writer`.
    pub role: &'static str,
}

impl<'a> Lease<'a> {
    /// The record of one status.
    pub fn new(s: &'a LeaseStatus) -> Self {
        let holders = s
            .holders()
            .into_iter()
            .map(|(role, h)| Holder {
                token: h.token,
                remaining_ms: h.remaining.map(ms),
                role: role.as_str(),
            })
            .collect();
        let (limit, writer_waiting) = match &s.kind {
            LeaseKind::Semaphore { limit, .. } => (Some(*limit), None),
            LeaseKind::RwLock { writer_waiting, .. } => (None, Some(*writer_waiting)),
            _ => (None, None),
        };
        Lease {
            name: Name::of(&s.name),
            kind: kind(s),
            held: s.is_held(),
            holder: s.holder.as_deref(),
            remaining_ms: s.remaining.map(ms),
            fence: s.fence,
            waiting_clients: s.waiting_clients,
            holders,
            limit,
            writer_waiting,
            queued: s.fair_waiters,
            masters: s.quorum.as_ref().map(|q| Masters {
                total: q.masters,
                answered: q.answered,
                needed: q.needed,
                holding: q
                    .holding
                    .iter()
                    .map(|(token, masters)| MasterHolding {
                        token: token.clone(),
                        masters: *masters,
                    })
                    .collect(),
            }),
        }
    }
}

/// What the name is, as `kind` and the text's KIND column say it. A fair
/// lease is known as such only while waiters are queued.
pub fn kind(s: &LeaseStatus) -> &'static str {
    match &s.kind {
        LeaseKind::Lease if s.fair_waiters.is_some() => "fair",
        LeaseKind::Lease => "lease",
        LeaseKind::Semaphore { .. } => "semaphore",
        LeaseKind::RwLock { .. } => "rwlock",
        _ => "unknown",
    }
}

/// `run`: how `run` or `sem run` ended, once the lease is given back.
#[derive(Serialize, Debug)]
pub struct Run<'a> {
    /// The lease's (or semaphore's) name.
    #[serde(flatten)]
    pub name: Name<'a>,
    /// The fencing token the command ran under (`LEASEHOLD_FENCE`).
    pub fence: u64,
    /// What leasehold exits with: the command's status, or 4 when the
    /// lease was lost.
    pub exit_code: u8,
    /// What the command exited with (128 + N if signal N killed it);
    /// `null` if its status could not be learnt.
    pub command_exit_code: Option<u8>,
    /// Whether the lease was lost while the command ran (the command was
    /// then stopped, or its work may have overlapped another holder's).
    pub lost: bool,
}

/// `top`: a name as `lease` shows it, with the new holders that came
/// between two reads `over_ms` apart (`top --json` reads twice, one
/// `--interval` apart, and prints the second read).
#[derive(Serialize, Debug)]
pub struct Top<'a> {
    /// Every field of [`Lease`], flattened.
    #[serde(flatten)]
    pub lease: Lease<'a>,
    /// Holders (tokens) at the second read that did not hold the name at
    /// the first: a new lease holder, a new permit, reader or writer.
    pub new_holders: u64,
    /// The time between the two reads, in milliseconds.
    pub over_ms: u64,
    /// `new_holders` per second of `over_ms`: a lower bound of the
    /// acquisitions per second, since a holder that came and went between
    /// the reads is not seen (the fence cannot count acquisitions: it is
    /// floored at the server's clock, so it jumps).
    pub acquisitions_per_s: f64,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{Extended, Name, Record, Released, Run};

    fn value(r: &Record<'_>) -> Value {
        serde_json::to_value(r).unwrap()
    }

    #[test]
    fn records_keep_their_wire_names() {
        let run = Record::Run(Run {
            name: Name::of(b"job"),
            fence: 7,
            exit_code: 4,
            command_exit_code: None,
            lost: true,
        });
        assert_eq!(
            value(&run),
            json!({"type": "run", "data": {"name": "job", "fence": 7, "exit_code": 4,
                   "command_exit_code": null, "lost": true}})
        );
        let ext = Record::Extended(Extended::new(b"job", std::time::Duration::from_secs(2)));
        assert_eq!(
            value(&ext),
            json!({"type": "extended", "data": {"name": "job", "ttl_ms": 2000}})
        );
    }

    #[test]
    fn name_hex_comes_when_name_cannot_give_the_name_back() {
        let rel = |n: &[u8]| value(&Record::Released(Released::new(n)))["data"].clone();
        assert_eq!(rel("é\n\"\\".as_bytes()), json!({"name": "é\n\"\\"}));
        assert_eq!(
            rel(b"a\xffb"),
            json!({"name": "a\u{fffd}b", "name_hex": "61ff62"})
        );
        assert_eq!(rel(b"a\0"), json!({"name": "a\0", "name_hex": "6100"}));
    }
}
