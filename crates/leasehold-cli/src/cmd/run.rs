//! `run` and `sem run`: a command under a lease (or a permit), renewed while
//! it runs, stopped when the lease is lost.
//!
//! The order of things: connect and take the lease (a signal here ends
//! leasehold with 128 + N, and the command never starts); spawn the command
//! with `LEASEHOLD_NAME`, `LEASEHOLD_FENCE` and `LEASEHOLD_TTL_MS`; then wait
//! for the first of
//!
//! - the command's exit: release the lease, exit with the command's status
//!   (4 if the release found the lease already lost: the work may have
//!   overlapped another holder's);
//! - the guard's `lost()`: SIGTERM to the command, SIGKILL after `--grace`,
//!   exit 4;
//! - SIGINT, SIGTERM or SIGHUP to leasehold: passed on to the command, and
//!   the wait goes on. (Ctrl-C in a terminal reaches the command from the
//!   terminal too, so it may see SIGINT twice; a second SIGINT is what
//!   `kill -INT` on leasehold alone needs to reach it at all.)

use std::ffi::OsString;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use leasehold::Guard;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::cli::{Cli, RunArgs, SemRunArgs, WaitArgs};
use crate::exit::Exit;
use crate::output;
use crate::signals::Signals;

/// `run NAME -- CMD...`
pub async fn lease(
    cli: &Cli,
    args: &RunArgs,
    signals: &mut Signals,
) -> leasehold::Result<ExitCode> {
    let taken = signals
        .unless(async {
            let client = crate::cmd::connect(cli).await?;
            let lease = crate::cmd::tokens::lease(&client, &args.name, &args.wait).fair(args.fair);
            take(&args.wait, lease.try_acquire(), lease.acquire()).await
        })
        .await;
    match taken {
        Ok(guard) => supervise(cli, &args.name, guard?, &args.command, args.grace, signals).await,
        Err(sig) => Ok(Exit::Signal(sig).into()),
    }
}

/// `sem run NAME --limit K -- CMD...`
pub async fn semaphore(
    cli: &Cli,
    args: &SemRunArgs,
    signals: &mut Signals,
) -> leasehold::Result<ExitCode> {
    let taken = signals
        .unless(async {
            let client = crate::cmd::connect(cli).await?;
            let sem = client
                .semaphore(&args.name, args.limit)
                .fair(args.fair)
                .ttl(args.wait.ttl)
                .wait(args.wait.wait);
            take(&args.wait, sem.try_acquire(), sem.acquire()).await
        })
        .await;
    match taken {
        Ok(guard) => supervise(cli, &args.name, guard?, &args.command, args.grace, signals).await,
        Err(sig) => Ok(Exit::Signal(sig).into()),
    }
}

/// `--no-wait` takes `now`, else `waiting`.
async fn take(
    wait: &WaitArgs,
    now: impl Future<Output = leasehold::Result<Guard>>,
    waiting: impl Future<Output = leasehold::Result<Guard>>,
) -> leasehold::Result<Guard> {
    if wait.no_wait {
        now.await
    } else {
        waiting.await
    }
}

/// The exit code of a finished child: its status, or 128 + the signal
/// that killed it.
fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => Exit::Failure.code(),
    }
}

/// Sends `sig` to the child, if it has not been reaped yet.
fn send(child: &Child, sig: i32) {
    // `id()` is None once the child was reaped, so the pid cannot have been
    // reused by another process.
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Runs the command while `guard` holds, and says how it ended.
async fn supervise(
    cli: &Cli,
    name: &str,
    guard: Guard,
    command: &[OsString],
    grace: Duration,
    signals: &mut Signals,
) -> leasehold::Result<ExitCode> {
    let fence = guard.fence();
    let mut child = match Command::new(&command[0])
        .args(&command[1..])
        .env("LEASEHOLD_NAME", name)
        .env("LEASEHOLD_FENCE", fence.to_string())
        .env("LEASEHOLD_TTL_MS", guard.ttl().as_millis().to_string())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            output::error(&format!(
                "cannot run `{}`: {e}",
                command[0].to_string_lossy()
            ));
            guard.release().await?;
            return Ok(ExitCode::from(code));
        }
    };
    // The command runs; signals to us go on to it; a lost lease stops it.
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = guard.lost() => break None,
            sig = signals.recv() => send(&child, sig),
        }
    };
    let status = match ended {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            output::error(&format!(
                "lost track of the command: {e}; killing it and releasing the lease"
            ));
            let _ = child.kill().await;
            let _ = guard.release().await;
            return Ok(Exit::Failure.into());
        }
        None => return stop(cli, name, fence, child, grace, signals).await,
    };
    let code = code_of(status);
    // The command is done: give the lease back and report.
    let released = guard.release().await;
    let lost = matches!(&released, Err(e) if e.is_lost());
    if cli.json {
        output::record(
            "run",
            json!({ "name": name, "fence": fence, "exit_code": if lost { Exit::Lost.code() } else { code }, "command_exit_code": code, "lost": lost }),
        );
    }
    match released {
        Ok(()) => Ok(ExitCode::from(code)),
        Err(e) if e.is_lost() => {
            output::error(&format!(
                "the command exited with {code}, but lease `{name}` had been lost before it ended; its work may have overlapped another holder's"
            ));
            Ok(Exit::Lost.into())
        }
        Err(e) => {
            // Could not release (Redis unreachable): the TTL ends it.
            output::error(&format!("{e}; the lease ends when its TTL runs out"));
            Ok(ExitCode::from(code))
        }
    }
}

/// The lease was lost while the command ran: SIGTERM, then SIGKILL after
/// `grace`; signals to leasehold still go on to the command meanwhile.
async fn stop(
    cli: &Cli,
    name: &str,
    fence: u64,
    mut child: Child,
    grace: Duration,
    signals: &mut Signals,
) -> leasehold::Result<ExitCode> {
    output::error(&format!(
        "lease `{name}` was lost while the command ran; sending it SIGTERM (SIGKILL in {})",
        output::human(Some(grace))
    ));
    send(&child, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            () = tokio::time::sleep_until(deadline) => {
                output::error("the command did not stop within the grace period; sending SIGKILL");
                let _ = child.kill().await;
                break None;
            }
            sig = signals.recv() => send(&child, sig),
        }
    };
    if cli.json {
        output::record(
            "run",
            json!({ "name": name, "fence": fence, "exit_code": Exit::Lost.code(), "command_exit_code": status.map(code_of), "lost": true }),
        );
    }
    Ok(Exit::Lost.into())
}
