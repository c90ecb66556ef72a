//! The metrics endpoint of [`Executor::serve_metrics`](crate::Executor::serve_metrics): a std
//! `TcpListener` on a thread of its own, one connection at a time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::CONTENT_TYPE;

/// The longest request read (its line and headers); a longer one is answered 431.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its whole request, and to take the answer.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle server looks for a connection or a stop.
const POLL: Duration = Duration::from_millis(20);

/// A running metrics endpoint, from [`Executor::serve_metrics`](crate::Executor::serve_metrics).
/// Dropping it stops the server and joins its thread (within about 20 ms, or the 2 s an
/// answer in progress may take).
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `render` (which returns `false` when there is nothing to render any more) at
/// `GET /metrics` on `addr`.
pub(crate) fn serve(
    addr: impl ToSocketAddrs,
    render: impl Fn(&mut String) -> bool + Send + 'static,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("flujo-metrics".into())
        .spawn(move || {
            let mut body = String::new();
            while !stopped.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        // A failed connection is the client's problem, not the server's.
                        let _ = answer(conn, &render, &mut body);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `GET /metrics` (with or without a query).
    Metrics,
    /// Any other method or path.
    NotFound,
    /// No complete request line and headers within [`MAX_REQUEST`] bytes.
    TooLarge,
}

/// Reads a request's line and headers (up to the blank line) and classifies it.
pub(crate) fn read_request(conn: &mut impl Read) -> io::Result<Request> {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(Request::TooLarge);
        }
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            break; // the client stopped sending: classify what came
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..len].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let line = buf[..len].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or(&[]));
    Ok(match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => Request::Metrics,
        _ => Request::NotFound,
    })
}

/// Reads from a connection until a deadline for the whole request (a client sending a
/// byte now and then cannot hold the server longer).
struct Within<'a> {
    conn: &'a TcpStream,
    until: Instant,
}

impl Read for Within<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.conn.set_read_timeout(Some(left))?;
        let mut conn = self.conn;
        conn.read(buf)
    }
}

/// Answers one connection.
fn answer(
    mut conn: TcpStream,
    render: &impl Fn(&mut String) -> bool,
    body: &mut String,
) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    body.clear();
    let mut within = Within {
        conn: &conn,
        until: Instant::now() + IO_TIMEOUT,
    };
    let (status, content_type) = match read_request(&mut within)? {
        Request::Metrics => {
            if render(body) {
                ("200 OK", CONTENT_TYPE)
            } else {
                body.push_str("the executor is gone\n");
                ("503 Service Unavailable", "text/plain; charset=utf-8")
            }
        }
        Request::NotFound => {
            body.push_str("not found: the metrics are at GET /metrics\n");
            ("404 Not Found", "text/plain; charset=utf-8")
        }
        Request::TooLarge => {
            body.push_str("request too large\n");
            (
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
            )
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()?;
    // Keep the buffer's memory for the next scrape, within reason.
    if body.capacity() > 16 << 20 {
        *body = String::new();
    }
    Ok(())
}
