//! `run` and `sem run`: a command under a lease (or a permit), renewed while
//! it runs, stopped when the lease is lost, and never outliving it.
//!
//! The order of things: connect and take the lease (a signal here ends
//! leasehold with 128 + N, and the command never starts); spawn the command
//! with `LEASEHOLD_NAME`, `LEASEHOLD_FENCE` and `LEASEHOLD_TTL_MS`, in a
//! process group of its own ([`crate::group`]: signals reach what it
//! starts, too); on Linux start the [`crate::watchdog`]; then wait for the
//! first of
//!
//! - the command's exit: stop what it left in its group (it would run on
//!   without the lease), release the lease, exit with the command's status
//!   (4 if the release found the lease already lost: the work may have
//!   overlapped another holder's);
//! - the guard's `lost()`: SIGTERM to the group, SIGKILL after `--grace`,
//!   exit 4;
//! - renewals failing until the validity left is within the grace (or
//!   ttl/3, if less): SIGTERM to the group, SIGKILL before the validity
//!   runs out, exit 4. Otherwise a lease that expires for want of renewal
//!   would leave the command running for `--grace` after another host may
//!   have taken it;
//! - SIGINT, SIGTERM or SIGHUP to leasehold: passed on to the group, and
//!   the wait goes on. The group is not the terminal's foreground group
//!   unless leasehold handed it the terminal (then Ctrl-C reaches it
//!   directly, and leasehold, in the background, gets none).
//!
//! And if leasehold dies without any of this (kill -9, the OOM killer):
//! nobody renews the lease, which another host may take after its
//! validity. On Linux the command's first process gets SIGKILL from the
//! kernel at once (`PR_SET_PDEATHSIG`), and the watchdog, told every ttl/6
//! how long the command may still run, stops the rest of the group: SIGTERM,
//! then SIGKILL within `--grace` and before the validity runs out. A
//! watchdog rather than a child subreaper: a subreaper dies with leasehold.
//! Elsewhere the group is signalled as a group on a lost lease, but the
//! death of leasehold itself is not covered.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{ExitCode, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use leasehold::{Client, Guard};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cli::{Cli, RunArgs, SemRunArgs, WaitArgs};
use crate::cmd::Address;
use crate::exit::Exit;
use crate::group::Group;
use crate::json::{self, Record};
use crate::name::Name;
use crate::output;
use crate::signals::Signals;
use crate::watchdog::Watchdog;

/// `run NAME -- CMD...`; `connected` keeps its client, for the caller to
/// settle however the command ends.
pub async fn lease(
    cli: &Cli,
    address: &Address,
    args: &RunArgs,
    signals: &mut Signals,
    connected: &OnceLock<Client>,
) -> leasehold::Result<ExitCode> {
    if let Some(refused) = refuse_nul(&args.name) {
        return Ok(refused);
    }
    let taken = signals
        .unless(async {
            let client = crate::cmd::connect_kept(cli, address, connected).await?;
            let lease =
                crate::cmd::tokens::lease(&client, args.name.bytes(), &args.wait).fair(args.fair);
            take(&args.wait, lease.try_acquire(), lease.acquire()).await
        })
        .await;
    match taken {
        Ok(guard) => supervise(cli, address.is_cluster(), args, guard?, signals).await,
        Err(sig) => Ok(Exit::Signal(sig).into()),
    }
}

/// `sem run NAME --limit K -- CMD...`; `connected` as for [`lease`].
pub async fn semaphore(
    cli: &Cli,
    address: &Address,
    args: &SemRunArgs,
    signals: &mut Signals,
    connected: &OnceLock<Client>,
) -> leasehold::Result<ExitCode> {
    let SemRunArgs { limit, run: args } = args;
    if let Some(refused) = refuse_nul(&args.name) {
        return Ok(refused);
    }
    let taken = signals
        .unless(async {
            let client = crate::cmd::connect_kept(cli, address, connected).await?;
            let sem = client
                .semaphore(args.name.bytes(), *limit)
                .fair(args.fair)
                .ttl(args.wait.ttl)
                .wait(args.wait.wait);
            take(&args.wait, sem.try_acquire(), sem.acquire()).await
        })
        .await;
    match taken {
        Ok(guard) => supervise(cli, address.is_cluster(), args, guard?, signals).await,
        Err(sig) => Ok(Exit::Signal(sig).into()),
    }
}

