//! Reading the status of names: one pipelined round trip per batch of
//! names, and SCAN for listing.

use redis::Value;

use super::{LIST_BATCH, LeaseStatus, NameKeys, PER_NAME, name_of_fence_key};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::lease::Lease;

/// The status of `name`; see [`Client::status`](crate::Client::status).
pub(crate) async fn status(core: &Core, name: &[u8]) -> Result<LeaseStatus> {
    Lease::check_name(name)?;
    let mut all = statuses(core, &[name.to_vec()]).await?;
    Ok(all.pop().expect("one status per name"))
}

/// The statuses of the names matching `pattern`; see
/// [`Client::list`](crate::Client::list).
pub(crate) async fn list(core: &Core, pattern: &str) -> Result<Vec<LeaseStatus>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    // Plain names: leasehold:{N}:fence. Tagged names: N:leasehold:fence.
    for (glob, plain) in [
        (format!("leasehold:{{{pattern}}}:fence"), true),
        (format!("{pattern}:leasehold:fence"), false),
        // Names with a `}` but no tag: {T}:leasehold:{N}:fence.
        (format!("{{????}}:leasehold:{{{pattern}}}:fence"), false),
    ] {
        for key in core.backend.scan(&glob).await? {
            if let Some(name) = name_of_fence_key(&key, plain) {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::with_capacity(names.len());
    for batch in names.chunks(LIST_BATCH) {
        out.extend(statuses(core, batch).await?);
    }
    Ok(out)
}

/// The statuses of `names` (already checked), in one pipelined round
/// trip: a fixed run of [`PER_NAME`] read-only commands per name.
async fn statuses(core: &Core, names: &[Vec<u8>]) -> Result<Vec<LeaseStatus>> {
    let keys: Vec<NameKeys> = names.iter().map(|n| NameKeys::new(n)).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        k.queue_reads(&mut pipe);
    }
    let replies: Vec<Value> = pipe
        .query_async(&mut core.backend.conn())
        .await
        .map_err(|e| Error::redis("reading the status", core.addr(), e))?;
    let parsed = if replies.len() == PER_NAME * keys.len() {
        keys.iter()
            .zip(replies.chunks(PER_NAME))
            .map(|(k, r)| k.parse(r))
            .collect()
    } else {
        Err(redis::ParsingError::from(format!(
            "{} replies to {} commands",
            replies.len(),
            PER_NAME * keys.len()
        )))
    };
    parsed.map_err(|e| Error::redis("reading the status", core.addr(), e.into()))
}
