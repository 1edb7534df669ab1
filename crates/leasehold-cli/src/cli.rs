//! The command line, as clap parses it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration;
use crate::name::Name;

// Values are checked as clap parses them, before anything connects to
// Redis: a bad input is exit 2 with or without a reachable server.

fn dur(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// A lease's ttl: a duration within the library's [`leasehold::MIN_TTL`] to
/// [`leasehold::MAX_TTL`].
fn ttl(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    if d < leasehold::MIN_TTL {
        Err(format!(
            "`{s}` is too short for a ttl: at least 10ms, so that the lease outlives a round trip to Redis"
        ))
    } else if d > leasehold::MAX_TTL {
        Err(format!(
            "`{s}` is too long for a ttl: at most 365 days (a held lease is renewed; a long ttl only delays recovery from a crashed holder)"
        ))
    } else {
        Ok(d)
    }
}

/// A semaphore's limit: at least 1.
fn limit(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("0 permits would let nobody in: give a limit of at least 1".into()),
        Ok(k) => Ok(k),
        Err(_) => Err(format!(
            "`{s}` is not a whole number of permits (1 or more)"
        )),
    }
}

/// Distributed leases on Redis: run a command on one host at a time, with a
/// fencing token, self-renewal and a clean stop when the lease is lost.
#[derive(Parser, Debug)]
#[command(
    name = "leasehold",
    version,
    about,
    after_long_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// Redis URL [env: LEASEHOLD_URL, then REDIS_URL; default redis://127.0.0.1:6379].
    ///
    /// redis://[user:password@]host[:port][/db], rediss://... for TLS,
    /// unix:///path/to/redis.sock, or
    /// redis+sentinel://host:port[,host:port...]/SERVICE through Redis
    /// Sentinel (see --sentinel). With --cluster, give it once per seed
    /// node (LEASEHOLD_URL: the URLs separated by commas; REDIS_URL is
    /// always one URL). Several URLs without --cluster are independent
    /// masters (Redlock): a lease holds when a majority granted it.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Vec<String>,

    /// The URLs are seeds of one Redis Cluster [env: LEASEHOLD_CLUSTER=1 (or true, yes)].
    ///
    /// The rest of the cluster is discovered from them, and followed as
    /// slots move and masters fail over; one reachable seed is enough.
    /// A name's keys share one hash slot, so every command works there as
    /// on one server. `demo` and `bench` without a URL start a private
    /// 3-master cluster.
    #[arg(long, global = true)]
    pub cluster: bool,

    /// The --url values are Redis Sentinels; NAME is the service they monitor [env: LEASEHOLD_SENTINEL].
    ///
    /// The master is asked of the sentinels and followed across failovers:
    /// `--sentinel orders --url redis://s1:26379 --url redis://s2:26379` is
    /// `--url redis+sentinel://s1:26379,s2:26379/orders`. A user and
    /// password in the first URL are the master's.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "LEASEHOLD_SENTINEL",
        conflicts_with = "cluster"
    )]
    pub sentinel: Option<String>,

    /// Redlock: how long one master may take to answer before it counts as failed.
    ///
    /// Small against the ttl (at most a tenth of it is used), so that a
    /// frozen master costs little while a majority answers, and an acquire
    /// that cannot reach a majority fails quickly.
    #[arg(long, global = true, value_name = "D", default_value = "100ms", value_parser = dur)]
    pub node_timeout: Duration,

    /// Print JSON Lines on stdout: one object per line, `{"type": ..., "data": {...}}`.
    #[arg(long, global = true)]
    pub json: bool,

    /// How messages and logs go to stderr: text (for people) or json (JSON Lines, for machines).
    ///
    /// json: one object per line with `timestamp`, `level`, `target` and
    /// `message`, and the fields of the library's events (`name`, `kind`,
    /// `fence`, `token` (a prefix), `cause`, ...). LEASEHOLD_LOG (else
    /// RUST_LOG) picks the library's events, in tracing's filter syntax
    /// (`warn`, `leasehold=debug`); by default `warn` in json, none in text.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        env = "LEASEHOLD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// How long to try to reach Redis.
    #[arg(long, global = true, value_name = "D", default_value = "5s", value_parser = dur)]
    pub connect_timeout: Duration,

    /// PEM file of the CA to trust for rediss:// URLs, instead of the system's.
    ///
    /// For servers whose certificates a private CA signed: the one server,
    /// every Redlock master, or every node of a --cluster.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM file of a client certificate, for a rediss:// server that requires one.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Hold a lease only once N replicas of the master acknowledged it (Redis's WAIT).
    ///
    /// Redis replicates asynchronously: a master that fails over right after
    /// granting a lease may be replaced by a replica that never saw it, and
    /// a second holder could then take it. With --replicas, each acquire
    /// waits up to --replicas-timeout for N replicas; when fewer answer, the
    /// lease is given back and the command exits 5. Not with Redlock.
    #[arg(long, global = true, value_name = "N")]
    pub replicas: Option<u32>,

    /// How long --replicas waits for the replicas' acknowledgement.
    #[arg(long, global = true, value_name = "D", default_value = "1s", value_parser = dur, requires = "replicas")]
    pub replicas_timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `leasehold: message`, one line each.
    Text,
    /// JSON Lines: `{"timestamp", "level", "target", "message", ...}`.
    Json,
}

