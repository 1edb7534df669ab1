//! [`prepare`]: copies the peers out of the read-only `shared/peers/` and
//! sets each up in the work directory.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Error;

/// Copies `source` (the read-only `shared/peers/`) into `work` and sets the
/// peers up there, each independently: Python (venv + pip), node (`npm
/// install`), rslock (`cargo build --release`). Set-up output goes to
/// stderr. Returns the problems met (empty when all went well).
///
/// `work` is kept between runs, so the second set-up is quick.
///
/// # Errors
///
/// Only when `source` cannot be copied.
pub fn prepare(source: &Path, work: &Path) -> Result<Vec<String>, Error> {
    prepare_only(
        source,
        work,
        &[Toolchain::Python, Toolchain::Node, Toolchain::Rust],
    )
}

/// The peers' toolchains, each set up on its own by [`prepare_only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// redis-py, python-redis-lock, pottery: a venv and pip.
    Python,
    /// node-redlock: `npm install` in `node/`.
    Node,
    /// rslock: `cargo build --release` in `rust/`.
    Rust,
}

/// [`prepare`] for some toolchains only: `cargo xtask bench --interleave`
/// needs node-redlock and rslock, not the Python peers.
///
/// ```no_run
/// use leasehold_bench::peers::{Toolchain, prepare_only};
/// let work = std::env::temp_dir().join("leasehold-bench-peers");
/// let problems = prepare_only(
///     "../shared/peers".as_ref(),
///     &work,
///     &[Toolchain::Node, Toolchain::Rust],
/// )?;
/// for p in problems {
///     eprintln!("not set up: {p}");
/// }
/// # Ok::<(), leasehold_bench::Error>(())
/// ```
///
/// # Errors
///
/// Only when `source` cannot be copied.
pub fn prepare_only(source: &Path, work: &Path, which: &[Toolchain]) -> Result<Vec<String>, Error> {
    copy_tree(source, work)?;
    let mut problems = Vec::new();
    let mut step = |what: &str, cmd: &mut Command| {
        eprintln!("peers: {what}");
        if let Err(why) = run_quietly(cmd) {
            problems.push(format!("{what}: {why}"));
        }
    };
    if which.contains(&Toolchain::Python) {
        if !work.join(".venv/bin/python").is_file() {
            step(
                "python3 -m venv .venv",
                Command::new("python3")
                    .args(["-m", "venv", ".venv"])
                    .current_dir(work),
            );
        }
        if work.join(".venv/bin/python").is_file() {
            step(
                "pip install -r python/requirements.txt",
                Command::new(work.join(".venv/bin/pip"))
                    .args(["install", "-q", "-r", "python/requirements.txt"])
                    .current_dir(work),
            );
        }
    }
    if which.contains(&Toolchain::Node) {
        step(
            "npm install (node/)",
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .current_dir(work.join("node")),
        );
    }
    if which.contains(&Toolchain::Rust) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        step(
            "cargo build --release (rust/, rslock)",
            Command::new(cargo)
                .args(["build", "--release", "--quiet"])
                .env("CARGO_TARGET_DIR", work.join("rust/target"))
                .current_dir(work.join("rust")),
        );
    }
    Ok(problems)
}

/// Copies a directory tree, leaving out what set-up makes (`.venv`,
/// `node_modules`, `target`, `results`); copies are made writable, since
/// the source may be read-only and the next copy overwrites them.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if [".venv", "node_modules", "target", "results"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            if dst.exists() {
                std::fs::remove_file(&dst)?;
            }
            std::fs::copy(&src, &dst)?;
            let mode = std::fs::metadata(&src)?.permissions().mode();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o600))?;
        }
    }
    Ok(())
}

/// Runs a set-up command with its output on stderr (stdout stays clean).
fn run_quietly(cmd: &mut Command) -> Result<(), String> {
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(to_stderr))
        .status()
        .map_err(|e| format!("could not run it ({e})"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status})"))
    }
}
