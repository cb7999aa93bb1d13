//! The HTTP server. hyper (HTTP/1.1 and HTTP/2, through hyper-util's auto builder, as
//! `axum::serve` does) serves every connection, except one whose first request opens a job's
//! event stream (`GET /api/jobs/{id}/stream`): this module writes that response itself, as
//! chunked HTTP/1.1, then hands the connection to hyper for whatever comes next.
//!
//! Why: an open stream is a connection that idles for hours, and hyper keeps its buffers for
//! a connection's whole life. A heap profile of 2,000 open streams showed each holding a
//! 16 KiB read buffer and an 8 KiB header buffer of hyper's, 24 of the 28 KiB a stream cost.
//! Here a stream holds its socket, its body and a 64-byte probe that notices the client
//! hanging up. Only the framing is done here: the request goes through the same router,
//! middleware and all, and anything unusual about it (another method or version, a body,
//! `Upgrade`, `Expect`, a head that does not parse or is too long) goes to hyper untouched.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use axum::Router;
use bytes::{Buf, Bytes};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The longest first request head read before deciding; a longer one goes to hyper.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;
/// How long a shutdown waits for the requests in progress.
const GRACE: Duration = Duration::from_secs(10);
/// What a request for an event stream starts with.
const STREAM_PREFIX: &[u8] = b"GET /api/jobs/";

/// Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`).
/// tokio's `TcpListener::bind` asks for 1,024: a thousand viewers opening their streams at
/// once overflowed it, and each dropped SYN cost its client a one-second retransmission.
const ACCEPT_BACKLOG: u32 = 8192;

/// A listener on `addr` with a deep accept queue (`ACCEPT_BACKLOG`).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server may reuse a port in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, ends the
/// event streams (their clients reconnect with `Last-Event-ID`, to another instance if this
/// one is gone), lets hyper finish the requests in progress, and waits for them at most
/// `GRACE`. Each request sees its client's address as `ConnectInfo<SocketAddr>`. A
/// connection that sends no whole request head within `header_read_timeout`, or idles that
/// long between requests, is closed (`infrastructure::http_connections`).
pub async fn run(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection reset before it was accepted: nothing to do.
                Err(err) if is_connection_error(&err) => continue,
                // Out of file descriptors, most likely: wait rather than spin (as axum does).
                Err(err) => {
                    tracing::error!(error = %err, "cannot accept connections");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        connections.spawn(connection(
            socket,
            peer,
            router.clone(),
            header_read_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    if tokio::time::timeout(GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period are dropped"
        );
    }
    Ok(())
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::select! {
        read = tokio::time::timeout(header_read_timeout, read_head(&mut socket, &mut head)) => match read {
            Ok(Ok(complete)) => complete,
            Ok(Err(_)) | Err(_) => return,
        },
        () = stop.cancelled() => return,
    };
    if head.is_empty() {
        return;
    }
    let request = if complete {
        event_stream_request(&head, peer)
    } else {
        None
    };
    // Each path boxed: the connection's task is only as large as what it holds now.
    let (socket, unread) = match request {
        Some(request) => {
            drop(head);
            match Box::pin(respond(socket, request, router.clone(), stop.clone())).await {
                Some(next) => next,
                None => return,
            }
        }
        None => (socket, head),
    };
    Box::pin(hyper_connection(
        Rewind::new(unread, socket),
        peer,
        router,
        header_read_timeout,
        stop,
    ))
    .await;
}

/// Reads until the head is complete (`true`), or until it is clear that hyper should have
/// the connection (`false`): it does not start like an event stream request, it is too long,
/// or the client stopped sending.
async fn read_head(socket: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        if head.len() == head.capacity() {
            if head.len() >= MAX_HEAD {
                return Ok(false);
            }
            head.reserve(1024);
        }
        let searched_to = head.len().saturating_sub(3);
        if socket.read_buf(head).await? == 0 {
            return Ok(false);
        }
        let known = head.len().min(STREAM_PREFIX.len());
        if head[..known] != STREAM_PREFIX[..known] {
            return Ok(false);
        }
        if head[searched_to..].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(true);
        }
    }
}

/// The request, when `head` is exactly one plain `GET` of an event stream over HTTP/1.1.
fn event_stream_request(head: &[u8], peer: SocketAddr) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(length) = parsed.parse(head).ok()? else {
        return None;
    };
    let path = parsed.path?;
    if length != head.len()
        || parsed.method != Some("GET")
        || parsed.version != Some(1)
        || !is_event_stream(path)
    {
        return None;
    }
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let has_body =
            (name == CONTENT_LENGTH && header.value != b"0") || name == TRANSFER_ENCODING;
        if has_body || name == UPGRADE || name == EXPECT {
            return None;
        }
        map.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    *request.headers_mut() = map;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

