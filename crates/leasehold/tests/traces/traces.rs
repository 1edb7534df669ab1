//! Traces: the spans of acquire, wait, renew and release and the events of
//! a loss carry the documented fields, and a token never appears whole.
//!
//! Each test captures into a subscriber of its own, set for its thread, on
//! a current-thread runtime (the client's background work runs there too).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::common::*;

/// A span or event as captured: its name (an event's is its message), its
/// level, its parent span's name, and its fields as text.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    level: Level,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
    event: bool,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Capture {
    /// Spans by id, until the test reads them; events in order.
    spans: Arc<Mutex<Vec<(u64, Seen)>>>,
    events: Arc<Mutex<Vec<Seen>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_owned());
        let seen = Seen {
            name: attrs.metadata().name().into(),
            level: *attrs.metadata().level(),
            parent,
            fields,
            event: false,
        };
        self.spans.lock().unwrap().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        // The latest span with this id (ids are reused once closed).
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let seen = Seen {
            name: fields.get("message").cloned().unwrap_or_default(),
            level: *event.metadata().level(),
            parent: ctx.event_span(event).map(|s| s.name().to_owned()),
            fields,
            event: true,
        };
        self.events.lock().unwrap().push(seen);
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<Seen> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Forgets everything captured so far.
    fn clear(&self) {
        self.spans.lock().unwrap().clear();
        self.events.lock().unwrap().clear();
    }

    fn events(&self) -> Vec<Seen> {
        self.events.lock().unwrap().clone()
    }

    /// Everything captured, as text: for looking for a whole token.
    fn all_text(&self) -> String {
        let spans = self.spans.lock().unwrap();
        let events = self.events.lock().unwrap();
        spans
            .iter()
            .map(|(_, s)| s)
            .chain(events.iter())
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Waits once for `lease`'s name, so that its client is subscribed to the
/// name's wake channel (the subscription lingers a while after the wait).
async fn subscribe(server: &testkit::RedisServer, lease: &leasehold::Lease) {
    let holder = lease.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let lease = lease.clone();
        async move { lease.acquire().await.unwrap() }
    });
    let mut conn = raw(server).await;
    let name = String::from_utf8_lossy(lease.name());
    let channel = format!("leasehold:{{{name}}}:wake");
    eventually(Duration::from_secs(5), "the client to subscribe", || {
        let (mut c, channel) = (conn.clone(), channel.clone());
        async move { numsub(&mut c, &channel).await == 1 }
    })
    .await;
    holder.release().await.unwrap();
    waiter.await.unwrap().release().await.unwrap();
    assert_eq!(
        numsub(&mut conn, &channel).await,
        1,
        "the subscription lingers"
    );
}

/// Runs `test` on a current-thread runtime, capturing what leasehold traces.
fn traced(test: impl AsyncFnOnce(&Capture)) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test(&capture));
}

#[test]
fn acquire_wait_renew_release_spans_carry_their_fields() {
    traced(async |t| {
        let (server, client) = setup().await;
        let lease = client.lease("t:a").ttl(Duration::from_millis(300));
        // A first wait subscribes the client to the name's wake channel,
        // where it lingers. Without it, the waiter below could be the
        // client's first: a release that comes before the client has read
        // its subscription's confirmation cannot tell this client's
        // subscription from another client's waiter, frees the lease for
        // everyone and hands nothing over.
        subscribe(&server, &lease).await;
        t.clear();
        let guard = lease.acquire().await.unwrap();
        let token = *guard.token();
        let prefix = token.prefix().to_owned();
        assert_eq!(prefix.len(), 8);

        let acquire = t.spans("leasehold.acquire");
        assert_eq!(acquire.len(), 1, "{acquire:?}");
        let a = &acquire[0];
        assert_eq!(a.level, Level::DEBUG);
        assert_eq!(a.field("name"), Some("t:a"));
        assert_eq!(a.field("kind"), Some("lease"));
        assert_eq!(a.field("mode"), Some("wait"));
        assert_eq!(a.field("token"), Some(prefix.as_str()));
        assert_eq!(a.field("fence"), Some(guard.fence().to_string().as_str()));
        assert_eq!(a.field("outcome"), Some("acquired"));

        // A renewal every 100 ms, with its lag and outcome.
        eventually(Duration::from_secs(5), "a renewal span", || async {
            t.spans("leasehold.renew")
                .iter()
                .any(|s| s.field("outcome") == Some("ok"))
        })
        .await;
        let r = t.spans("leasehold.renew").remove(0);
        assert_eq!(r.field("token"), Some(prefix.as_str()));
        assert_eq!(r.field("fence"), Some(guard.fence().to_string().as_str()));
        let lag: f64 = r.field("lag_ms").unwrap().parse().unwrap();
        assert!((0.0..1000.0).contains(&lag), "{lag}");

        // A busy try, then a waiter: its wait span is a child of its acquire.
        assert!(lease.try_acquire().await.unwrap_err().is_held());
        let busy = t.spans("leasehold.acquire").remove(1);
        assert_eq!(busy.field("mode"), Some("try"));
        assert_eq!(busy.field("outcome"), Some("busy"));
        assert_eq!(busy.field("fence"), None);
        let waiter = tokio::spawn({
            let lease = lease.clone();
            async move { lease.acquire().await.unwrap() }
        });
        eventually(Duration::from_secs(5), "the waiter to queue", || async {
            lease.local_waiters() == 1
        })
        .await;
        let fence = guard.fence();
        guard.release().await.unwrap();
        let next = waiter.await.unwrap();
        let wait = t.spans("leasehold.wait");
        assert_eq!(wait.len(), 1, "{wait:?}");
        assert_eq!(wait[0].parent.as_deref(), Some("leasehold.acquire"));
        assert_eq!(wait[0].field("name"), Some("t:a"));
        assert_eq!(wait[0].field("kind"), Some("lease"));
        let release = t.spans("leasehold.release");
        assert_eq!(release.len(), 1, "{release:?}");
        assert_eq!(release[0].field("token"), Some(prefix.as_str()));
        assert_eq!(release[0].field("fence"), Some(fence.to_string().as_str()));
        assert_eq!(release[0].field("outcome"), Some("released"));
        // The release handed it over, inside the release span.
        let handed: Vec<_> = t
            .events()
            .into_iter()
            .filter(|e| e.name.contains("handed over"))
            .collect();
        assert_eq!(handed.len(), 1, "{:?}", t.events());
        assert_eq!(handed[0].parent.as_deref(), Some("leasehold.release"));
        assert_eq!(
            handed[0].field("to"),
            Some(next.token().prefix()),
            "{handed:?}"
        );

        let tokens = [token, *next.token()];
        next.release().await.unwrap();
        let text = t.all_text();
        for token in tokens {
            assert!(
                !text.contains(token.as_str()),
                "a whole token was traced: {text}"
            );
            assert!(text.contains(token.prefix()));
        }
    });
}

