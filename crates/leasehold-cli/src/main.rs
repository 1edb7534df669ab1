//! `leasehold`: distributed leases on Redis from any shell.
//!
//! # Layout
//!
//! - [`cli`]: the command line as clap parses it; values (durations, names,
//!   ttls) are checked as clap parses them, before anything connects.
//! - [`exit`]: exit codes, one enum.
//! - [`duration`]: `500ms`, `30s`, `2m`, `1h`.
//! - [`name`]: a name from the command line (bytes, or `--name-hex`), and
//!   shown to people.
//! - [`output`]: lines on stdout, one-line errors on stderr, durations for
//!   people.
//! - [`json`]: the `--json` records, typed: the schema.
//! - [`log`]: `--log-format`: messages and the library's events on stderr,
//!   as text or JSON Lines.
//! - [`signals`]: SIGINT, SIGTERM, SIGHUP.
//! - [`group`]: `run`'s command in a process group of its own.
//! - [`watchdog`]: Linux: stops that group should `run` itself be killed
//!   (`leasehold __watchdog`, a hidden mode).
//! - `cmd/`: one file per command; each turns its arguments into library
//!   calls and prints the outcome.
//!
//! `main` parses and works out the address ([`cmd::Address`]), then
//! [`dispatch`] connects and runs one command. Errors come back as
//! [`leasehold::Error`] and are printed once, on one line, by [`fail`].

use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{CommandFactory, FromArgMatches};

mod cli;
mod cmd;
mod duration;
mod exit;
mod group;
mod json;
mod log;
mod name;
mod output;
mod signals;
mod watchdog;

use cli::{Cli, Command, SemCommand};
use exit::Exit;
use signals::Signals;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    if let Some(code) = watchdog::main_if_asked() {
        return code;
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    log::init(cli.log_format);
    let address = match cmd::Address::of(&cli) {
        Ok(address) => address,
        Err(why) => {
            output::error(&why);
            return Exit::Usage.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"));
            return Exit::Failure.into();
        }
    };
    let code = runtime.block_on(dispatch(cli, address));
    // The command's client was settled in `dispatch` (its background
    // releases waited for, 2 s at most): what still runs stops here, at
    // its next await (tokio drops the tasks of a runtime that shuts down).
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// Parses the command line, as `Cli::try_parse` would, except that a value
/// refused once clap has matched the arguments (a name with `--name-hex`,
/// see [`name::Name`]) is told with its own subcommand's usage, as clap
/// tells the values it checks itself.
///
/// `--url` given both before and after the subcommand is refused: clap
/// would keep only the later ones (a global argument's values at a
/// subcommand replace those above it), and a cluster seed or a second
/// address would be dropped without a word.
fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = command.try_get_matches_from_mut(&args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| {
        let (mut sub, mut m) = (&mut command, &matches);
        while let Some((name, next)) = m.subcommand() {
            sub = sub.find_subcommand_mut(name).expect("clap matched it");
            m = next;
        }
        e.format(sub)
    })?;
    // No other option takes a value starting with `--`, and no name or
    // command can be `--url` before a `--`: every such word is a --url.
    let given = args
        .iter()
        .skip(1)
        .map(|a| a.as_encoded_bytes())
        .take_while(|a| *a != b"--")
        .filter(|a| *a == b"--url" || a.starts_with(b"--url="))
        .count();
    if given != cli.url.len() {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--url is given both before and after the subcommand: give every --url on one side of it\n",
        )
        .format(&mut command));
    }
    Ok(cli)
}

