//! `run` and `sem run`: a command under a lease (or a permit), renewed while
//! it runs, stopped when the lease is lost.

use std::ffi::OsString;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use leasehold::{Client, Guard};
use serde_json::json;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, RunArgs, SemRunArgs, WaitArgs};
use crate::exit::Exit;
use crate::output;

/// `run NAME -- CMD...`
pub async fn lease(cli: &Cli, client: &Client, args: &RunArgs) -> leasehold::Result<ExitCode> {
    let lease = crate::cmd::tokens::lease(client, &args.name, &args.wait);
    let guard = take(&args.wait, lease.try_acquire(), lease.acquire()).await?;
    supervise(cli, &args.name, guard, &args.command, args.grace).await
}

/// `sem run NAME --limit K -- CMD...`
pub async fn semaphore(
    cli: &Cli,
    client: &Client,
    args: &SemRunArgs,
) -> leasehold::Result<ExitCode> {
    let sem = client
        .semaphore(&args.name, args.limit)
        .ttl(args.wait.ttl)
        .wait(args.wait.wait);
    let guard = take(&args.wait, sem.try_acquire(), sem.acquire()).await?;
    supervise(cli, &args.name, guard, &args.command, args.grace).await
}

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

fn send(pid: Option<u32>, sig: i32) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
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
            eprintln!(
                "leasehold: cannot run `{}`: {e}",
                command[0].to_string_lossy()
            );
            guard.release().await?;
            return Ok(ExitCode::from(code));
        }
    };
    let pid = child.id();
    let (mut int, mut term, mut hup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
        _ => {
            eprintln!("leasehold: cannot watch signals; stopping the command");
            send(pid, libc::SIGTERM);
            let _ = child.wait().await;
            return Ok(Exit::Failure.into());
        }
    };
    // The command runs; signals to us go on to it; a lost lease stops it.
    let lost = loop {
        tokio::select! {
            status = child.wait() => match status {
                Ok(status) => break Err(status),
                Err(e) => {
                    eprintln!("leasehold: lost track of the command: {e}");
                    send(pid, libc::SIGKILL);
                    return Ok(Exit::Failure.into());
                }
            },
            _ = guard.lost() => break Ok(()),
            _ = int.recv() => send(pid, libc::SIGINT),
            _ = term.recv() => send(pid, libc::SIGTERM),
            _ = hup.recv() => send(pid, libc::SIGHUP),
        }
    };
    match lost {
        Err(status) => {
            let code = code_of(status);
            // The command is done: give the lease back and report.
            let released = guard.release().await;
            let lost = matches!(&released, Err(e) if e.is_lost());
            if cli.json {
                output::record(
                    "run",
                    json!({ "name": name, "fence": fence, "exit_code": code, "lost": lost }),
                );
            }
            match released {
                Ok(()) => Ok(ExitCode::from(code)),
                Err(e) if e.is_lost() => {
                    eprintln!(
                        "leasehold: the command exited with {code}, but lease `{name}` had been lost before it ended; its work may have overlapped another holder's"
                    );
                    Ok(Exit::Lost.into())
                }
                Err(e) => {
                    // Could not release (Redis unreachable): the TTL ends it.
                    eprintln!("leasehold: {e}; the lease ends when its TTL runs out");
                    Ok(ExitCode::from(code))
                }
            }
        }
        Ok(()) => {
            eprintln!(
                "leasehold: lease `{name}` was lost while the command ran; sending it SIGTERM (SIGKILL in {})",
                output::human(Some(grace))
            );
            send(pid, libc::SIGTERM);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                eprintln!(
                    "leasehold: the command did not stop within the grace period; sending SIGKILL"
                );
                let _ = child.kill().await;
            }
            if cli.json {
                output::record(
                    "run",
                    json!({ "name": name, "fence": fence, "exit_code": Exit::Lost.code(), "lost": true }),
                );
            }
            drop(guard);
            Ok(Exit::Lost.into())
        }
    }
}
