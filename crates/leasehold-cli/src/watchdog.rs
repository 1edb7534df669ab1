//! Linux: the watchdog that stops the command's process group when `run`
//! itself dies without cleaning up (SIGKILL, the OOM killer, a crash).
//!
//! Nobody renews the lease once `run` is gone: after the lease's validity,
//! another host may take it, so the command must be gone by then.
//! `PR_SET_PDEATHSIG` (see [`crate::group`]) reaches only the command's
//! first process, not the processes it started. So `run` also starts this
//! watchdog: leasehold itself, executed again as `leasehold __watchdog PGID
//! GRACE_MS WITHIN_MS`, in a process group of its own (the terminal's
//! signals do not reach it), with the read end of a pipe as its stdin. Only
//! `run` holds the write end (close-on-exec: the command does not inherit
//! it), so the pipe closes exactly when `run` exits, however it exits; the
//! kernel does that, no signal or timer is needed.
//!
//! `run` writes a line now and then: how many milliseconds from now the
//! command may still run if `run` died this instant (the lease's validity
//! left, less a margin), and `done` before it exits on its own. On
//! end-of-file without `done`, the watchdog sends SIGTERM to the group, and
//! SIGKILL once the group is still there at the earlier of GRACE_MS and the
//! last WITHIN_MS; then it exits. It uses no Redis and no async runtime.
//!
//! Not covered: the watchdog killed together with `run` (a SIGKILL to the
//! whole process tree or cgroup, which stops the command too anyway).

#[cfg(target_os = "linux")]
use std::io::BufRead;
#[cfg(target_os = "linux")]
use std::process::ExitCode;
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
/// The hidden first argument that makes leasehold a watchdog.
pub const ARG: &str = "__watchdog";

/// Runs the watchdog if the arguments ask for it (`__watchdog PGID GRACE_MS
/// WITHIN_MS`); `None` otherwise.
#[cfg(target_os = "linux")]
pub fn main_if_asked() -> Option<ExitCode> {
    // args_os: any other command line may hold bytes that are not UTF-8
    // (a name, the command of `run`), which `args()` would panic on.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().and_then(|a| a.to_str()) != Some(ARG) {
        return None;
    }
    let numbers: Option<Vec<u64>> = args[1..].iter().map(|a| a.to_str()?.parse().ok()).collect();
    match numbers.as_deref() {
        Some(&[pgid, grace, within]) if pgid > 1 => Some(watch(
            pgid as libc::pid_t,
            Duration::from_millis(grace),
            Duration::from_millis(within),
        )),
        _ => {
            crate::output::error("__watchdog is started by `leasehold run` only");
            Some(ExitCode::from(crate::exit::Exit::Usage.code()))
        }
    }
}

#[cfg(target_os = "linux")]
fn watch(pgid: libc::pid_t, grace: Duration, within: Duration) -> ExitCode {
    // SAFETY: setting dispositions to SIG_IGN, before any other thread.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut kill_by = Instant::now() + within;
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("done") => return ExitCode::SUCCESS,
            Ok(ms) => {
                if let Ok(ms) = ms.parse::<u64>() {
                    kill_by = Instant::now() + Duration::from_millis(ms);
                }
            }
            Err(_) => break,
        }
    }
    // `run` is gone without a word.
    let group = crate::group::Group::started(pgid as u32, None);
    if group.is_empty() {
        return ExitCode::SUCCESS;
    }
    let kill_at = kill_by.min(Instant::now() + grace);
    crate::output::error(&format!(
        "`leasehold run` died while its command ran (process group {pgid}); nobody renews the lease: sending the group SIGTERM (SIGKILL in {})",
        crate::output::human(Some(kill_at.saturating_duration_since(Instant::now())))
    ));
    group.signal(libc::SIGTERM);
    while Instant::now() < kill_at {
        if group.is_empty() {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    group.signal(libc::SIGKILL);
    ExitCode::SUCCESS
}

/// `run`'s end of a watchdog; on other systems than Linux, nothing.
pub struct Watchdog {
    #[cfg(target_os = "linux")]
    inner: Option<(tokio::process::Child, std::fs::File)>,
}

impl Watchdog {
    /// Starts a watchdog over process group `pgid`: should `run` die, the
    /// group gets SIGTERM, and SIGKILL after `grace` or `within`, whichever
    /// is sooner. If it cannot be started, says so and goes on without.
    pub fn start(pgid: libc::pid_t, grace: Duration, within: Duration) -> Watchdog {
        #[cfg(target_os = "linux")]
        {
            match spawn(pgid, grace, within) {
                Ok(inner) => Watchdog { inner: Some(inner) },
                Err(e) => {
                    crate::output::error(&format!(
                        "cannot start the watchdog ({e}); should leasehold be killed, only the command's first process is stopped with it"
                    ));
                    Watchdog { inner: None }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (pgid, grace, within);
            Watchdog {}
        }
    }

    /// Says how long the command may still run should `run` die now.
    pub fn within(&mut self, d: Duration) {
        #[cfg(target_os = "linux")]
        if let Some((_, pipe)) = &mut self.inner {
            use std::io::Write;
            // A few bytes in a pipe the watchdog keeps reading: never blocks
            // for long. A watchdog that died makes this fail: nothing to do.
            let _ = writeln!(pipe, "{}", d.as_millis());
        }
        #[cfg(not(target_os = "linux"))]
        let _ = d;
    }

    /// `run` ends on its own: the watchdog exits without touching anything.
    pub async fn stand_down(self) {
        #[cfg(target_os = "linux")]
        if let Some((mut child, mut pipe)) = self.inner {
            use std::io::Write;
            let _ = writeln!(pipe, "done");
            drop(pipe);
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        }
    }
}

/// Starts `leasehold __watchdog` with the read end of a new pipe as stdin;
/// returns it and the write end.
#[cfg(target_os = "linux")]
fn spawn(
    pgid: libc::pid_t,
    grace: Duration,
    within: Duration,
) -> std::io::Result<(tokio::process::Child, std::fs::File)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    let (read, write) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // /proc/self/exe: this very binary, even if a deploy replaced the file
    // since leasehold started.
    let child = tokio::process::Command::new("/proc/self/exe")
        .arg0("leasehold")
        .arg(ARG)
        .arg(pgid.to_string())
        .arg(grace.as_millis().to_string())
        .arg(within.as_millis().to_string())
        .stdin(std::process::Stdio::from(read))
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok((child, std::fs::File::from(write)))
}
