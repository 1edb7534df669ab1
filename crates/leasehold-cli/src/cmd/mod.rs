//! One module per command, and the connection they share.

pub mod bench;
pub mod demo;
pub mod inspect;
pub mod run;
pub mod tokens;

use leasehold::Client;

use crate::cli::Cli;

/// The default address, when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Where Redis is: `--url`, else `LEASEHOLD_URL`, else `REDIS_URL` (empty
/// values count as unset), else `None`: the caller picks the default, or a
/// private server (`demo`, `bench`). clap's `env` takes one variable, so
/// the two are read here.
pub fn given_url(cli: &Cli) -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|s: &String| !s.is_empty());
    cli.url
        .clone()
        .or_else(|| var("LEASEHOLD_URL"))
        .or_else(|| var("REDIS_URL"))
}

/// Connects to the given address, or to [`DEFAULT_URL`].
///
/// # Cancel safety
///
/// Dropping the future leaves nothing behind.
pub async fn connect(cli: &Cli) -> leasehold::Result<Client> {
    let url = given_url(cli).unwrap_or_else(|| DEFAULT_URL.to_owned());
    Client::builder()
        .connect_timeout(cli.connect_timeout)
        .connect(&url)
        .await
}
