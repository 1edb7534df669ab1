//! `status` and `list`.

use std::process::ExitCode;

use leasehold::{Client, LeaseKind, LeaseStatus};

use crate::cli::{Cli, ListArgs, StatusArgs};
use crate::exit::Exit;
use crate::json::{self, Record};
use crate::output;

/// The HOLDER column: a token prefix for a lease, `2/3` permits for a
/// semaphore, `w` or `r×2` for a read-write lock.
fn holder_cell(s: &LeaseStatus) -> String {
    match &s.kind {
        LeaseKind::Semaphore { limit, permits, .. } => format!("{}/{limit}", permits.len()),
        LeaseKind::RwLock {
            writer: Some(_), ..
        } => "w".into(),
        LeaseKind::RwLock { readers, .. } if !readers.is_empty() => {
            format!("r×{}", readers.len())
        }
        _ => s
            .holder
            .as_deref()
            .map_or("-".to_string(), |h| format!("{h}…")),
    }
}

/// A remaining TTL for the table; `none` for a holder without one.
fn ttl_cell(held: bool, remaining: Option<std::time::Duration>) -> String {
    if held && remaining.is_none() {
        "none".to_string()
    } else {
        output::human(remaining)
    }
}

/// The table; with `details`, each semaphore's or read-write lock's
/// holders (token prefix, TTL) on lines of their own under its row.
fn table(statuses: &[LeaseStatus], details: bool) {
    let width = statuses
        .iter()
        .map(|s| s.display.chars().count())
        // Room for the holder lines' `  writer`.
        .chain([if details { 8 } else { 4 }])
        .max()
        .unwrap_or(4);
    let row = |name: &str,
               kind: &str,
               state: &str,
               holder: &str,
               ttl: &str,
               fence: &str,
               waiting: &str| {
        let line = format!(
            "{name:<width$}  {kind:<9}  {state:<5}  {holder:<9}  {ttl:>8}  {fence:>8}  {waiting:>7}"
        );
        output::line(line.trim_end());
    };
    row("NAME", "KIND", "STATE", "HOLDER", "TTL", "FENCE", "WAITING");
    for s in statuses {
        row(
            &s.display,
            json::kind(s),
            if s.is_held() { "held" } else { "free" },
            &holder_cell(s),
            &ttl_cell(s.is_held(), s.remaining),
            &s.fence.to_string(),
            &s.waiting_clients.to_string(),
        );
        if !details {
            continue;
        }
        if let LeaseKind::Semaphore { .. } | LeaseKind::RwLock { .. } = s.kind {
            // Under the row: the role where the name is, the token prefix
            // under HOLDER, its TTL under TTL.
            for (role, h) in s.holders() {
                row(
                    &format!("  {}", role.as_str()),
                    "",
                    "",
                    &format!("{}…", h.token),
                    &ttl_cell(true, h.remaining),
                    "",
                    "",
                );
            }
        }
        if let LeaseKind::RwLock {
            writer_waiting: true,
            ..
        } = s.kind
        {
            output::line("  a writer waits: new readers wait behind it");
        }
        if let Some(n) = s.fair_waiters {
            output::line(&format!("  {n} fair waiter(s) queued"));
        }
        if let Some(q) = &s.quorum {
            output::line(&format!(
                "  Redlock: {} of {} masters answered; {} needed to hold",
                q.answered, q.masters, q.needed
            ));
            for (token, n) in &q.holding {
                output::line(&format!("  {token}… held on {n} of {} masters", q.masters));
            }
        }
    }
}

/// `status NAME`.
pub async fn status(cli: &Cli, client: &Client, args: &StatusArgs) -> leasehold::Result<ExitCode> {
    let s = client.status(args.name.bytes()).await?;
    if cli.json {
        Record::Lease(json::Lease::new(&s)).print();
    } else {
        table(std::slice::from_ref(&s), true);
    }
    Ok(Exit::Success.into())
}

/// `list [PATTERN]`.
pub async fn list(cli: &Cli, client: &Client, args: &ListArgs) -> leasehold::Result<ExitCode> {
    let all = client.list(&args.pattern).await?;
    if cli.json {
        for s in &all {
            Record::Lease(json::Lease::new(s)).print();
        }
    } else if all.is_empty() {
        output::error(&format!("no lease matches `{}`", args.pattern));
    } else {
        table(&all, false);
    }
    Ok(Exit::Success.into())
}