/// `/api/jobs/{id}/stream`, with or without a query.
fn is_event_stream(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.strip_prefix("/api/jobs/")
        .and_then(|rest| rest.strip_suffix("/stream"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// Answers `request` through the router and writes the response (the status line, the
/// headers, the body chunked unless its length is known). Answers the socket and what the
/// client sent meanwhile when the connection stays open, `None` when it is done.
async fn respond(
    mut socket: TcpStream,
    request: Request<Body>,
    router: Router,
    stop: CancellationToken,
) -> Option<(TcpStream, Vec<u8>)> {
    let client_closes = wants_close(request.headers());
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    let close = client_closes || wants_close(&parts.headers);
    let length = match parts.headers.get(CONTENT_LENGTH) {
        Some(value) => value.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
        None => body.size_hint().exact(),
    };
    let chunked = length.is_none();
    {
        let mut head = Vec::with_capacity(512);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_str(),
            parts.status.canonical_reason().unwrap_or("")
        );
        for (name, value) in &parts.headers {
            if name == TRANSFER_ENCODING || name == CONNECTION || name == CONTENT_LENGTH {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !parts.headers.contains_key(DATE) {
            let _ = write!(
                head,
                "date: {}\r\n",
                httpdate::fmt_http_date(std::time::SystemTime::now())
            );
        }
        match length {
            Some(length) => {
                let _ = write!(head, "content-length: {length}\r\n");
            }
            None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        if close {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        socket.write_all(&head).await.ok()?;
    }
    drop(parts);

    let mut unread = Vec::new();
    let mut probe = [0u8; 64];
    let (mut reader, mut writer) = socket.split();
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    // An empty chunk would end the body.
                    if data.is_empty() {
                        continue;
                    }
                    writer.write_all(&encoded(data, chunked)).await.ok()?;
                }
                // The body failed half-way: the client must not take it for whole.
                Some(Err(_)) => return None,
                None => break,
            },
            read = reader.read(&mut probe) => match read {
                Ok(0) | Err(_) => return None,
                // A next request, sent early: kept for hyper.
                Ok(n) => {
                    unread.extend_from_slice(&probe[..n]);
                    if unread.len() > MAX_HEAD {
                        return None;
                    }
                }
            },
            () = stop.cancelled() => {
                if chunked {
                    let _ = writer.write_all(b"0\r\n\r\n").await;
                }
                return None;
            }
        }
    }
    if chunked {
        writer.write_all(b"0\r\n\r\n").await.ok()?;
    }
    (!close).then_some((socket, unread))
}

/// One write per piece of the body (a small write after another would wait for the
/// client's ACK under Nagle's algorithm).
fn encoded(data: Bytes, chunked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    if chunked {
        let _ = write!(out, "{:x}\r\n", data.len());
    }
    out.extend_from_slice(&data);
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn hyper_connection(
    io: Rewind,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let builder = infrastructure::http_connections(header_read_timeout);
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The socket, with the bytes already read from it put back in front.
struct Rewind {
    unread: Bytes,
    socket: TcpStream,
}

impl Rewind {
    fn new(unread: Vec<u8>, socket: TcpStream) -> Rewind {
        Rewind {
            unread: Bytes::from(unread),
            socket,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.has_remaining() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;

    #[test]
    fn only_a_jobs_stream_path_is_an_event_stream() {
        assert!(is_event_stream("/api/jobs/0193/stream"));
        assert!(is_event_stream("/api/jobs/0193/stream?x=1"));
        assert!(!is_event_stream("/api/jobs//stream"));
        assert!(!is_event_stream("/api/jobs/a/b/stream"));
        assert!(!is_event_stream("/api/jobs/0193"));
        assert!(!is_event_stream("/api/jobs/0193/streams"));
    }

    #[test]
    fn a_request_with_anything_unusual_is_left_to_hyper() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let plain = b"GET /api/jobs/1/stream HTTP/1.1\r\nhost: x\r\nlast-event-id: 1.2\r\n\r\n";
        let request = event_stream_request(plain, peer).expect("taken");
        assert_eq!(request.uri().path(), "/api/jobs/1/stream");
        assert_eq!(request.headers()["last-event-id"], "1.2");
        assert!(request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some());
        for head in [
            &b"GET /api/jobs/1/stream HTTP/1.0\r\nhost: x\r\n\r\n"[..],
            b"POST /api/jobs/1/stream HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\ncontent-length: 3\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET /api/jobs/1 HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /api/jobs/1/stream HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert!(
                event_stream_request(head, peer).is_none(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// Counts the bodies alive, to see a hung-up client's stream dropped.
    struct Alive(Arc<AtomicUsize>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn server(
        alive: Arc<AtomicUsize>,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let router = Router::new()
            .route(
                "/api/jobs/{id}/stream",
                get(
                    move |axum::extract::Path(id): axum::extract::Path<String>,
                          ConnectInfo(peer): ConnectInfo<SocketAddr>| {
                        let alive = alive.clone();
                        async move {
                            if id == "missing" {
                                return (axum::http::StatusCode::NOT_FOUND, "no such job")
                                    .into_response();
                            }
                            alive.fetch_add(1, Ordering::SeqCst);
                            let guard = Alive(alive);
                            let forever = id == "forever";
                            let frames = futures::stream::unfold(
                                (0u32, guard),
                                move |(i, guard)| async move {
                                    if forever {
                                        std::future::pending::<()>().await;
                                    }
                                    (i < 3).then(|| {
                                        (
                                            Ok::<_, std::convert::Infallible>(Bytes::from(
                                                format!("data: {i} {}\n\n", peer.ip()),
                                            )),
                                            (i + 1, guard),
                                        )
                                    })
                                },
                            );
                            (
                                [("content-type", "text/event-stream")],
                                Body::from_stream(frames),
                            )
                                .into_response()
                        }
                    },
                ),
            )
            .route("/echo", post(|body: Bytes| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            run(listener, router, Duration::from_secs(30), async move {
                until.cancelled().await
            })
            .await
            .unwrap();
        });
        (addr, stop, task)
    }

    #[tokio::test]
    async fn a_stream_is_chunked_http_and_the_connection_serves_on_after_it() {
        let alive = Arc::new(AtomicUsize::new(0));
        let (addr, stop, task) = server(alive.clone()).await;

        // reqwest decodes the chunks; the client address reached the handler.
        let text = reqwest::get(format!("http://{addr}/api/jobs/1/stream"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            text,
            "data: 0 127.0.0.1\n\ndata: 1 127.0.0.1\n\ndata: 2 127.0.0.1\n\n"
        );
        // A response of known length is sent with it.
        let missing = reqwest::get(format!("http://{addr}/api/jobs/missing/stream"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()["content-length"], "11");
        assert_eq!(missing.text().await.unwrap(), "no such job");

        // On one connection: the stream, then a POST with a body (hyper's), then a stream
        // again (hyper's too: only a connection's first request is taken here).
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /api/jobs/2/stream HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(head.contains("date: "), "{head}");
        let mut chunks = String::new();
        while !chunks.ends_with("0\r\n\r\n") {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).await.unwrap() > 0, "{chunks}");
            chunks.push_str(&line);
        }
        assert!(
            chunks.starts_with("13\r\ndata: 0 127.0.0.1\n\n\r\n"),
            "{chunks:?}"
        );
        let mut socket = reader.into_inner();
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let mut echoed = String::new();
        while !echoed.ends_with("hello") {
            let n = socket.read(&mut answer).await.unwrap();
            assert!(n > 0, "{echoed}");
            echoed.push_str(&String::from_utf8_lossy(&answer[..n]));
        }
        assert!(echoed.starts_with("HTTP/1.1 200 OK"), "{echoed}");

        // A client that hangs up ends its stream (the body is dropped).
        let mut hung_up = TcpStream::connect(addr).await.unwrap();
        hung_up
            .write_all(b"GET /api/jobs/forever/stream HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = hung_up.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200 OK"));
        assert_eq!(alive.load(Ordering::SeqCst), 1);
        drop(hung_up);
        for _ in 0..100 {
            if alive.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "the stream outlived its client"
        );

        // Shutdown ends an open stream with its last chunk, and the server returns.
        let mut open = TcpStream::connect(addr).await.unwrap();
        open.write_all(b"GET /api/jobs/forever/stream HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = open.read(&mut answer).await.unwrap();
        assert!(n > 0);
        stop.cancel();
        let mut rest = Vec::new();
        open.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.ends_with(b"0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
