//! `--log-format`: what goes to stderr, and how.
//!
//! Two things go there: leasehold's own messages ([`crate::output::error`]
//! and [`crate::output::warn`]) and the library's `tracing` events (a lease
//! lost, a renewal retried, a subscriber reconnecting), picked by
//! `LEASEHOLD_LOG`, else `RUST_LOG`, in tracing's filter syntax.
//!
//! - `text` (the default): messages as `leasehold: ...` lines, as always;
//!   library events only when a filter is given (the messages already say
//!   what matters to a person), in tracing's plain format.
//! - `json`: every line is one JSON object: `timestamp`, `level`
//!   (`ERROR`, `WARN`, ...), `target`, `message`, and the event's fields
//!   (`name`, `kind`, `fence`, `token` (a prefix), `cause`, ...) beside
//!   them, with the spans it happened in. leasehold's own messages have
//!   the target `leasehold_cli` and are always shown; the library's
//!   events, at `warn` and above unless a filter says otherwise.
//!
//! stdout is left alone: it carries the command's output (`run`) or the
//! `--json` records.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The target of leasehold's own messages in JSON.
pub const TARGET: &str = "leasehold_cli";

/// Set by [`init`] for `--log-format json`.
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether messages go out as JSON Lines.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the stderr log for `format`. Called once, after parsing.
pub fn init(format: LogFormat) {
    let given = ["LEASEHOLD_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().map(|v| (*var, v)))
        .filter(|(_, v)| !v.trim().is_empty());
    let filter = |default: &str| {
        match &given {
        Some((var, spec)) => EnvFilter::try_new(spec).unwrap_or_else(|e| {
            crate::output::warn(&format!(
                "{var}=`{spec}` is not a filter ({e}); using `{default}`: give levels and targets, e.g. `warn` or `leasehold=debug`"
            ));
            EnvFilter::new(default)
        }),
        None => EnvFilter::new(default),
    }
    };
    match format {
        LogFormat::Text => {
            if given.is_none() {
                // Nothing to show: no subscriber, and the library's
                // spans and events cost next to nothing.
                return;
            }
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_env_filter(filter("off"))
                .try_init();
        }
        LogFormat::Json => {
            // leasehold's own messages whatever the filter says.
            let own = format!("{TARGET}=trace")
                .parse()
                .expect("a valid directive");
            let installed = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
                .with_env_filter(filter("warn").add_directive(own))
                .try_init();
            JSON.store(installed.is_ok(), Ordering::Relaxed);
        }
    }
}
