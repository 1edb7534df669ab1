//! Reading the status of names: one pipelined round trip per batch of
//! names, and SCAN for listing.

use super::{LIST_BATCH, LeaseStatus, NameKeys, PER_NAME, name_of_fence_key};
use crate::backend::Pubsub;
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
/// trip per node: a fixed run of [`PER_NAME`] read-only commands per name,
/// all in the name's slot.
async fn statuses(core: &Core, names: &[Vec<u8>]) -> Result<Vec<LeaseStatus>> {
    let keys: Vec<NameKeys> = names.iter().map(|n| NameKeys::new(n)).collect();
    let sharded = core.backend.pubsub() == Pubsub::Sharded;
    let pipes: Vec<redis::Pipeline> = keys
        .iter()
        .map(|k| {
            let mut pipe = redis::pipe();
            k.queue_reads(&mut pipe, sharded);
            pipe
        })
        .collect();
    if let Some(masters) = core.backend.masters() {
        let each = core
            .backend
            .pipelines_per_master(&pipes, "reading the status")
            .await
            .expect("Redlock answers per master");
        return Ok(keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let views: Vec<LeaseStatus> = each
                    .iter()
                    .filter_map(|m| m.as_ref())
                    .filter_map(|replies| {
                        let r = replies.get(i)?;
                        (r.len() == PER_NAME).then(|| k.parse(r).ok()).flatten()
                    })
                    .collect();
                k.merge(views, masters)
            })
            .collect());
    }
    let replies = core.backend.pipelines(pipes, "reading the status").await?;
    keys.iter()
        .zip(replies)
        .map(|(k, r)| {
            if r.len() == PER_NAME {
                k.parse(&r)
            } else {
                Err(redis::ParsingError::from(format!(
                    "{} replies to {PER_NAME} commands",
                    r.len()
                )))
            }
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::redis("reading the status", core.addr(), e.into()))
}
