//! A paused holder: a holder freezes past its TTL, another takes the lease
//! and writes, the frozen one wakes and writes too. The fenced store and the
//! lease-scoped script refuse its write; a store without fencing takes it.

use leasehold::{Client, FenceGate, LeaseScript};

use crate::run::Options;
use crate::{Error, Event, Scenario};

/// Tells the story step by step, one event per step.
pub(crate) async fn run(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::PausedHolder,
        about: "a holder freezes past its TTL; fencing stops its late write".into(),
    });
    let tag = leasehold::Token::random();
    let name = format!("leasehold-demo:report:{}", tag.prefix());
    let data = format!("{{{name}}}:body"); // same slot as the lease, for the script
    let unfenced = format!("leasehold-demo:unfenced:{}", tag.prefix());
    let mut conn = opts.target.conn().await?;
    let store = FenceGate::new();
    let write = LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
    let lease = client.lease(&name).ttl(opts.sizes.pause_ttl);

    // A takes the lease, then freezes (a GC pause: not even its renewal runs).
    let a = lease.clone().auto_renew(false).acquire().await?;
    sink(&Event::Paused {
        step: "frozen",
        text: format!(
            "holder A takes `{name}` with fence {} and freezes for longer than its {:?} ttl",
            a.fence(),
            opts.sizes.pause_ttl
        ),
        refused: None,
    });
    a.lost().await;

    // B takes over and writes, everywhere.
    let b = lease.acquire().await?;
    store
        .admit(b.fence())
        .map_err(|e| Error(format!("B's fenced write was refused: {e}")))?;
    let () = write.key(&data).arg("from B").invoke(&b).await?;
    let () = redis::cmd("SET")
        .arg(&unfenced)
        .arg("from B")
        .query_async(&mut conn)
        .await?;
    sink(&Event::Paused {
        step: "taken",
        text: format!(
            "holder B takes the lease with fence {} and writes the report",
            b.fence()
        ),
        refused: None,
    });

    // A wakes up, unaware, and writes.
    let fenced = store.admit(a.fence());
    sink(&Event::Paused {
        step: "fenced_store",
        text: match &fenced {
            Err(stale) => format!("A's write to the fenced store: {stale}"),
            Ok(()) => format!(
                "A's write to the fenced store went through with fence {}",
                a.fence()
            ),
        },
        refused: Some(fenced.is_err()),
    });
    let scripted = write
        .key(&data)
        .arg("from A (stale)")
        .invoke::<()>(&a)
        .await;
    let body: String = redis::cmd("GET").arg(&data).query_async(&mut conn).await?;
    sink(&Event::Paused {
        step: "lease_script",
        text: match &scripted {
            Err(e) if e.is_lost() => {
                format!(
                    "A's lease-scoped write: the lease is not A's any more; nothing written (report = {body:?})"
                )
            }
            Err(e) => format!("A's lease-scoped write failed: {e}"),
            Ok(()) => format!("A's lease-scoped write went through (report = {body:?})"),
        },
        refused: Some(matches!(&scripted, Err(e) if e.is_lost())),
    });
    // Without fencing, nothing stops A.
    let () = redis::cmd("SET")
        .arg(&unfenced)
        .arg("from A (stale)")
        .query_async(&mut conn)
        .await?;
    let now: String = redis::cmd("GET")
        .arg(&unfenced)
        .query_async(&mut conn)
        .await?;
    sink(&Event::Paused {
        step: "no_fencing",
        text: format!("without fencing, A's late write lands and B's is lost: report = {now:?}"),
        refused: Some(false),
    });
    b.release().await?;
    drop(a);
    // One key per DEL: on a cluster the two are in different slots.
    for key in [&data, &unfenced] {
        let () = redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
    }
    Ok(())
}
