//! Cache stampede: readers miss a cold cache at once; one rebuilds it
//! ([`leasehold::SingleFlight`]), the rest wait for that value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use leasehold::{Client, Source};

use crate::run::Options;
use crate::{Error, Event, Scenario};

/// Sends `readers` readers at one cold key; the event counts the rebuilds.
pub(crate) async fn run(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::CacheStampede,
        about: format!(
            "{} readers miss a cold cache at once; one rebuilds, the rest wait for it",
            opts.sizes.readers
        ),
    });
    let key = format!(
        "leasehold-demo:cache:{}",
        leasehold::Token::random().prefix()
    );
    let rebuilds = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..opts.sizes.readers {
        let sf = client
            .single_flight(&key)
            .cache_ttl(Duration::from_secs(60));
        let rebuilds = rebuilds.clone();
        readers.spawn(async move {
            sf.get(async || {
                rebuilds.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await; // a slow query
                Ok::<_, leasehold::Error>("<html>home</html>".to_string())
            })
            .await
            .map(|f| f.source)
        });
    }
    let (mut from_cache, mut waited) = (0, 0);
    while let Some(r) = readers.join_next().await {
        match r.map_err(|e| Error(e.to_string()))?? {
            Source::Cache => from_cache += 1,
            Source::Waited => waited += 1,
            _ => {} // Rebuilt: counted by the closure
        }
    }
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut opts.target.conn().await?)
        .await?;
    sink(&Event::Stampede {
        readers: opts.sizes.readers,
        rebuilds: rebuilds.load(Ordering::SeqCst),
        from_cache,
        waited,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}
