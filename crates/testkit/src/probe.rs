//! Is a server up, and is it ours? A raw RESP exchange over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long one probe may take. A server that is up answers in microseconds;
/// a probe that times out is simply repeated until the start deadline.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// True if the server on `port` answers `PING` with `+PONG` and reports
/// `process_id:pid` in `INFO server`.
///
/// `PING` is refused with `-LOADING` while an append-only file is replayed,
/// so `+PONG` means the data is back. The pid check matters because the port
/// was free when it was picked but another process (another test's Redis)
/// may have bound it first: its `+PONG` must not count as ours. Our own child
/// then fails to bind and exits, and the caller retries on a new port.
pub(crate) fn answers_ping(port: u16, pid: u32) -> bool {
    exchange(port, pid).unwrap_or(false)
}

fn exchange(port: u16, pid: u32) -> std::io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    (&stream).write_all(b"PING\r\nINFO server\r\n")?;

    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line != "+PONG\r\n" {
        return Ok(false);
    }
    line.clear();
    reader.read_line(&mut line)?;
    let Some(len) = line
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse::<usize>().ok())
    else {
        return Ok(false);
    };
    let mut info = vec![0; len];
    reader.read_exact(&mut info)?;
    let needle = format!("process_id:{pid}\r\n");
    Ok(String::from_utf8_lossy(&info).contains(&needle))
}
