//! A TCP proxy in front of a server that injects network faults on demand.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Error;

/// What the proxy does to the replies (server → client bytes) and requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards both ways at once.
    Pass,
    /// Holds every reply chunk this long before forwarding it.
    Delay(Duration),
    /// Forwards nothing either way and closes nothing, as a network
    /// partition that drops packets silently does.
    Blackhole,
}

/// State shared by the control handle and every forwarding task.
struct Shared {
    /// The current mode; tasks watch it so that healing a blackhole wakes
    /// them at once.
    mode: watch::Sender<Mode>,
    /// Armed by [`FaultProxy::reset_after_next_command`]: the next request
    /// chunk forwarded dooms its connection.
    reset_armed: AtomicBool,
    /// Connections reset so far.
    resets: AtomicU64,
    /// Bumped by [`FaultProxy::reset_all`]; every connection older than the
    /// bump closes.
    generation: watch::Sender<u64>,
}

/// A TCP proxy on a free loopback port, forwarding to `127.0.0.1:target`,
/// that can delay replies, reset a connection between a command and its
/// reply, or blackhole traffic.
///
/// It runs its own single-threaded tokio runtime on a thread of its own, so
/// it works from synchronous tests and from any runtime, and its delays do
/// not depend on how busy the caller's runtime is. Dropping it stops the
/// thread and closes every connection.
///
/// ```
/// use std::time::Duration;
/// let server = testkit::RedisServer::start()?;
/// let proxy = testkit::FaultProxy::start(server.port())?;
/// let url = proxy.url(); // clients connect here instead of server.url()
/// proxy.delay_replies(Duration::from_millis(500)); // replies arrive late
/// proxy.reset_after_next_command(); // executed by Redis, never answered
/// proxy.blackhole(); // silence, connections stay open
/// proxy.heal(); // back to plain forwarding
/// # Ok::<(), testkit::Error>(())
/// ```
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    /// Dropping it ends the runtime thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("mode", &*self.shared.mode.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:target` (e.g. [`RedisServer::port`]),
    /// passing traffic through until told otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if no loopback port can be bound or the thread cannot
    /// start.
    ///
    /// [`RedisServer::port`]: crate::RedisServer::port
    pub fn start(target: u16) -> Result<FaultProxy, Error> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(Mode::Pass),
            reset_armed: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            generation: watch::Sender::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target));
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, target, task_shared) => {}
                    }
                });
                // Dropping the runtime here aborts every connection task,
                // which closes their sockets.
            })?;
        Ok(FaultProxy {
            port,
            shared,
            stop: Some(stop),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The port clients should connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every reply for `delay` before passing it on (requests still go
    /// through at once, so Redis executes them on time). A delay past a
    /// lease's TTL makes a granted lease arrive already expired.
    pub fn delay_replies(&self, delay: Duration) {
        self.shared.mode.send_replace(Mode::Delay(delay));
    }

    /// The next request forwarded, on any connection, is the last thing that
    /// connection does: Redis receives and executes it, then the proxy resets
    /// both sides (TCP RST) before the reply can reach the client. The
    /// client cannot tell whether its command ran.
    pub fn reset_after_next_command(&self) {
        self.shared.reset_armed.store(true, Ordering::SeqCst);
    }

    /// Stops forwarding in both directions without closing anything: bytes
    /// wait in the proxy and the kernel until [`heal`](Self::heal).
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Back to plain forwarding; what a blackhole held back is delivered.
    pub fn heal(&self) {
        self.shared.reset_armed.store(false, Ordering::SeqCst);
        self.shared.mode.send_replace(Mode::Pass);
    }

    /// Resets every open connection now (new ones are accepted as usual).
    pub fn reset_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// How many connections [`reset_after_next_command`] has reset so far.
    ///
    /// [`reset_after_next_command`]: Self::reset_after_next_command
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                // Nothing to forward to (the server is down): refuse by
                // closing, as a dead server would.
                return;
            };
            connection(client, server, shared).await;
        });
    }
}

/// Forwards one client connection until either side closes, the proxy
/// resets it, or the proxy stops.
async fn connection(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    for socket in [&client, &server] {
        let _ = socket.set_nodelay(true);
        // Every close is a reset (RST), as when a middlebox or a crashed
        // peer drops the connection; a zero linger never blocks on close.
        let _ = socket.set_zero_linger();
    }
    let mut generation = shared.generation.subscribe();
    generation.mark_unchanged();
    // Set when a request was forwarded under an armed reset: no reply may go
    // back any more.
    let doomed = Arc::new(AtomicBool::new(false));
    let doom = Arc::new(tokio::sync::Notify::new());
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();

    let requests = {
        let (shared, doomed, doom) = (Arc::clone(&shared), Arc::clone(&doomed), Arc::clone(&doom));
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                pass_when_open(&shared).await;
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pass_when_open(&shared).await;
                let last = shared.reset_armed.swap(false, Ordering::SeqCst);
                if last {
                    doomed.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                if last {
                    // Give Redis a moment to read (and so execute) it before
                    // the reset tears the connection down.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    shared.resets.fetch_add(1, Ordering::SeqCst);
                    doom.notify_one();
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let replies = {
        let (shared, doomed) = (Arc::clone(&shared), Arc::clone(&doomed));
        async move {
            // Read as they come, stamped, and written once old enough: a
            // delay shifts every reply by the same amount instead of piling
            // up one delay per chunk.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let read = async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            let write = async move {
                while let Some((at, bytes)) = rx.recv().await {
                    let mode = *shared.mode.borrow();
                    if let Mode::Delay(d) = mode {
                        tokio::time::sleep_until(at + d).await;
                    }
                    pass_when_open(&shared).await;
                    if doomed.load(Ordering::SeqCst) {
                        // The reply to the doomed request (or a later one)
                        // never reaches the client.
                        std::future::pending::<()>().await;
                    }
                    if client_write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            };
            // The server closing ends the reader; what it sent still goes out.
            tokio::join!(read, write);
        }
    };
    // Whichever ends first, both futures (and so both sockets) are dropped:
    // the zero linger turns that into a reset on both sides.
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
        _ = doom.notified() => {}
        _ = generation.changed() => {}
    }
}

/// Waits while the proxy is a blackhole.
async fn pass_when_open(shared: &Shared) {
    let mut mode = shared.mode.subscribe();
    let _ = mode.wait_for(|m| *m != Mode::Blackhole).await;
}
