//! `top`, in a real terminal: tmux runs it in a detached session of a fixed
//! size; the test sends keys and reads the screen with `capture-pane`.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// A tmux server of its own (`-L`), with one detached session of 120x30,
/// killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `shell` (an `sh -c` line) in a new 120x30 session.
    fn start(shell: &str) -> Tmux {
        let socket = format!("leasehold-top-{}", std::process::id());
        let tmux = Tmux { socket };
        let o = tmux
            .command()
            .args(["new-session", "-d", "-s", "top", "-x", "120", "-y", "30"])
            .arg(shell)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): install it with `apt-get install tmux` (or `cargo xtask setup`)")
            });
        assert!(o.status.success(), "tmux: {}", stderr(&o));
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    /// The pane's text, as a person would read it.
    fn screen(&self) -> String {
        let o = self
            .command()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        assert!(o.status.success(), "capture-pane: {}", stderr(&o));
        stdout(&o)
    }

    /// Waits until the screen satisfies `cond`; returns it. Fails after
    /// `within` with the last screen.
    fn wait_for(&self, within: Duration, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends keys: tmux key names (`Enter`, `Escape`, `Down`) or, with
    /// `literal`, text typed as it is.
    fn keys(&self, keys: &str, literal: bool) {
        let mut cmd = self.command();
        cmd.args(["send-keys", "-t", "top"]);
        if literal {
            cmd.arg("-l");
        }
        let o = cmd.arg(keys).output().unwrap();
        assert!(o.status.success(), "send-keys {keys}: {}", stderr(&o));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// The row of `name` on the screen, as its cells.
fn row<'a>(screen: &'a str, name: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
}

/// The names but `top/busy` (whose fence keeps rising).
fn without_busy(screen: &str) -> Vec<&str> {
    names(screen)
        .into_iter()
        .filter(|n| *n != "top/busy")
        .collect()
}

/// The names of the table's rows, top to bottom.
fn names(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("top/"))
        .collect()
}