const AFTER_HELP: &str = "\
Examples:
  leasehold run nightly-report --ttl 1m -- ./report.sh
  leasehold run deploy --no-wait -- make deploy      # skip if another host deploys
  leasehold sem run upstream --limit 4 -- ./fetch.sh  # at most 4 at once, across hosts
  leasehold run printer --fair --wait 5m -- ./print.sh  # take turns in arrival order
  read token fence < <(leasehold acquire deploy --ttl 5m)
  leasehold release deploy \"$token\"
  leasehold status deploy
  leasehold list 'jobs/*' --json
  leasehold top 'jobs/*'                              # live; q quits, ? for keys
  leasehold --cluster --url redis://10.0.0.1:7000 --url redis://10.0.0.2:7000 \\
      run nightly-report -- ./report.sh   # on a Redis Cluster
  leasehold --url redis://a:6379 --url redis://b:6379 --url redis://c:6379 \\
      run nightly-report -- ./report.sh   # Redlock over 3 independent masters
  leasehold --url redis+sentinel://s1:26379,s2:26379,s3:26379/orders \
      run nightly-report -- ./report.sh   # the master of Sentinel service `orders`

Redis Cluster: --cluster says the --url values are seeds of one cluster (one that
answers is enough; give more in case one is down). LEASEHOLD_URL may hold several
URLs separated by commas; LEASEHOLD_CLUSTER=1 (or true, yes) is --cluster's
environment form:
  LEASEHOLD_URL=redis://10.0.0.1:7000,redis://10.0.0.2:7000 LEASEHOLD_CLUSTER=1 \\
      leasehold list 'jobs/*'
Redlock: several URLs without --cluster are independent masters (3 or 5 are
usual); each lease is held when a majority of them granted it, and survives the
loss of a minority. Plain leases and semaphores only: --fair, rwlocks and data
commands exit 2 there. --node-timeout bounds each master's answer.

