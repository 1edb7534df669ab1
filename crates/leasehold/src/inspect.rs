//! Looking at leases from outside: who holds a name, for how long, and
//! which names exist. For `leasehold status` and `leasehold list`.

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::LeaseKeys;
use crate::lease::Lease;

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
    /// An 8-character prefix of the holder's token; `None` when free.
    pub holder: Option<String>,
    /// The holder's remaining TTL; `None` when free, or when the key has no
    /// TTL (a foreign client set it without one).
    pub remaining: Option<Duration>,
    /// The fencing counter: the fence of the latest acquisition (0: never
    /// acquired through leasehold).
    pub fence: u64,
    /// Clients subscribed to the name's wake channel: one per client with
    /// tasks waiting (each client holds one subscription however many of its
    /// tasks wait).
    pub waiting_clients: u64,
}

impl LeaseStatus {
    /// True when someone holds the lease.
    pub fn is_held(&self) -> bool {
        self.holder.is_some()
    }
}

impl Client {
    /// The status of the lease `name`, read in one round trip.
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future changes nothing.
    pub async fn status(&self, name: impl AsRef<[u8]>) -> Result<LeaseStatus> {
        let name = name.as_ref();
        Lease::check_name(name)?;
        let keys = LeaseKeys::new(name);
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(keys.name())
            .cmd("PTTL")
            .arg(keys.name())
            .cmd("GET")
            .arg(keys.fence())
            .cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&**keys.wake());
        let (holder, pttl, fence, numsub): (
            Option<Vec<u8>>,
            i64,
            Option<u64>,
            (redis::Value, u64),
        ) = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| Error::redis("reading the status", self.addr(), e))?;
        Ok(LeaseStatus {
            name: name.to_vec(),
            display: keys.display().to_owned(),
            holder: holder.map(|h| String::from_utf8_lossy(&h).chars().take(8).collect()),
            remaining: (pttl >= 0).then(|| Duration::from_millis(pttl as u64)),
            fence: fence.unwrap_or(0),
            waiting_clients: numsub.1,
        })
    }

    /// The statuses of every lease name that matches the glob `pattern`
    /// (Redis `MATCH` syntax: `*`, `?`, `[abc]`; `*` for all), sorted by name.
    ///
    /// A name is known by its fencing counter, which leasehold creates on the
    /// first acquisition and never deletes; names only ever locked by other
    /// clients (redis-py, redsync) are not listed. Walks the keyspace with
    /// SCAN, never KEYS, so a large database is not blocked.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// for s in client.list("jobs/*").await? {
    ///     println!("{} {}", s.display, if s.is_held() { "held" } else { "free" });
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future changes nothing.
    pub async fn list(&self, pattern: &str) -> Result<Vec<LeaseStatus>> {
        let mut conn = self.conn();
        let mut names: Vec<Vec<u8>> = Vec::new();
        // Plain names: leasehold:{N}:fence. Tagged names: N:leasehold:fence.
        for (glob, plain) in [
            (format!("leasehold:{{{pattern}}}:fence"), true),
            (format!("{pattern}:leasehold:fence"), false),
        ] {
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&glob)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Error::redis("scanning for leases", self.addr(), e))?;
                for key in batch {
                    if let Some(name) = name_of_fence_key(&key, plain) {
                        names.push(name);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.status(&name).await?);
        }
        Ok(out)
    }
}

/// The lease name a fencing counter key belongs to, if it is one of ours.
fn name_of_fence_key(key: &[u8], plain: bool) -> Option<Vec<u8>> {
    let name = if plain {
        key.strip_prefix(b"leasehold:{")?.strip_suffix(b"}:fence")?
    } else {
        key.strip_suffix(b":leasehold:fence")?
    };
    // Keep only keys that leasehold would have built for this name.
    (LeaseKeys::new(name).fence() == key).then(|| name.to_vec())
}

#[cfg(test)]
mod tests {
    use super::name_of_fence_key;

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
}
