//! Take a lease, work under it with its fence, give it back.
//!
//! ```sh
//! LEASEHOLD_URL=redis://127.0.0.1:6379 cargo run -p leasehold --example quickstart
//! ```

use std::time::Duration;

#[tokio::main]
async fn main() -> leasehold::Result<()> {
    let url = std::env::var("LEASEHOLD_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = leasehold::Client::connect(&url).await?;
    let guard = client
        .lease("examples/quickstart")
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(10))
        .acquire()
        .await?;
    println!(
        "holding with fence {} (token {})",
        guard.fence(),
        guard.token()
    );
    tokio::select! {
        _ = guard.lost() => eprintln!("lost the lease: stopping"),
        _ = tokio::time::sleep(Duration::from_millis(500)) => println!("work done"),
    }
    guard.release().await
}
