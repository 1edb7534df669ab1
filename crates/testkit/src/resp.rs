//! A blocking RESP2 client small enough to read in one sitting: one
//! connection, one command, one reply.
//!
//! testkit drives a cluster with a few dozen administrative commands; a new
//! TCP connection per command keeps every call independent (a timed-out
//! reply can never be mistaken for the next one) and costs microseconds on
//! loopback.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// One reply from Redis, as RESP2 frames it.
///
/// Errors are a variant rather than an `Err`, because tests look at them:
/// `-MOVED 3999 127.0.0.1:6381` is the answer a wrong node should give.
///
/// ```
/// use testkit::Reply;
/// assert_eq!(Reply::Status("OK".into()).to_string(), "OK");
/// assert_eq!(Reply::Bulk(None).as_text(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: the text after the `+`.
    Status(String),
    /// `-MOVED 3999 127.0.0.1:6381`: the text after the `-`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`; `None` for `$-1`, Redis's nil.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`; `None` for `*-1`, the nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status, error or (UTF-8, lossily) bulk reply; `None` for
    /// nil, integers and arrays.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(text) | Reply::Error(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    /// The error text if this is an error reply.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            Reply::Error(text) => Some(text),
            _ => None,
        }
    }

    /// The number if this is an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements if this is a (non-nil) array reply.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// Shows the reply as `redis-cli` would, minus its decorations: text as is,
/// errors with their `-`, nil as `(nil)`, arrays as `[a, b]`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(text) => f.write_str(text),
            Reply::Error(text) => write!(f, "-{text}"),
            Reply::Integer(n) => write!(f, "{n}"),
            Reply::Bulk(Some(bytes)) => f.write_str(&String::from_utf8_lossy(bytes)),
            Reply::Bulk(None) | Reply::Array(None) => f.write_str("(nil)"),
            Reply::Array(Some(items)) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Sends `args` as one command to `127.0.0.1:port` on a new connection and
/// reads its reply, each step bounded by `timeout` (a paused server times
/// out rather than hanging the test).
pub(crate) fn call<S: AsRef<[u8]>>(port: u16, args: &[S], timeout: Duration) -> io::Result<Reply> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request)?;
    read(&mut BufReader::new(&stream))
}

fn read(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad RESP line {line:?}"),
            )
        })
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body)?;
                body.truncate(len);
                Reply::Bulk(Some(body))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(len) => Reply::Array(Some(
                (0..len).map(|_| read(reader)).collect::<io::Result<_>>()?,
            )),
        },
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a RESP2 reply: {line:?}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Reply {
        read(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn parses_every_resp2_frame() {
        assert_eq!(parse(b"+OK\r\n"), Reply::Status("OK".into()));
        assert_eq!(
            parse(b"-MOVED 1 127.0.0.1:7000\r\n"),
            Reply::Error("MOVED 1 127.0.0.1:7000".into())
        );
        assert_eq!(parse(b":-3\r\n"), Reply::Integer(-3));
        assert_eq!(parse(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n"),
            Reply::Bulk(Some(b"a\r\nb".to_vec()))
        );
        assert_eq!(parse(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n"),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Array(Some(vec![Reply::Bulk(Some(b"x".to_vec()))]))
            ]))
        );
    }

    #[test]
    fn a_truncated_or_foreign_reply_is_an_error() {
        assert!(read(&mut &b""[..]).is_err());
        assert!(read(&mut &b"$5\r\nab"[..]).is_err());
        assert!(read(&mut &b"HTTP/1.1 400\r\n"[..]).is_err());
    }
}