#[test]
fn top_shows_live_leases_filters_sorts_and_quits_cleanly() {
    let mut server = RedisServer::start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt
        .block_on(leasehold::Client::connect(&server.url()))
        .unwrap();
    let ttl = 40 * SECOND;
    let plain = rt
        .block_on(client.lease("top/plain").ttl(ttl).acquire())
        .unwrap();
    let sem = client.semaphore("top/pool", 3).ttl(ttl);
    let p1 = rt.block_on(sem.acquire()).unwrap();
    let p2 = rt.block_on(sem.acquire()).unwrap();
    let fair = client.lease("top/fair").fair(true).ttl(ttl);
    let fair_holder = rt.block_on(fair.acquire()).unwrap();
    // A fair waiter, queued in Redis behind the holder.
    let waiter = rt.spawn({
        let fair = fair.clone().wait(60 * SECOND);
        async move { fair.acquire().await.map(|g| g.fence()) }
    });
    rt.block_on(async {
        let deadline = Instant::now() + 10 * SECOND;
        while client.status("top/fair").await.unwrap().fair_waiters != Some(1) {
            assert!(Instant::now() < deadline, "the fair waiter never queued");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // A name taken over and over, for the rate.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = rt.spawn({
        let lease = client.lease("top/busy").ttl(10 * SECOND);
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let g = lease.acquire().await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
                g.release().await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    // Not matched by the pattern.
    let _other = rt.block_on(client.lease("elsewhere").acquire()).unwrap();

    let bin = env!("CARGO_BIN_EXE_leasehold");
    let shell = format!(
        "saved=$(stty -g); '{bin}' --url '{}' top 'top/*' --interval 500ms 2>&1; rc=$?; \
         if [ \"$(stty -g)\" = \"$saved\" ]; then echo terminal restored; fi; \
         echo top exited with $rc; sleep 600",
        server.url()
    );
    let tmux = Tmux::start(&shell);

    // Every name, with its kind, holder and fence.
    let within = 15 * SECOND;
    let screen = tmux.wait_for(within, "the four names", |s| {
        names(s).len() == 4 && row(s, "top/fair").is_some_and(|r| r[1] == "fair")
    });
    let r = row(&screen, "top/plain").unwrap();
    assert_eq!(r[1], "lease", "{screen}");
    assert_eq!(r[2], format!("{}…", plain.token().prefix()), "{screen}");
    assert!(r[3].ends_with('s'), "a TTL in seconds: {screen}");
    assert_eq!(r[4], plain.fence().to_string(), "{screen}");
    let r = row(&screen, "top/pool").unwrap();
    assert_eq!(r[1..4], ["semaphore", "2/3", "permits"], "{screen}");
    assert_eq!(r[5], p1.fence().max(p2.fence()).to_string(), "{screen}");
    let r = row(&screen, "top/fair").unwrap();
    assert_eq!(
        r[2],
        format!("{}…", fair_holder.token().prefix()),
        "{screen}"
    );
    assert_eq!(r[4], fair_holder.fence().to_string(), "{screen}");
    assert_eq!(r[5], "1", "one fair waiter queued: {screen}");
    assert!(!screen.contains("elsewhere"), "{screen}");
    assert!(screen.contains("4 names"), "{screen}");
    assert!(screen.contains("pattern `top/*`"), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    // Sorted by name at first.
    assert_eq!(
        names(&screen),
        ["top/busy", "top/fair", "top/plain", "top/pool"],
        "{screen}"
    );

    // The TTL counts down between refreshes, and the busy name's holders
    // come and go: a rate above zero.
    let ttl_of = |s: &str| {
        let cell = row(s, "top/plain").unwrap()[3].to_string();
        cell.trim_end_matches('s').parse::<f64>().unwrap()
    };
    let first = ttl_of(&screen);
    tmux.wait_for(within, "the TTL to count down", |s| ttl_of(s) < first);
    tmux.wait_for(within, "a rate for top/busy", |s| {
        row(s, "top/busy").is_some_and(|r| r.last().and_then(|x| x.parse::<f64>().ok()) > Some(0.0))
    });

    // Filter: only the names with `poo` in them.
    tmux.keys("/", false);
    tmux.keys("poo", true);
    // (Typed keys come one by one: wait for the last.)
    tmux.wait_for(within, "the filter", |s| {
        s.contains("filter: poo") && names(s) == ["top/pool"]
    });
    tmux.keys("Enter", false);
    let screen = tmux.wait_for(within, "the filter kept", |s| {
        s.contains("(1 match `poo`)") && !s.contains("filter: poo")
    });
    assert_eq!(names(&screen), ["top/pool"], "{screen}");
    // Esc while filtering clears it.
    tmux.keys("/", false);
    tmux.keys("Escape", false);
    tmux.wait_for(within, "all names again", |s| names(s).len() == 4);

    // Sort by fence, largest first; again: smallest first. (top/busy's
    // fence keeps rising: it is left out of the comparison.)
    let by_fence = |descending: bool| {
        let mut v = vec![
            ("top/plain", plain.fence()),
            ("top/pool", p1.fence().max(p2.fence())),
            ("top/fair", fair_holder.fence()),
        ];
        v.sort_by_key(|(_, f)| *f);
        if descending {
            v.reverse();
        }
        v.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    tmux.keys("f", false);
    let screen = tmux.wait_for(within, "sorted by fence", |s| s.contains("FENCE▼"));
    assert_eq!(without_busy(&screen), by_fence(true), "{screen}");
    assert!(screen.contains("sorted by fence"), "{screen}");
    tmux.keys("f", false);
    let screen = tmux.wait_for(within, "sorted by fence, reversed", |s| {
        s.contains("FENCE▲")
    });
    assert_eq!(without_busy(&screen), by_fence(false), "{screen}");
    // The busy name was taken last: the largest fence, at the bottom.
    assert_eq!(names(&screen).last(), Some(&"top/busy"), "{screen}");

    // The help, and any key closes it.
    tmux.keys("?", false);
    tmux.wait_for(within, "the help", |s| {
        s.contains("ACQ/s: new holders seen per second")
    });
    tmux.keys("x", false);
    tmux.wait_for(within, "the help closed", |s| {
        !s.contains("ACQ/s: new holders")
    });

    // A released lease goes: its holder and TTL are gone at the next refresh.
    let prefix = plain.token().prefix().to_string();
    let plain_fence = plain.fence();
    rt.block_on(plain.release()).unwrap();
    let screen = tmux.wait_for(within, "top/plain free", |s| {
        row(s, "top/plain").is_some_and(|r| r[2] == "-" && r[3] == "-")
    });
    assert!(!screen.contains(&prefix), "{screen}");
    // Its fence stays: the name is known, free.
    assert_eq!(
        row(&screen, "top/plain").unwrap()[4],
        plain_fence.to_string()
    );

    // The server goes away: the footer says so, the last rows stay.
    stop.store(true, Ordering::Relaxed);
    rt.block_on(busy).unwrap();
    let fair_fence = fair_holder.fence();
    drop(fair_holder);
    // The waiter gets its turn once the holder's background release ran.
    let next = rt.block_on(waiter).unwrap().unwrap();
    assert!(next > fair_fence);
    server.kill();
    let screen = tmux.wait_for(within, "the failure in the footer", |s| {
        s.contains("refresh failed")
    });
    assert!(row(&screen, "top/pool").is_some(), "{screen}");

    // q quits: exit 0, the terminal as it was.
    tmux.keys("q", false);
    let screen = tmux.wait_for(within, "top to exit", |s| s.contains("top exited with"));
    assert!(screen.contains("top exited with 0"), "{screen}");
    assert!(screen.contains("terminal restored"), "{screen}");
    assert!(
        !screen.contains("ACQ/s"),
        "the alternate screen is gone: {screen}"
    );
    assert!(!screen.contains("panicked"), "{screen}");
}

#[test]
fn top_json_prints_one_snapshot_with_the_rate() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "snap/a", "--ttl", "40s"]));
    let token = stdout(&o).split_whitespace().next().unwrap().to_string();
    let o =
        output(leasehold(Some(&server)).args(["top", "snap/*", "--json", "--interval", "300ms"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{}", stdout(&o));
    assert_eq!(rows[0]["type"], "top");
    let d = &rows[0]["data"];
    assert_eq!(d["name"], "snap/a");
    assert_eq!(d["kind"], "lease");
    assert_eq!(d["holder"], &token[..8]);
    // Held by the same token at both reads: no new holder.
    assert_eq!(d["new_holders"], 0);
    assert_eq!(d["acquisitions_per_s"], 0.0);
    assert!(d["over_ms"].as_u64().unwrap() >= 300, "{d}");
}

#[test]
fn top_without_a_terminal_says_so() {
    let server = RedisServer::start().unwrap();
    let err = one_line_error(&["top"], Some(&server), 2);
    assert!(err.contains("--json"), "{err}");
    let err = one_line_error(&["top", "--interval", "10ms"], Some(&server), 2);
    assert!(err.contains("at least 250ms"), "{err}");
}

#[test]
fn top_json_over_redlock_shows_the_masters_view() {
    let servers = RedisServer::start_many(3).unwrap();
    let mut cmd = leasehold(None);
    for s in &servers {
        cmd.arg("--url").arg(s.url());
    }
    let o = output(cmd.args(["acquire", "rl/a", "--ttl", "40s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).split_whitespace().next().unwrap().to_string();
    let mut cmd = leasehold(None);
    for s in &servers {
        cmd.arg("--url").arg(s.url());
    }
    let o = output(cmd.args(["top", "rl/*", "--json", "--interval", "250ms"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["type"], "top");
    assert_eq!(v["data"]["holder"], &token[..8]);
    assert_eq!(v["data"]["masters"]["total"], 3);
    assert_eq!(v["data"]["masters"]["answered"], 3);
}

#[test]
fn top_json_on_a_cluster_reads_every_master() {
    let cluster = testkit::RedisCluster::start_with(testkit::ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    })
    .expect("start a 3-master redis cluster");
    let seed = cluster.seeds()[0].clone();
    let cli = || {
        let mut cmd = leasehold(None);
        cmd.args(["--cluster", "--url", &seed, "--connect-timeout", "20s"]);
        cmd
    };
    // Six names: their slots fall on every master.
    let names = ["jobs/a", "jobs/b", "jobs/c", "jobs/d", "jobs/e", "jobs/f"];
    let mut tokens = Vec::new();
    for name in names {
        let o = output(cli().args(["acquire", name, "--ttl", "40s"]));
        assert!(o.status.success(), "{}", stderr(&o));
        tokens.push(stdout(&o).split_whitespace().next().unwrap()[..8].to_string());
    }
    let o = output(cli().args(["top", "jobs/*", "--json", "--interval", "250ms"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<(String, String)> = stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["type"], "top", "{v}");
            let d = &v["data"];
            (
                d["name"].as_str().unwrap().into(),
                d["holder"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = names
        .iter()
        .zip(&tokens)
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    assert_eq!(rows, want);
}