/// Runs the command against `address`: `run` and `sem run` watch signals
/// themselves; every other command ends on a signal (128 + N) or a closed
/// stdout (0), its future dropped so that nothing is left half done.
async fn dispatch(cli: Cli, address: cmd::Address) -> ExitCode {
    let mut signals = match Signals::watch() {
        Ok(s) => s,
        Err(e) => {
            output::error(&format!("cannot watch signals: {e}"));
            return Exit::Failure.into();
        }
    };
    // The command's client, once connected.
    let connected = OnceLock::new();
    let result = match &cli.command {
        Command::Run(args) => cmd::run::lease(&cli, &address, args, &mut signals, &connected).await,
        Command::Sem(SemCommand::Run(args)) => {
            cmd::run::semaphore(&cli, &address, args, &mut signals, &connected).await
        }
        command => {
            let work = async {
                tokio::select! {
                    result = one(&cli, &address, command, &connected) => result,
                    () = output::closed() => Ok(Exit::Success.into()),
                }
            };
            match signals.unless(work).await {
                Ok(result) => result,
                Err(sig) => Ok(Exit::Signal(sig).into()),
            }
        }
    };
    // However the command ended (done, a signal, stdout closed), what its
    // client still releases in the background goes out before it exits;
    // unless a signal (a second Ctrl-C) says not to wait.
    if let Some(client) = connected.get() {
        tokio::select! {
            () = cmd::settle(client) => {}
            _ = signals.recv() => {}
        }
    }
    match result {
        Ok(code) => code,
        Err(e) => fail(&e, &address),
    }
}

/// Every command but `run` and `sem run`.
/// `connected` keeps its client, for `dispatch` to settle.
async fn one(
    cli: &Cli,
    address: &cmd::Address,
    command: &Command,
    connected: &OnceLock<leasehold::Client>,
) -> leasehold::Result<ExitCode> {
    let connect = || cmd::connect_kept(cli, address, connected);
    match command {
        Command::Demo(args) => cmd::demo::run(cli, address, args).await,
        Command::Bench(args) => cmd::bench::run(cli, address, args).await,
        Command::Acquire(args) => cmd::tokens::acquire(cli, &connect().await?, args).await,
        Command::Extend(args) => cmd::tokens::extend(cli, &connect().await?, args).await,
        Command::Release(args) => cmd::tokens::release(cli, &connect().await?, args).await,
        Command::Status(args) => cmd::inspect::status(cli, &connect().await?, args).await,
        Command::List(args) => cmd::inspect::list(cli, &connect().await?, args).await,
        Command::Top(args) => cmd::top::run(cli, &connect().await?, address, args).await,
        Command::Doctor(args) => cmd::doctor::run(cli, &connect().await?, args).await,
        Command::Run(_) | Command::Sem(_) => unreachable!("dispatch runs these"),
    }
}

/// Prints a library error once, on one line (with a cluster's own hints on
/// a cluster: [`output::failure`]), and picks its exit code.
fn fail(e: &leasehold::Error, address: &cmd::Address) -> ExitCode {
    output::error(&output::failure(e, address.is_cluster()));
    Exit::of(e).into()
}

/// clap's refusal as one line, `leasehold: ...`, exit 2; `--help` and
/// `--version` print as clap made them.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Broken pipe on `--help | head`: nothing to add.
            let _ = e.print();
            ExitCode::from(e.exit_code() as u8)
        }
        _ => {
            output::error(&one_line(&e.render().to_string()));
            Exit::Usage.into()
        }
    }
}

/// Folds clap's several-line message into one line: the message, any tip,
/// and the usage line; the "For more information" footer is dropped.
fn one_line(rendered: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut message = String::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        if let Some(usage) = line.strip_prefix("Usage: ") {
            parts.push(format!("usage: {usage}"));
        } else if line.starts_with("tip: ") {
            parts.push(line.to_owned());
        } else {
            let line = line.strip_prefix("error: ").unwrap_or(line);
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(line);
        }
    }
    parts.insert(0, message);
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_errors_fold_into_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <NAME>\n  <CMD>...\n\nUsage: leasehold run <NAME> -- <CMD>...\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <NAME> <CMD>...; usage: leasehold run <NAME> -- <CMD>..."
        );
        let rendered = "error: unexpected argument '--foo' found\n\n  tip: to pass '--foo' as a value, use '-- --foo'\n\nUsage: leasehold status <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "unexpected argument '--foo' found; tip: to pass '--foo' as a value, use '-- --foo'; usage: leasehold status <NAME>"
        );
    }
}
