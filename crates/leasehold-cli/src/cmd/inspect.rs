//! `status` and `list`.

use std::process::ExitCode;

use leasehold::{Client, LeaseStatus};
use serde_json::json;

use crate::cli::{Cli, ListArgs, StatusArgs};
use crate::exit::Exit;
use crate::output;

fn record(s: &LeaseStatus) {
    output::record(
        "lease",
        json!({
            "name": s.display,
            "held": s.is_held(),
            "holder": s.holder,
            "remaining_ms": output::ms(s.remaining),
            "fence": s.fence,
            "waiting_clients": s.waiting_clients,
        }),
    );
}

fn table(statuses: &[LeaseStatus]) {
    let width = statuses
        .iter()
        .map(|s| s.display.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    output::line(&format!(
        "{:<width$}  {:<5}  {:<9}  {:>8}  {:>8}  {:>7}",
        "NAME", "STATE", "HOLDER", "TTL", "FENCE", "WAITING"
    ));
    for s in statuses {
        let remaining = if s.is_held() && s.remaining.is_none() {
            "none".to_string()
        } else {
            output::human(s.remaining)
        };
        output::line(&format!(
            "{:<width$}  {:<5}  {:<9}  {:>8}  {:>8}  {:>7}",
            s.display,
            if s.is_held() { "held" } else { "free" },
            s.holder
                .as_deref()
                .map_or("-".to_string(), |h| format!("{h}…")),
            remaining,
            s.fence,
            s.waiting_clients,
        ));
    }
}

/// `status NAME`.
pub async fn status(cli: &Cli, client: &Client, args: &StatusArgs) -> leasehold::Result<ExitCode> {
    let s = client.status(&args.name).await?;
    if cli.json {
        record(&s);
    } else {
        table(std::slice::from_ref(&s));
    }
    Ok(Exit::Success.into())
}

/// `list [PATTERN]`.
pub async fn list(cli: &Cli, client: &Client, args: &ListArgs) -> leasehold::Result<ExitCode> {
    let all = client.list(&args.pattern).await?;
    if cli.json {
        all.iter().for_each(record);
    } else if all.is_empty() {
        output::error(&format!("no lease matches `{}`", args.pattern));
    } else {
        table(&all);
    }
    Ok(Exit::Success.into())
}