/// A name with a NUL byte (possible with `--name-hex`) cannot reach the
/// command in `LEASEHOLD_NAME`: refused (exit 2) before the lease is taken.
fn refuse_nul(name: &Name) -> Option<ExitCode> {
    name.bytes().contains(&0).then(|| {
        output::error(&format!(
            "`{}` holds a NUL byte, which LEASEHOLD_NAME cannot pass to the command: run a command under a name without one",
            name.shown()
        ));
        Exit::Usage.into()
    })
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

/// How long before the lease's validity runs out the command must be gone:
/// a tenth of the ttl, at most a second (the validity itself already allows
/// for clock drift).
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(1))
}

/// How long the command may still run from now, were the lease renewed no
/// more: the validity left, less the margin.
fn may_run(guard: &Guard) -> Duration {
    guard.remaining().saturating_sub(margin(guard.ttl()))
}

/// How the wait for the command ended.
enum Ended {
    /// It exited (or waiting for it failed).
    Exited(std::io::Result<ExitStatus>),
    /// The lease is lost: gone, taken, or its validity ran out.
    Lost,
    /// Renewals keep failing and the validity left is within the grace:
    /// the command must be stopped now to be gone before it runs out.
    Expiring,
}

/// Runs the command while `guard` holds, and says how it ended (`cluster`:
/// the lease lives on a Redis Cluster, for the hint of a failed release).
async fn supervise(
    cli: &Cli,
    cluster: bool,
    args: &RunArgs,
    guard: Guard,
    signals: &mut Signals,
) -> leasehold::Result<ExitCode> {
    let (command, grace) = (&args.command, args.grace);
    let name = args.name.shown();
    let fence = guard.fence();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("LEASEHOLD_NAME", OsStr::from_bytes(args.name.bytes()))
        .env("LEASEHOLD_FENCE", fence.to_string())
        .env("LEASEHOLD_TTL_MS", guard.ttl().as_millis().to_string());
    let terminal = Group::prepare(&mut cmd);
    let mut child = match cmd.spawn() {
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
    let group = Group::started(child.id().expect("a child just spawned"), terminal);
    let mut watchdog = Watchdog::start(group.id(), grace, may_run(&guard));
    // Once renewals have failed for this long, the command is stopped: with
    // at most ttl/3, a healthy lease (renewed every ttl/3) never gets there.
    let stop_window = grace.min(guard.ttl() / 3);
    let mut heartbeat = tokio::time::interval((guard.ttl() / 6).max(Duration::from_millis(50)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The command runs; signals to us go on to its group; a lost lease, or
    // one about to run out, stops it.
    let ended = loop {
        let stop_at = Instant::now() + guard.remaining().saturating_sub(stop_window);
        tokio::select! {
            status = child.wait() => break Ended::Exited(status),
            () = guard.lost() => break Ended::Lost,
            () = tokio::time::sleep_until(stop_at) => {
                if guard.is_lost() {
                    break Ended::Lost;
                }
                if guard.remaining() <= stop_window {
                    break Ended::Expiring;
                }
            }
            sig = signals.recv() => group.signal(sig),
            _ = heartbeat.tick() => watchdog.within(may_run(&guard)),
        }
    };
    let (status, lost) = match ended {
        Ended::Exited(Ok(status)) => {
            if !settles_empty(&group).await {
                // They would run on without the lease once it is released.
                let within = grace.min(may_run(&guard));
                output::warn(&format!(
                    "the command exited but left processes in its process group; sending them SIGTERM (SIGKILL in {}) before the lease is released",
                    output::human(Some(within))
                ));
                stop(&group, &mut child, Instant::now() + within, signals).await;
            }
            (Some(status), false)
        }
        Ended::Exited(Err(e)) => {
            output::error(&format!(
                "lost track of the command: {e}; killing its process group and releasing the lease"
            ));
            group.signal(libc::SIGKILL);
            let _ = child.kill().await;
            group.take_back_terminal();
            watchdog.stand_down().await;
            let _ = guard.release().await;
            return Ok(Exit::Failure.into());
        }
        Ended::Lost => {
            output::error(&format!(
                "lease `{name}` was lost while the command ran; sending its process group SIGTERM (SIGKILL in {})",
                output::human(Some(grace))
            ));
            let status = stop(&group, &mut child, Instant::now() + grace, signals).await;
            (status, true)
        }
        Ended::Expiring => {
            let within = grace.min(may_run(&guard));
            output::error(&format!(
                "lease `{name}` could not be renewed and runs out in {}; sending the command's process group SIGTERM (SIGKILL in {}) so that it is gone before then",
                output::human(Some(guard.remaining())),
                output::human(Some(within))
            ));
            let status = stop(&group, &mut child, Instant::now() + within, signals).await;
            (status, true)
        }
    };
    group.take_back_terminal();
    watchdog.stand_down().await;
    let code = status.map(code_of);
    if lost {
        // Give back what may still be ours; the command was stopped anyway.
        let _ = guard.release().await;
        if cli.json {
            report(&args.name, fence, Exit::Lost.code(), code, true);
        }
        return Ok(Exit::Lost.into());
    }
    let code = code.unwrap_or(Exit::Failure.code());
    // The command is done: give the lease back and report.
    let released = guard.release().await;
    let lost = matches!(&released, Err(e) if e.is_lost());
    if cli.json {
        let exit_code = if lost { Exit::Lost.code() } else { code };
        report(&args.name, fence, exit_code, Some(code), lost);
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
            output::warn(&format!(
                "{}; the lease ends when its TTL runs out",
                output::failure(&e, cluster)
            ));
            Ok(ExitCode::from(code))
        }
    }
}

/// Prints the `run` record.
fn report(name: &Name, fence: u64, exit_code: u8, command_exit_code: Option<u8>, lost: bool) {
    Record::Run(json::Run {
        name: json::Name::of(name.bytes()),
        fence,
        exit_code,
        command_exit_code,
        lost,
    })
    .print();
}

/// True if the command's group is empty, or soon is: a process of it that
/// exited just before the command, unreaped, stays in it until its new
/// parent (init) reaps it.
async fn settles_empty(group: &Group) -> bool {
    for _ in 0..10 {
        if group.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    group.is_empty()
}

/// Stops the command's process group: SIGTERM now, SIGKILL at `kill_at`
/// unless every process of the group is gone by then (the command's first
/// process is reaped on the way). Signals to leasehold still go on to the
/// group meanwhile. Returns the command's status.
async fn stop(
    group: &Group,
    child: &mut Child,
    kill_at: Instant,
    signals: &mut Signals,
) -> Option<ExitStatus> {
    group.signal(libc::SIGTERM);
    // The first process's status once reaped (a reaped child answers
    // `wait` again at once with the same status).
    let mut status = None;
    loop {
        tokio::select! {
            s = child.wait(), if status.is_none() => status = Some(s.ok()),
            () = tokio::time::sleep(Duration::from_millis(5)), if status.is_some() => {
                if group.is_empty() {
                    return status.flatten();
                }
            }
            () = tokio::time::sleep_until(kill_at) => break,
            sig = signals.recv() => group.signal(sig),
        }
    }
    output::warn(
        "the command did not stop within the grace period; sending SIGKILL to its process group",
    );
    group.signal(libc::SIGKILL);
    match status {
        Some(s) => s,
        None => child.wait().await.ok(),
    }
}