JSON output (--json): only JSON Lines on stdout, one object per line,
{\"type\": T, \"data\": {...}}; messages for people stay on stderr.
Durations are in milliseconds; a null holder or remaining_ms means none:
  acquired  {name, token, fence, ttl_ms}           acquire
  extended  {name, ttl_ms}                         extend
  released  {name}                                 release
  lease     {name, kind, held, holder, remaining_ms, fence, waiting_clients,   status, list
             holders: [{token, remaining_ms, role}], limit (semaphore),
             writer_waiting (rwlock), queued (fair)}
  run       {name, fence, exit_code, command_exit_code, lost}   run, sem run (at the end)
  top       {lease's fields, new_holders, over_ms, acquisitions_per_s}   top
  check     {check, server, verdict, found, fix}   doctor (verdict: ok, warn, fail; fix null when ok)
  doctor    {ok, warn, fail, exit_code}            doctor (at the end)
  demo and bench print their own rows (see their --help).
  A command under `run` writes to the same stdout: its output comes first, as it wrote it.
  `name` is the name whole, never cut or escaped. A name whose bytes are not UTF-8
  (its `name` then has U+FFFD for them) or hold a NUL byte also has `name_hex`, its
  exact bytes as hex digits: give it back with --name-hex, e.g.
  leasehold release --name-hex \"$name_hex\" \"$token\"

Exit codes:
  0      success; a closed stdout (| head) is success too
  N      run / sem run: the command's own exit status (128 + signal if a signal killed
         it; 127 if it was not found, 126 if it could not be started)
  1      other failure; doctor: a check failed
  2      bad usage or bad input (bad duration, empty name, zero ttl, bad URL, bad token),
         or what the deployment does not offer (--fair over Redlock)
  3      lease not obtained: held by someone else (--no-wait), or not free within --wait;
         the command of run never started
  4      lease lost while the command ran, or about to run out with renewals
         failing (the command was stopped); or the token does not hold the lease
         (extend, release)
  5      Redis unreachable, or it refused (wrong password, read-only replica, out of
         memory); over Redlock: too few masters answered
  128+N  leasehold got signal N and stopped: 130 on SIGINT (Ctrl-C), 143 on SIGTERM,
         129 on SIGHUP; for run only before the command started (then signals go on to it)
  137    run was killed (kill -9): its shell reports it; on Linux the command is stopped
         before the lease's validity runs out (see run --help)
Errors are one line on stderr: `leasehold: what went wrong; what to do`.";

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command while holding a lease, across machines (like flock(1)).
    ///
    /// Takes the lease (waiting up to --wait), runs the command with
    /// LEASEHOLD_NAME, LEASEHOLD_FENCE and LEASEHOLD_TTL_MS in its
    /// environment, renews the lease every ttl/3 while it runs, and releases
    /// it when the command exits. leasehold exits with the command's status.
    /// Exit 3 when the lease is not obtained: the command never starts.
    ///
    /// The command runs in a process group of its own, and leasehold
    /// signals the whole group, so that the processes the command starts
    /// (`sh -c 'work & wait'`) stop with it. SIGINT, SIGTERM and SIGHUP to
    /// leasehold are passed on to the group (before the command starts,
    /// they stop leasehold: 128 + N); in the foreground of a terminal the
    /// command's group gets the terminal, so Ctrl-C reaches it directly
    /// (Ctrl-Z stops the command, not leasehold, which keeps renewing).
    /// Processes the command leaves behind in its group when it exits are
    /// stopped before the lease is released.
    ///
    /// If the lease is lost while the command runs, its group gets SIGTERM,
    /// then SIGKILL after --grace, and leasehold exits with 4. If renewals
    /// keep failing, the group gets SIGTERM while the lease is still valid
    /// and SIGKILL before its validity runs out (--grace is cut short to
    /// fit), and leasehold exits with 4 too.
    ///
    /// If leasehold itself dies without cleaning up (kill -9, the OOM
    /// killer), nobody renews the lease and another host may take it after
    /// its ttl. On Linux the command is stopped before then: its first
    /// process gets SIGKILL at once (a parent-death signal), and a small
    /// watchdog (leasehold started again in a hidden mode, which learns of
    /// the death when a pipe only leasehold held closes) sends the group
    /// SIGTERM, then SIGKILL within --grace and before the lease's validity
    /// runs out. On other systems the group is still signalled as a group
    /// on a lost lease, but leasehold's own death is not covered: the
    /// command runs on.
    ///
    /// Example: leasehold run nightly-report --ttl 1m --wait 10s -- ./report.sh
    Run(RunArgs),

    /// Take a lease for a shell script and print `TOKEN FENCE`.
    ///
    /// The lease stays held for --ttl (nobody renews it): extend it with
    /// `leasehold extend`, give it back with `leasehold release`. The token
    /// is the secret that proves ownership: keep it to yourself.
    ///
    /// Example: read token fence < <(leasehold acquire deploy --ttl 5m)
    Acquire(AcquireArgs),

    /// Reset a lease's TTL, if TOKEN still holds it (else exit 4).
    ///
    /// Example: leasehold extend deploy "$token" --ttl 5m
    Extend(ExtendArgs),

    /// Release a lease, if TOKEN still holds it (else exit 4, and the lease is left alone).
    ///
    /// With --force --reason WHY instead of TOKEN: end the lease whoever
    /// holds it, for a holder that is gone for good (a dead host). The
    /// fence moves on, so the old holder's fenced writes are refused, and
    /// its guard or `leasehold run` sees the lease lost at its next
    /// renewal. WHY is logged and published on the channel
    /// `leasehold:forced`. Exit 4 when nobody held it (or it changed hands
    /// meanwhile: the new holder is left alone). Plain and fair leases only.
    ///
    /// Example: leasehold release deploy "$token"
    /// Example: leasehold release --force deploy --reason "web-3 is dead"
    Release(ReleaseArgs),

    /// Show a name: kind (lease, semaphore, rwlock, fair), held or free, holders (token prefix, TTL), fence, waiting clients.
    ///
    /// A semaphore's permits and a read-write lock's writer or readers are
    /// listed one per line under its row. kind is `fair` while fair waiters
    /// are queued; a semaphore or rwlock that nobody holds shows as a free lease.
    ///
    /// Example: leasehold status deploy --json
    Status(StatusArgs),

    /// List leases, semaphores and rwlocks whose names match a glob (walks the keys with SCAN, never KEYS).
    ///
    /// HOLDER shows a lease's token prefix, a semaphore's permits in use
    /// (`3/4`), a read-write lock's writer (`w`) or readers (`r×2`).
    ///
    /// Only names leasehold has taken at least once are known (by their
    /// fencing counter).
    ///
    /// Example: leasehold list 'jobs/*'
    List(ListArgs),

    /// A live view of the names in use: kind, holder, TTL counting down, fence, waiters, acquisitions per second.
    ///
    /// Reads the names matching PATTERN every --interval (one SCAN walk,
    /// never KEYS, then 12 read-only commands per name, pipelined 64 names
    /// per round trip: at the default 2s, 6 commands per second per name)
    /// and redraws four times a second, the TTLs counting down in between.
    /// Works on one server, a cluster (--cluster) and Redlock (several --url).
    ///
    /// Keys: q, Esc or Ctrl-C quit; s sorts by the next column, n t f w r by
    /// name, TTL, fence, waiters, rate (again: reverse); / filters by a part
    /// of the name (Enter keeps it, Esc clears it); ↑ ↓ PgUp PgDn Home End
    /// scroll; ? shows the help.
    ///
    /// WAITERS: the tasks queued for a fair lease, else the clients waiting
    /// on the name's wake channel. ACQ/s: new holders seen per second (tokens
    /// holding the name at a refresh that did not at the one before, over the
    /// last 5 refreshes): a lower bound, since a holder that came and went
    /// between two refreshes is not seen; the fence cannot count
    /// acquisitions, as it jumps with the server's clock.
    ///
    /// With --json, no screen: reads twice, --interval apart, and prints one
    /// `top` record per name: the `lease` record's fields with new_holders,
    /// over_ms and acquisitions_per_s. Needs a terminal otherwise (exit 2).
    ///
    /// Example: leasehold top 'jobs/*'; leasehold top --json --interval 1s
    Top(TopArgs),
    /// Check a deployment and print what to fix: version, persistence, eviction, cluster, ACL, clock.
    ///
    /// For each server (each master of a cluster, each Redlock master): the
    /// Redis version (6.2 or later; 7 on a cluster) and role, persistence
    /// (AOF or RDB), the eviction policy (noeviction), the cluster's state
    /// and slots (--cluster), and the clock against this host's (TIME, half
    /// the round trip taken off). Then the ACL permissions: every command of
    /// the README's "Redis ACL" rule is sent on the keys of --name (a name
    /// nobody uses; it is refused, untouched, if in use), and a lease, a
    /// fair lease, a semaphore and a read-write lock are taken and given
    /// back there; every key written is deleted. Persistence and eviction
    /// need CONFIG GET: run it as an admin user to check them.
    ///
    /// Each check prints `ok`, `warn` or `fail` and, unless ok, a one-line
    /// fix. Exit 0 when nothing failed (warnings included), 1 when a check
    /// failed, 5 when Redis cannot be reached at all. With --json, one
    /// `check` record per check, then a `doctor` summary.
    ///
    /// Example: leasehold --url redis://app:secret@10.0.0.7:6379 doctor --name jobs/doctor
    Doctor(DoctorArgs),

    /// Semaphores: at most K holders at once, across machines.
    #[command(subcommand)]
    Sem(SemCommand),

    /// The tutorials' scenarios, live: flash sale four ways, one job on many
    /// hosts, a cache stampede, a paused holder stopped by fencing.
    ///
    /// Without --url (or LEASEHOLD_URL / REDIS_URL), starts a private,
    /// throwaway redis-server and stops it at the end; with --cluster and no
    /// URL, a private 3-master Redis Cluster (on loopback, no replicas), and
    /// the scenarios run on it through the cluster client.
    ///
    /// Example: leasehold demo paused-holder; leasehold demo --cluster
    Demo(DemoArgs),

    /// The benchmark workloads W1-W6, beside the floor measured in the same
    /// run (W0), and R1-R4 (Redlock over 5 masters); BENCH.md at the
    /// repository's root describes them, the floors and the targets.
    ///
    /// Without --url, starts a private, throwaway redis-server. W6 runs W2
    /// and W3 on a Redis Cluster beside that server: --cluster-url SEED
    /// (repeatable), or --cluster --url SEED... (then the server is a
    /// private one), else a private 3-master loopback cluster. R1-R4
    /// (`redlock`) run on the masters of several --url (R4 freezes the last
    /// two with SIGSTOP, so they must run on this machine), else on 5
    /// private ones, with --node-timeout. With --json, one row per line:
    /// {"type": "figure", "data": {"workload", "figure", "value", "unit", "limit", "share", ...}}.
    ///
    /// Example: leasehold bench W3 --duration 5s; leasehold bench redlock
    Bench(BenchArgs),
}

