//! Why fencing tokens: a holder pauses past its TTL, another takes over and
//! writes, the first wakes up and tries to write. The store refuses it
//! because its fence is lower than one it has already seen.
//!
//! ```sh
//! LEASEHOLD_URL=redis://127.0.0.1:6379 cargo run -p leasehold --example fenced_store
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use leasehold::{FenceGate, StaleFence};

/// A toy store that lives outside Redis and checks fences on every write.
#[derive(Default)]
struct Store {
    gate: FenceGate,
    data: Mutex<HashMap<String, String>>,
}

impl Store {
    fn write(&self, fence: u64, key: &str, value: &str) -> Result<(), StaleFence> {
        self.gate.admit(fence)?;
        self.data.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> leasehold::Result<()> {
    let url = std::env::var("LEASEHOLD_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = leasehold::Client::connect(&url).await?;
    let store = Store::default();
    let lease = client
        .lease("examples/fenced")
        .ttl(Duration::from_millis(200));

    // The first holder does not renew (as if frozen in a long GC pause).
    let paused = lease.clone().auto_renew(false).acquire().await?;
    paused.lost().await; // its TTL runs out while it "sleeps"

    // Someone else takes the lease and writes.
    let next = lease.acquire().await?;
    store.write(next.fence(), "report", "fresh").unwrap();

    // The paused holder wakes up and tries to write with its old fence.
    match store.write(paused.fence(), "report", "stale") {
        Err(e) => println!("refused: {e}"),
        Ok(()) => unreachable!("a stale fence got through"),
    }
    assert_eq!(store.data.lock().unwrap()["report"], "fresh");
    next.release().await
}
