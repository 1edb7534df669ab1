//! The command of `run` in a process group of its own, signalled as a group.
//!
//! Why a group: a command is often a shell or a script with children of its
//! own (`sh -c 'work & wait'`). Signalling only the pid we started leaves
//! `work` running, without the lease. Every process the command starts stays
//! in its group unless it leaves on purpose (a daemon calling `setsid`), so
//! `killpg` reaches them all.
//!
//! The price: the group is not the terminal's foreground group, so Ctrl-C
//! from the terminal no longer reaches the command by itself; leasehold
//! passes SIGINT, SIGTERM and SIGHUP on to the group. When leasehold runs in
//! the foreground of a terminal on its stdin, it hands that terminal to the
//! command's group instead (as a shell does for a job), so that the command
//! can read from it and Ctrl-C reaches it directly, and takes it back at the
//! end. Ctrl-Z then stops the command but not leasehold, which keeps
//! renewing; `kill -CONT` (or Ctrl-C) lets it go on.
//!
//! On Linux the command's first process also gets SIGKILL when leasehold
//! dies (`PR_SET_PDEATHSIG`), and [`crate::watchdog`] covers the rest of
//! its group.

use std::io;
use std::os::fd::RawFd;

use tokio::process::Command;

/// The command's process group: its id is the command's pid.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pgid: libc::pid_t,
    /// The terminal handed to the group, to be taken back.
    terminal: Option<RawFd>,
}

/// The terminal on stdin, if leasehold is in its foreground group.
fn foreground_terminal() -> Option<RawFd> {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process state.
    unsafe { (libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp()).then_some(0) }
}

/// Makes the terminal `fd`'s foreground group `pgid`. A background group
/// that does this gets SIGTTOU, which is blocked meanwhile.
///
/// Async-signal-safe: it runs between fork and exec.
unsafe fn give_terminal(fd: RawFd, pgid: libc::pid_t) {
    // SAFETY: plain calls on local, initialised sigsets.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        libc::tcsetpgrp(fd, pgid);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

impl Group {
    /// Sets up `cmd` to start in a new process group (with the terminal, if
    /// leasehold has it), and on Linux to be killed when leasehold dies.
    /// Call [`Group::started`] with the pid once it is spawned.
    pub fn prepare(cmd: &mut Command) -> Option<RawFd> {
        let terminal = foreground_terminal();
        #[cfg(target_os = "linux")]
        let parent = std::process::id() as libc::pid_t;
        let setup = move || -> io::Result<()> {
            // Only async-signal-safe calls here, and no allocation: this
            // runs in the forked child of a multi-threaded process.
            // SAFETY: each call is async-signal-safe and touches only this
            // (single-threaded) child.
            unsafe {
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(fd) = terminal {
                    give_terminal(fd, libc::getpid());
                }
                #[cfg(target_os = "linux")]
                {
                    // SIGKILL when the thread that forked us ends: this runs
                    // from `main`'s `block_on`, on the main thread, which
                    // ends only with the process.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // leasehold died before the prctl: nobody would send it.
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
            }
            Ok(())
        };
        // SAFETY: `setup` is async-signal-safe (see above).
        unsafe {
            cmd.pre_exec(setup);
        }
        terminal
    }

    /// The group of the command just spawned with `pid`.
    pub fn started(pid: u32, terminal: Option<RawFd>) -> Group {
        Group {
            pgid: pid as libc::pid_t,
            terminal,
        }
    }

    /// The group's id (the command's pid).
    pub fn id(&self) -> libc::pid_t {
        self.pgid
    }

    /// Sends `sig` to every process of the group.
    pub fn signal(&self, sig: i32) {
        // SAFETY: killpg(2) has no memory-safety preconditions.
        unsafe {
            libc::killpg(self.pgid, sig);
        }
    }

    /// True once no process is left in the group. The command's first
    /// process counts until it is reaped.
    pub fn is_empty(&self) -> bool {
        // SAFETY: killpg(2) with signal 0 only checks.
        let rc = unsafe { libc::killpg(self.pgid, 0) };
        rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// Takes the terminal back for leasehold's own group, if it was handed
    /// to the command's and is still there.
    pub fn take_back_terminal(&self) {
        if let Some(fd) = self.terminal {
            // SAFETY: plain calls on our own process.
            unsafe {
                if libc::tcgetpgrp(fd) == self.pgid {
                    give_terminal(fd, libc::getpgrp());
                }
            }
        }
    }
}
