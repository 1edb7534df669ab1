//! Ending a lease whose holder is gone, by an operator
//! ([`Client::force_release`](crate::Client::force_release)).
//!
//! The hold that was seen is ended, never a later one: the whole token is
//! read, then released by that token as its holder would (so waiters are
//! woken, and a fair lease goes to its queue's head). If the lease changed
//! hands in between, nothing is forced. Then the fencing counter is moved
//! on, as a grant would, and the reason is published on [`FORCED_CHANNEL`]
//! and logged.

use std::sync::Arc;

use super::{LeaseKind, LeaseStatus, read};
use crate::backend::Backend;
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::keys::LeaseKeys;
use crate::scripts;
use crate::token::Token;

/// The channel on which forced releases are announced, one JSON object
/// per release: `{"name": ..., "holder": "<8 hex digits>", "fence": N,
/// "reason": ...}` (`fence` is the counter after the bump). Subscribe to
/// it to log or alert: `redis-cli SUBSCRIBE leasehold:forced`.
pub const FORCED_CHANNEL: &str = "leasehold:forced";

/// What [`Client::force_release`](crate::Client::force_release) did.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// let forced = client.force_release("deploy", "host web-3 died").await?;
/// match &forced.holder {
///     Some(h) => println!("ended {h}…'s lease; fence now {}", forced.fence),
///     None => println!("nobody held it"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForcedRelease {
    /// The prefix of the token whose hold was ended; `None` when the name
    /// was free (or changed hands while it was read: nothing was forced).
    pub holder: Option<String>,
    /// The fencing counter after the bump when a hold was ended, else the
    /// counter as it was. Every fence granted before is below it.
    pub fence: u64,
}

pub(crate) async fn force_release(
    core: &Arc<Core>,
    name: &[u8],
    reason: &str,
) -> Result<ForcedRelease> {
    if let Backend::Redlock(_) = core.backend {
        return Err(Error::unsupported(
            "a forced release",
            "Redlock",
            "the holder's token differs in no way between masters, but each master would have to be forced alone; wait for the TTL, or release with the token",
        ));
    }
    if reason.trim().is_empty() {
        return Err(Error::invalid(
            "reason",
            "say why the lease is forced (it is published and logged), e.g. \"host web-3 is dead\"",
        ));
    }
    let status: LeaseStatus = read::status(core, name).await?;
    match status.kind {
        LeaseKind::Lease => {}
        LeaseKind::Semaphore { .. } | LeaseKind::RwLock { .. } => {
            return Err(Error::invalid(
                "name",
                format!(
                    "`{}` is a {}: --force ends plain and fair leases; its holders end when their TTL runs out",
                    status.display,
                    if matches!(status.kind, LeaseKind::Semaphore { .. }) {
                        "semaphore"
                    } else {
                        "read-write lock"
                    }
                ),
            ));
        }
    }
    let keys = Arc::new(if status.fair_waiters.is_some() {
        LeaseKeys::fair(name)
    } else {
        LeaseKeys::new(name)
    });
    let mut conn = core.backend.conn()?;
    let doing = "reading the holder's token";
    let held: Option<String> = redis::cmd("GET")
        .arg(name)
        .query_async(&mut conn)
        .await
        .map_err(|e| Error::redis(doing, core.addr(), e))?;
    let Some(held) = held else {
        return Ok(ForcedRelease {
            holder: None,
            fence: status.fence,
        });
    };
    let token = Token::parse(&held).map_err(|_| {
        Error::invalid(
            "name",
            format!(
                "`{}` is held by a client that is not leasehold (its value is not a leasehold token); delete the key by hand if you are sure its holder is gone",
                status.display
            ),
        )
    })?;
    if !core.release(&keys, &token).await? {
        // Expired or released since it was read: the next holder's lease
        // is left alone.
        return Ok(ForcedRelease {
            holder: None,
            fence: status.fence,
        });
    }
    let fence = scripts::bump_fence(&mut conn, &keys)
        .await
        .map_err(|e| Error::redis("moving the fence on", core.addr(), e))?;
    let holder = token.to_string().trim_end_matches('…').to_owned();
    tracing::warn!(
        lease = status.display,
        holder = %token,
        fence,
        reason,
        "leasehold: lease released by force"
    );
    let message = format!(
        "{{\"name\":{},\"holder\":{},\"fence\":{fence},\"reason\":{}}}",
        json_string(&String::from_utf8_lossy(name)),
        json_string(&holder),
        json_string(reason)
    );
    let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(FORCED_CHANNEL)
        .arg(message)
        .query_async(&mut conn)
        .await;
    if let Err(e) = published {
        // Done and logged: the announcement is a courtesy.
        tracing::warn!(lease = status.display, error = %e, "leasehold: announcing a forced release failed");
    }
    Ok(ForcedRelease {
        holder: Some(holder),
        fence,
    })
}

/// `s` as a JSON string, quoted and escaped.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }
}