#[test]
fn a_loss_is_a_warning_with_its_cause_and_no_whole_token() {
    traced(async |t| {
        let (server, client) = setup().await;
        let mut conn = raw(&server).await;
        let guard = client
            .lease("t:lost")
            .ttl(Duration::from_millis(300))
            .acquire()
            .await
            .unwrap();
        let () = redis::cmd("DEL")
            .arg("t:lost")
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), guard.lost())
            .await
            .expect("the loss is seen within two renewal periods");
        let lost: Vec<_> = t
            .events()
            .into_iter()
            .filter(|e| e.event && e.name.contains("lease lost"))
            .collect();
        assert_eq!(lost.len(), 1, "{:?}", t.events());
        let e = &lost[0];
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.field("name"), Some("t:lost"));
        assert_eq!(e.field("kind"), Some("lease"));
        assert_eq!(e.field("cause"), Some("gone"));
        assert_eq!(e.field("token"), Some(guard.token().prefix()));
        assert_eq!(e.field("fence"), Some(guard.fence().to_string().as_str()));
        // Seen by a renewal, within its span.
        assert_eq!(e.parent.as_deref(), Some("leasehold.renew"));
        let renew = t.spans("leasehold.renew");
        assert_eq!(renew.last().unwrap().field("outcome"), Some("lost"));

        let token = *guard.token();
        assert!(guard.release().await.unwrap_err().is_lost());
        let release = t.spans("leasehold.release");
        assert_eq!(release.last().unwrap().field("outcome"), Some("lost"));
        let text = t.all_text();
        assert!(!text.contains(token.as_str()), "{text}");
    });
}

#[test]
fn each_kind_is_named_in_its_spans() {
    traced(async |t| {
        let (_server, client) = setup().await;
        client
            .semaphore("t:sem", 2)
            .try_acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        let rw = client.rwlock("t:rw");
        rw.read().acquire().await.unwrap().release().await.unwrap();
        rw.write().acquire().await.unwrap().release().await.unwrap();
        let fair = client.lease("t:fair").fair(true);
        fair.acquire().await.unwrap().release().await.unwrap();
        let kinds: Vec<_> = t
            .spans("leasehold.acquire")
            .iter()
            .map(|s| s.field("kind").unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            ["semaphore", "rwlock-read", "rwlock-write", "fair"],
            "{kinds:?}"
        );
        let released: Vec<_> = t
            .spans("leasehold.release")
            .iter()
            .map(|s| s.field("outcome").unwrap().to_owned())
            .collect();
        assert_eq!(released, ["released"; 4]);
    });
}

/// Dropping a guard releases it in the background, in a span of its own.
#[test]
fn a_dropped_guard_is_released_in_a_span() {
    traced(async |t| {
        let (server, client) = setup().await;
        let mut conn = raw(&server).await;
        drop(client.lease("t:dropped").acquire().await.unwrap());
        eventually(Duration::from_secs(5), "the background release", || async {
            t.spans("leasehold.release")
                .iter()
                .any(|s| s.field("outcome") == Some("released"))
        })
        .await;
        assert_eq!(get(&mut conn, "t:dropped").await, None);
    });
}
