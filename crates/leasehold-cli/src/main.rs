//! `leasehold`: distributed leases on Redis from any shell.
//!
//! # Layout
//!
//! - [`cli`]: the command line as clap parses it.
//! - [`exit`]: exit codes, one enum.
//! - [`duration`]: `500ms`, `30s`, `2m`, `1h`.
//! - [`output`]: text for people, JSON Lines for scripts.
//! - `cmd/`: one file per command; each turns its arguments into library
//!   calls and prints the outcome.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod duration;
mod exit;
mod output;

use cli::{Cli, Command, SemCommand};
use exit::Exit;

/// Where Redis is: `--url`, else `LEASEHOLD_URL`, else `REDIS_URL`, else
/// `None` (the caller picks the default, or a private server).
fn given_url(cli: &Cli) -> Option<String> {
    cli.url
        .clone()
        .or_else(|| {
            std::env::var("LEASEHOLD_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()))
}

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasehold: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Give background releases (of dropped guards) a moment to be sent.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn dispatch(cli: Cli) -> ExitCode {
    let url = given_url(&cli);
    let result = match &cli.command {
        Command::Demo(args) => cmd::demo::run(&cli, url, args).await,
        Command::Bench(args) => cmd::bench::run(&cli, url, args).await,
        command => {
            let url = url.unwrap_or_else(|| DEFAULT_URL.to_owned());
            let client = match leasehold::Client::builder()
                .connect_timeout(cli.connect_timeout)
                .connect(&url)
                .await
            {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match command {
                Command::Run(args) => cmd::run::lease(&cli, &client, args).await,
                Command::Sem(SemCommand::Run(args)) => {
                    cmd::run::semaphore(&cli, &client, args).await
                }
                Command::Acquire(args) => cmd::tokens::acquire(&cli, &client, args).await,
                Command::Extend(args) => cmd::tokens::extend(&cli, &client, args).await,
                Command::Release(args) => cmd::tokens::release(&cli, &client, args).await,
                Command::Status(args) => cmd::inspect::status(&cli, &client, args).await,
                Command::List(args) => cmd::inspect::list(&cli, &client, args).await,
                Command::Demo(_) | Command::Bench(_) => unreachable!("handled above"),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// Prints a library error once, on one line, and picks its exit code.
fn fail(e: &leasehold::Error) -> ExitCode {
    eprintln!("leasehold: {e}");
    Exit::of(e).into()
}
