//! Finding libfaketime, which makes a process see a wall clock of our choice.

use std::path::PathBuf;

use crate::Error;

/// The environment variable that names the libfaketime library to use.
const ENV: &str = "LEASEHOLD_LIBFAKETIME";

/// Where distributions put the library (Debian's `faketime` package:
/// `/usr/lib/<triplet>/faketime/`).
const DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib/faketime",
    "/usr/lib64/faketime",
    "/usr/local/lib/faketime",
];

/// Returns the libfaketime shared library (`libfaketime.so.1`), for
/// `LD_PRELOAD`: `$LEASEHOLD_LIBFAKETIME` if set, else the usual install
/// places.
///
/// # Errors
///
/// [`Error::FaketimeNotFound`], whose message gives the install command.
///
/// ```no_run
/// println!("clock jumps through {}", testkit::libfaketime()?.display());
/// # Ok::<(), testkit::Error>(())
/// ```
pub fn library() -> Result<PathBuf, Error> {
    if let Some(env) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(env);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::FaketimeNotFound { env: Some(path) })
        };
    }
    DIRS.iter()
        .map(|dir| PathBuf::from(dir).join("libfaketime.so.1"))
        .find(|p| p.is_file())
        .ok_or(Error::FaketimeNotFound { env: None })
}

/// The `LD_PRELOAD` value that runs a program under `library`.
///
/// Debian's redis-server allocates with a shared libjemalloc, whose start-up
/// reads the clock before libfaketime has initialised (libfaketime reports
/// "unexpected recursive calls to clock_gettime()" and redis-server never
/// answers). glibc's `libc_malloc_debug.so.0`, preloaded first, puts glibc's
/// allocator in front, and the start goes through; it is added when it sits
/// next to libc.
pub(crate) fn preload(library: &std::path::Path) -> std::ffi::OsString {
    let mut value = std::ffi::OsString::new();
    for dir in [
        "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/lib",
    ] {
        let debug = std::path::Path::new(dir).join("libc_malloc_debug.so.0");
        if debug.is_file() {
            value.push(debug);
            value.push(":");
            break;
        }
    }
    value.push(library);
    value
}
