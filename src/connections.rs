//! Limits on the connections the server holds, the same for gRPC and REST: how many may be
//! open at once, how soon a new connection must send its first request (so a client that
//! connects and trickles nothing, or half a header, is closed), and how long it may stay
//! open with no request in flight. The peer's address travels with each request, for the
//! limit on failed authentications.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// What each listener allows its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; past it new ones are closed as soon as accepted.
    pub max_connections: usize,
    /// Longest a new connection may take to send its first request's headers (the TLS
    /// handshake included).
    pub first_request_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4_096,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Admits connections up to the server's limit, across its listeners.
pub struct ConnectionGate {
    limits: ConnectionLimits,
    open: Arc<Semaphore>,
    /// Whether the limit has been reported since connections were last below it.
    full_reported: AtomicBool,
}

impl ConnectionGate {
    /// A gate that admits `limits.max_connections` at once.
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            limits,
            open: Arc::new(Semaphore::new(limits.max_connections)),
            full_reported: AtomicBool::new(false),
        })
    }

    /// The limits this gate applies.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// `io` with its place among the open connections and its deadlines; `None` (the
    /// connection is to be dropped) when the listener holds its limit.
    pub fn admit<IO>(&self, io: IO, peer: SocketAddr) -> Option<Limited<IO>> {
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            if !self.full_reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = self.limits.max_connections,
                    "at the connection limit: new connections are closed until some end"
                );
            }
            return None;
        };
        if self.open.available_permits() > self.limits.max_connections / 10 {
            self.full_reported.store(false, Ordering::Relaxed);
        }
        let connection = Connection(Arc::new(ConnectionState {
            peer,
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
        }));
        Some(Limited {
            io,
            timer: Box::pin(tokio::time::sleep(self.limits.first_request_timeout)),
            timer_wakes: None,
            limits: self.limits,
            connection,
            _place: permit,
        })
    }

    /// Accepts the next connection under the limit, with `TCP_NODELAY` set: responses span
    /// several small writes, which Nagle's algorithm and delayed ACKs would stall.
    pub async fn accept(&self, listener: &TcpListener) -> Limited<TcpStream> {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if let Some(limited) = self.admit(stream, peer) {
                        return limited;
                    }
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One open connection, as requests see it (in their extensions).
#[derive(Debug, Clone)]
pub struct Connection(Arc<ConnectionState>);

#[derive(Debug)]
struct ConnectionState {
    peer: SocketAddr,
    opened: Instant,
    in_flight: AtomicUsize,
    requested: AtomicBool,
    /// When the last request ended, in milliseconds after `opened`.
    last_end_ms: AtomicU64,
}

impl Connection {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn request(&self) -> RequestOnConnection {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.0.requested.store(true, Ordering::Release);
        RequestOnConnection(self.clone())
    }

    /// When the connection is to be closed, if nothing changes; `None` while a request is
    /// in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let state = &self.0;
        if state.in_flight.load(Ordering::Acquire) > 0 {
            None
        } else if !state.requested.load(Ordering::Acquire) {
            Some(state.opened + limits.first_request_timeout)
        } else {
            let last_end = Duration::from_millis(state.last_end_ms.load(Ordering::Acquire));
            Some(state.opened + last_end + limits.idle_timeout)
        }
    }

    /// The connection a request came on, whichever transport and TLS or not.
    pub fn of<B>(request: &http::Request<B>) -> Option<&Connection> {
        let extensions = request.extensions();
        extensions
            .get::<Connection>()
            .or_else(|| {
                extensions
                    .get::<tonic::transport::server::TlsConnectInfo<Connection>>()
                    .map(|info| info.get_ref())
            })
            .or_else(|| {
                extensions
                    .get::<axum::extract::ConnectInfo<Connection>>()
                    .map(|info| &info.0)
            })
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub struct RequestOnConnection(Connection);

impl Drop for RequestOnConnection {
    fn drop(&mut self) {
        let state = &(self.0).0;
        let since_open = Instant::now().saturating_duration_since(state.opened);
        let ms = u64::try_from(since_open.as_millis()).unwrap_or(u64::MAX);
        state.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that holds its place under the limit until dropped, and fails its reads
/// with `TimedOut` once its deadline passes.
pub struct Limited<IO> {
    io: IO,
    connection: Connection,
    limits: ConnectionLimits,
    timer: Pin<Box<Sleep>>,
    /// The task the timer wakes, once it has been polled.
    timer_wakes: Option<Waker>,
    _place: OwnedSemaphorePermit,
}

impl<IO> Limited<IO> {
    /// The connection as requests see it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the deadline has passed; otherwise the timer is set to wake this task
    /// when it might.
    fn past_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        // Polling the timer registers the waker again (an atomic swap and a clone) on
        // every read that would block; a timer already set to wake this task need only be
        // looked at once it has fired.
        let wakes_this_task = self
            .timer_wakes
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if wakes_this_task && !self.timer.is_elapsed() {
            return false;
        }
        self.timer_wakes = Some(cx.waker().clone());
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match self.connection.deadline(&self.limits) {
                Some(deadline) if deadline <= now => return true,
                Some(deadline) => self.timer.as_mut().reset(deadline),
                // Looked at again an idle period later; a request's end sets no timer.
                None => self.timer.as_mut().reset(now + self.limits.idle_timeout),
            }
        }
        false
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending if self.past_deadline(cx) => {
                tracing::debug!(peer = %self.connection.peer(), "closing a connection past its deadline");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the connection's deadline",
                )))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    /// Reported as not vectored, though sockets are: h2 then copies a DATA frame under
    /// 1 KiB into its write buffer (under 256 bytes when vectored), and a frame it does not
    /// copy ends the batch. Answers are a few hundred bytes, so with vectored writes each
    /// answer of 256 bytes or more took a write and a wake-up of its own (BENCHMARKS.md,
    /// check_load, "Answers batched into fewer writes"). gRPC answers between 1 and 4 KiB
    /// are cut into frames under 1 KiB for the same reason (`api/batched_frames.rs`).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Limited<TcpStream> {
    type ConnectInfo = Connection;

    fn connect_info(&self) -> Connection {
        self.connection.clone()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(max: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4242))
    }

    #[tokio::test]
    async fn places_are_given_back_when_connections_close() {
        let gate = ConnectionGate::new(limits(2));
        let a = gate.admit((), peer()).unwrap();
        let b = gate.admit((), peer()).unwrap();
        assert!(gate.admit((), peer()).is_none());
        drop(a);
        let c = gate.admit((), peer()).unwrap();
        drop((b, c));
    }

    async fn read_outcome(limited: &mut Limited<tokio::io::DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 16];
        limited.read(&mut buf).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_after_the_first_request_timeout() {
        let gate = ConnectionGate::new(limits(8));
        let (mut client, server) = tokio::io::duplex(64);
        let mut limited = gate.admit(server, peer()).unwrap();
        client.write_all(b"half a hea").await.unwrap();
        assert_eq!(read_outcome(&mut limited).await.unwrap(), 10);
        let started = Instant::now();
        let e = read_outcome(&mut limited).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_its_connection_and_idleness_counts_from_its_end() {
        let gate = ConnectionGate::new(limits(8));
        let (_client, server) = tokio::io::duplex(64);
        let mut limited = gate.admit(server, peer()).unwrap();
        let request = limited.connection().request();
        let reading = tokio::time::timeout(Duration::from_secs(200), read_outcome(&mut limited));
        assert!(reading.await.is_err(), "closed with a request in flight");
        drop(request);
        let ended = Instant::now();
        let e = read_outcome(&mut limited).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let idle = ended.elapsed();
        assert!(
            idle >= Duration::from_secs(59) && idle <= Duration::from_secs(61),
            "{idle:?}"
        );
    }
}
