//! `acquire`, `extend`, `release`: leases held by shell scripts through
//! their token.

use std::process::ExitCode;

use leasehold::{Client, Token};
use serde_json::json;

use crate::cli::{AcquireArgs, Cli, ExtendArgs, ReleaseArgs, WaitArgs};
use crate::exit::Exit;
use crate::output;

/// A lease with the ttl and wait of the command line.
pub fn lease(client: &Client, name: &str, wait: &WaitArgs) -> leasehold::Lease {
    client.lease(name).ttl(wait.ttl).wait(wait.wait)
}

/// `acquire NAME`: takes the lease and leaves it held for its ttl.
pub async fn acquire(
    cli: &Cli,
    client: &Client,
    args: &AcquireArgs,
) -> leasehold::Result<ExitCode> {
    // Nobody will renew it once this process exits.
    let lease = lease(client, &args.name, &args.wait).auto_renew(false);
    let guard = if args.wait.no_wait {
        lease.try_acquire().await?
    } else {
        lease.acquire().await?
    };
    let held = guard.detach();
    if cli.json {
        output::record(
            "acquired",
            json!({
                "name": args.name,
                "token": held.token.as_str(),
                "fence": held.fence,
                "ttl_ms": held.ttl.as_millis() as u64,
            }),
        );
    } else {
        output::line(&format!("{} {}", held.token.as_str(), held.fence));
    }
    Ok(Exit::Success.into())
}

/// `extend NAME TOKEN`.
pub async fn extend(cli: &Cli, client: &Client, args: &ExtendArgs) -> leasehold::Result<ExitCode> {
    let token = Token::parse(&args.token)?;
    if !client
        .lease(&args.name)
        .ttl(args.ttl)
        .extend_by_token(&token)
        .await?
    {
        output::error(&format!(
            "`{}` is not held by token {token}: it expired or was taken; acquire it again",
            args.name
        ));
        return Ok(Exit::Lost.into());
    }
    if cli.json {
        output::record(
            "extended",
            json!({ "name": args.name, "ttl_ms": args.ttl.as_millis() as u64 }),
        );
    }
    Ok(Exit::Success.into())
}

/// `release NAME TOKEN`.
pub async fn release(
    cli: &Cli,
    client: &Client,
    args: &ReleaseArgs,
) -> leasehold::Result<ExitCode> {
    let token = Token::parse(&args.token)?;
    if !client.lease(&args.name).release_by_token(&token).await? {
        output::error(&format!(
            "`{}` is not held by token {token}: it expired or was taken; nothing was released",
            args.name
        ));
        return Ok(Exit::Lost.into());
    }
    if cli.json {
        output::record("released", json!({ "name": args.name }));
    }
    Ok(Exit::Success.into())
}
