//! `acquire`, `extend`, `release`: leases held by shell scripts through
//! their token.

use std::process::ExitCode;

use leasehold::{Client, Token};

use crate::cli::{AcquireArgs, Cli, ExtendArgs, ReleaseArgs, WaitArgs};
use crate::exit::Exit;
use crate::json::{Acquired, Extended, Record, Released};
use crate::output;

/// A lease with the ttl and wait of the command line.
pub fn lease(client: &Client, name: &[u8], wait: &WaitArgs) -> leasehold::Lease {
    client.lease(name).ttl(wait.ttl).wait(wait.wait)
}

/// `acquire NAME`: takes the lease and leaves it held for its ttl.
pub async fn acquire(
    cli: &Cli,
    client: &Client,
    args: &AcquireArgs,
) -> leasehold::Result<ExitCode> {
    // Nobody will renew it once this process exits.
    let lease = lease(client, args.name.bytes(), &args.wait).auto_renew(false);
    let guard = if args.wait.no_wait {
        lease.try_acquire().await?
    } else {
        lease.acquire().await?
    };
    let held = guard.detach();
    if cli.json {
        Record::Acquired(Acquired::new(args.name.bytes(), &held)).print();
    } else {
        output::line(&format!("{} {}", held.token.as_str(), held.fence));
    }
    Ok(Exit::Success.into())
}

/// `extend NAME TOKEN`.
pub async fn extend(cli: &Cli, client: &Client, args: &ExtendArgs) -> leasehold::Result<ExitCode> {
    let token = Token::parse(&args.token)?;
    if !client
        .lease(args.name.bytes())
        .ttl(args.ttl)
        .extend_by_token(&token)
        .await?
    {
        output::error(&format!(
            "`{}` is not held by token {token}: it expired or was taken; acquire it again",
            args.name.shown()
        ));
        return Ok(Exit::Lost.into());
    }
    if cli.json {
        Record::Extended(Extended::new(args.name.bytes(), args.ttl)).print();
    }
    Ok(Exit::Success.into())
}

/// `release NAME TOKEN`.
pub async fn release(
    cli: &Cli,
    client: &Client,
    args: &ReleaseArgs,
) -> leasehold::Result<ExitCode> {
    let Some(token) = &args.token else {
        let reason = args.reason.as_deref().unwrap_or_default();
        return force(cli, client, args, reason).await;
    };
    let token = Token::parse(token)?;
    if !client
        .lease(args.name.bytes())
        .release_by_token(&token)
        .await?
    {
        output::error(&format!(
            "`{}` is not held by token {token}: it expired or was taken; nothing was released",
            args.name.shown()
        ));
        return Ok(Exit::Lost.into());
    }
    if cli.json {
        Record::Released(Released::new(args.name.bytes())).print();
    }
    Ok(Exit::Success.into())
}

/// `release --force NAME --reason WHY`.
async fn force(
    cli: &Cli,
    client: &Client,
    args: &ReleaseArgs,
    reason: &str,
) -> leasehold::Result<ExitCode> {
    let forced = client.force_release(args.name.bytes(), reason).await?;
    let Some(holder) = &forced.holder else {
        output::error(&format!(
            "`{}` is not held (or changed hands while it was read): nothing was forced",
            args.name.shown()
        ));
        return Ok(Exit::Lost.into());
    };
    if cli.json {
        Record::Released(Released::forced(
            args.name.bytes(),
            holder,
            forced.fence,
            reason,
        ))
        .print();
    } else {
        output::line(&format!(
            "released `{}` by force: ended {holder}…'s hold, fence now {} ({reason})",
            args.name.shown(),
            forced.fence
        ));
    }
    Ok(Exit::Success.into())
}