/// How long to wait for a lease.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// How long the lease lives unless renewed (a crashed holder blocks others this long at most).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = ttl)]
    pub ttl: Duration,

    /// How long to wait for the lease while someone else holds it.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = dur, conflicts_with = "no_wait")]
    pub wait: Duration,

    /// Do not wait: exit 3 at once if the lease is held.
    #[arg(long)]
    pub no_wait: bool,
}

/// What `run` and `sem run` share: the name, the wait, the turn, the
/// grace and the command.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub name: Name,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Serve waiters in arrival order, across machines.
    ///
    /// Waiters queue in Redis and a release wakes only the waiter whose turn
    /// it is. A waiter that dies keeps its place until its --wait runs out.
    /// Every waiter that should keep its turn must pass --fair.
    #[arg(long)]
    pub fair: bool,

    /// After a lost lease (or permit): how long between SIGTERM and SIGKILL to the command's process group.
    ///
    /// Cut short when the lease is still valid but about to run out (renewals
    /// failing, or leasehold killed): SIGKILL then comes before the validity
    /// ends.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = dur)]
    pub grace: Duration,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `acquire`.
#[derive(Args, Debug)]
pub struct AcquireArgs {
    #[command(flatten)]
    pub name: Name,

    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `extend`.
#[derive(Args, Debug)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub name: Name,
    /// The token `leasehold acquire` printed.
    pub token: String,
    /// The new TTL, from now.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = ttl)]
    pub ttl: Duration,
}

