//! Client-side costs that do not touch the network: owner tokens, name
//! checks, building a lease, encoding the script calls (and decoding their
//! replies), making and dropping a guard.
//!
//! `cargo bench -p leasehold --bench client_side`. Building a `Lease` needs
//! a `Client`, which connects: those groups start a throwaway redis-server
//! (testkit) and are skipped, with a message, when none can be started.
//! Nothing in a timed loop talks to Redis: the wire and guard groups go
//! through `leasehold::bench_hooks`, which cut the connection out.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use leasehold::{Lease, Token, bench_hooks};

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    g.bench_function("random", |b| b.iter(Token::random));
    let text = Token::random().as_str().to_owned();
    g.bench_function("parse", |b| b.iter(|| Token::parse(black_box(&text))));
    let upper = text.to_ascii_uppercase();
    g.bench_function("parse_uppercase", |b| {
        b.iter(|| Token::parse(black_box(&upper)))
    });
    let t = Token::random();
    g.bench_function("display_prefix", |b| b.iter(|| black_box(&t).to_string()));
    g.finish();
}

fn names(c: &mut Criterion) {
    let mut g = c.benchmark_group("check_name");
    g.bench_function("short", |b| {
        b.iter(|| Lease::check_name(black_box(b"reports/nightly")))
    });
    let long = vec![b'x'; leasehold::MAX_NAME_LEN];
    g.bench_function("1024_bytes", |b| {
        b.iter(|| Lease::check_name(black_box(&long)))
    });
    // The error path: the message is formatted.
    g.bench_function("empty_error", |b| {
        b.iter(|| Lease::check_name(black_box(b"")))
    });
    g.finish();
}

fn leases(c: &mut Criterion) {
    let server = match testkit::RedisServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lease/*: skipped, no redis-server to build a Client against ({e})");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = rt
        .block_on(leasehold::Client::connect(&server.url()))
        .expect("connect to the throwaway server");
    let _enter = rt.enter();
    let mut g = c.benchmark_group("lease");
    g.bench_function("build", |b| {
        b.iter(|| client.lease(black_box("reports/nightly")))
    });
    g.bench_function("build_with_options", |b| {
        b.iter(|| {
            client
                .lease(black_box("reports/nightly"))
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(10))
                .backoff(Duration::from_millis(50), Duration::from_secs(1))
        })
    });
    g.bench_function("build_hash_tagged", |b| {
        b.iter(|| client.lease(black_box("{user:7}:profile")))
    });
    let lease = client.lease("reports/nightly");
    g.bench_function("clone", |b| b.iter(|| black_box(&lease).clone()));
    g.bench_function("local_waiters", |b| {
        b.iter(|| black_box(&lease).local_waiters())
    });
    g.finish();

    // The script calls as they go on the wire, reply decoding included; the
    // connection is cut out. Each iteration is one `block_on` of a
    // current-thread runtime (about 0.1 µs of the figure).
    let token = leasehold::Token::random();
    let publisher = leasehold::Token::random();
    let mut g = c.benchmark_group("wire");
    g.bench_function("encode_acquire", |b| {
        b.iter(|| rt.block_on(bench_hooks::encode_acquire(black_box(&lease), &token)))
    });
    g.bench_function("encode_release", |b| {
        b.iter(|| {
            rt.block_on(bench_hooks::encode_release(
                black_box(&lease),
                &token,
                &publisher,
            ))
        })
    });
    g.finish();

    // A guard made as an acquire makes it, then detached; with renewal on,
    // it is entered in the client's renewal schedule and taken out again.
    let mut g = c.benchmark_group("guard");
    let fixed = client.lease("reports/nightly").auto_renew(false);
    g.bench_function("new_detach_no_renewal", |b| {
        b.iter(|| rt.block_on(bench_hooks::guard_round(black_box(&fixed), 1)))
    });
    g.bench_function("new_detach_with_renewal", |b| {
        b.iter(|| rt.block_on(bench_hooks::guard_round(black_box(&lease), 1)))
    });
    g.finish();
    drop(client);
    drop(rt);
    drop(server);
}

criterion_group!(benches, tokens, names, leases);
criterion_main!(benches);
