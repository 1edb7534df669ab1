//! `doctor`: checks a deployment and prints what to fix.
//!
//! The checks are the library's ([`leasehold::Client::doctor`]); this file
//! picks the probe name and prints them: one line per check (`ok`, `warn`,
//! `fail`, what, where, what was found) with its fix under it, then a
//! summary. Exit 0 when no check failed (warnings included: leasehold
//! works there, with the risks they name), 1 when one did; a server that
//! cannot be reached at all is exit 5, as for every command.

use std::process::ExitCode;

use leasehold::{Client, Verdict};

use crate::cli::{Cli, DoctorArgs};
use crate::exit::Exit;
use crate::json::{self, Record};
use crate::output;

/// A probe name nobody uses: `leasehold-doctor-` and 16 hex digits from
/// the clock and the process id.
fn default_probe() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mixed = nanos ^ (u64::from(std::process::id())).rotate_left(40);
    format!("leasehold-doctor-{mixed:016x}")
}

/// `doctor [--name NAME]`.
pub async fn run(cli: &Cli, client: &Client, args: &DoctorArgs) -> leasehold::Result<ExitCode> {
    let probe = args.name.clone().unwrap_or_else(default_probe);
    let checks = client.doctor(probe.as_bytes()).await?;
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (ok, warn, fail) = (
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail),
    );
    let exit = if fail > 0 {
        Exit::Failure
    } else {
        Exit::Success
    };
    if cli.json {
        for c in &checks {
            Record::Check(json::Check::new(c)).print();
        }
        Record::Doctor(json::Doctor {
            ok,
            warn,
            fail,
            exit_code: exit.code(),
        })
        .print();
        return Ok(exit.into());
    }
    let check_width = checks.iter().map(|c| c.check.len()).max().unwrap_or(5);
    let server_width = checks.iter().map(|c| c.server.len()).max().unwrap_or(4);
    for c in &checks {
        output::line(&format!(
            "{:<4}  {:<check_width$}  {:<server_width$}  {}",
            c.verdict.as_str(),
            c.check,
            c.server,
            c.found
        ));
        if let Some(fix) = &c.fix {
            output::line(&format!("      fix: {fix}"));
        }
    }
    output::line(&format!(
        "{ok} ok, {warn} warning(s), {fail} failed: {}",
        match (fail, warn) {
            (0, 0) => "leasehold has what it needs here",
            (0, _) => "leasehold works here; the warnings say what can still lose leases",
            _ => "fix the failed checks: leasehold cannot work as it should here",
        }
    ));
    Ok(exit.into())
}