/// `release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub name: Name,
    /// The token `leasehold acquire` printed.
    #[arg(required_unless_present = "force")]
    pub token: Option<String>,
    /// End the lease whoever holds it (needs --reason; no TOKEN).
    #[arg(long, conflicts_with = "token", requires = "reason")]
    pub force: bool,
    /// Why the lease is forced: logged and published on `leasehold:forced`.
    #[arg(long, value_name = "WHY", requires = "force")]
    pub reason: Option<String>,
}

/// `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub name: Name,
}

/// `list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// A glob over names: `*`, `?`, `[abc]`.
    #[arg(default_value = "*")]
    pub pattern: String,
}

/// `top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// A glob over names: `*`, `?`, `[abc]`.
    #[arg(default_value = "*")]
    pub pattern: String,

    /// How often to read the names from Redis (at least 250ms).
    #[arg(long, value_name = "D", default_value = "2s", value_parser = interval)]
    pub interval: Duration,
}

/// `top`'s refresh interval: at least 250ms, so as not to hammer Redis.
fn interval(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    if d < Duration::from_millis(250) {
        Err(format!(
            "`{s}` is too short an interval: at least 250ms (each refresh walks the keys with SCAN)"
        ))
    } else {
        Ok(d)
    }
}

/// `doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The name to probe the ACL permissions with: one nobody uses, in the namespace the user may use [default: leasehold-doctor-<random>].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `sem ...`.
#[derive(Subcommand, Debug)]
pub enum SemCommand {
    /// Run a command while holding one of --limit permits (at most K copies at once, across machines).
    ///
    /// Same environment, signals and exit codes as `leasehold run`. Every
    /// caller of one semaphore must give the same --limit.
    ///
    /// Example: leasehold sem run upstream --limit 4 -- ./fetch.sh
    Run(SemRunArgs),
}

/// `sem run`: `run`'s arguments and the limit.
#[derive(Args, Debug)]
pub struct SemRunArgs {
    /// K: how many may hold a permit at once.
    #[arg(long, value_name = "K", value_parser = limit)]
    pub limit: u32,

    #[command(flatten)]
    pub run: RunArgs,
}

/// `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// One scenario [default: all four].
    pub scenario: Option<leasehold_demo::Scenario>,
}

/// `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run; case does not matter, commas may separate them.
    /// `all` is W1 to W6 (W6 takes about 15 s, its cluster's start
    /// included); `redlock` is R1 to R4 (about 25 s).
    #[arg(default_value = "all", ignore_case = true, value_delimiter = ',')]
    pub workloads: Vec<leasehold_bench::WorkloadArg>,

    /// Length of the timed workloads (W2, W3, R2, R3; each W3 leg of W6)
    /// [default: BENCH.md's 10s; 5s per W6 leg].
    #[arg(long, value_name = "D", value_parser = dur)]
    pub duration: Option<Duration>,

    /// W6: a seed of the Redis Cluster to measure beside the server, once
    /// per seed [default: a private 3-master cluster on loopback].
    #[arg(long, value_name = "URL")]
    pub cluster_url: Vec<String>,

    /// Workers for W2 and R2, W3 and R3 [default: BENCH.md's 64 and 16].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}
