//! Serving the API over HTTP/1.1 so that slow, idle and half-sent clients
//! cannot take it down: each connection has a deadline for its request head,
//! for its request body and for the quiet spell between requests; at most
//! `max_connections` are open at once (the rest wait in the kernel's accept
//! backlog until one closes, so file descriptors stay bounded); and a stop
//! closes every connection that has not delivered a whole request, while
//! requests already read are answered first.

use crate::api::problem::Problem;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The connection limits, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// From the first byte of a request (or the connection's opening) to the
    /// end of its head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// Between the end of an answer and the first byte of the next request.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl ServeLimits {
    pub fn from_config(s: &crate::config::Server) -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            body_timeout: Duration::from_secs(s.body_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            max_connections: s.max_connections,
        }
    }
}

/// Where a connection is, which decides the deadline that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head that started (or a connection that opened) at this time.
    Head(Instant),
    /// A request is being handled; its body has a deadline of its own.
    Busy,
    /// Answered; waiting since this time for the next request.
    Idle(Instant),
}

/// Serve `app` on `listener` until `stop` completes, then close what is
/// half-read, let the requests already read finish, and return.
pub async fn serve(listener: TcpListener, app: Router, limits: ServeLimits, stop: impl Future<Output = ()>) {
    let stopping = CancellationToken::new();
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(stop);
    loop {
        // Take a slot before accepting, so connections over the cap wait in
        // the backlog rather than holding a descriptor here.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors or a connection reset before we took
                    // it: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(stream, app.clone(), limits, stopping.clone(), permit));
    }
    drop(listener);
    stopping.cancel();
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ServeLimits,
    stopping: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let (phase_tx, mut phase) = watch::channel(Phase::Head(Instant::now()));
    let phase_tx = Arc::new(phase_tx);
    let io = TokioIo::new(Tracked { inner: stream, phase: phase_tx.clone() });
    let service = {
        let phase_tx = phase_tx.clone();
        let stopping = stopping.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            phase_tx.send_replace(Phase::Busy);
            handle(req, app.clone(), limits.body_timeout, stopping.clone(), phase_tx.clone())
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head deadline is ours (below): hyper's own would also cut idle
    // keep-alive connections at the header timeout.
    builder.header_read_timeout(None).keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stop_seen = false;
    loop {
        let now = *phase.borrow_and_update();
        let deadline = match now {
            Phase::Head(t) => Some(t + limits.header_timeout),
            Phase::Idle(t) => Some(t + limits.idle_timeout),
            Phase::Busy => None,
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stopping.cancelled(), if !stop_seen => {
                stop_seen = true;
                if now != Phase::Busy {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
            _ = phase.changed() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let what = if matches!(now, Phase::Head(_)) { "request head" } else { "next request" };
                tracing::debug!(waited_for = what, "closing an HTTP connection that kept us waiting");
                return;
            }
        }
    }
}

/// One request: its body under a deadline and the stop, its answer marking
/// the connection idle once written.
async fn handle(
    req: Request<Incoming>,
    app: Router,
    body_timeout: Duration,
    stopping: CancellationToken,
    phase: Arc<watch::Sender<Phase>>,
) -> Result<Response<Body>, Infallible> {
    let cut = Arc::new(OnceLock::new());
    let req = req.map(|inner| {
        Body::new(GuardedBody {
            inner,
            timeout: body_timeout,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            stopping: Box::pin(stopping.cancelled_owned()),
            cut: cut.clone(),
        })
    });
    let resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // Whatever the handler made of a body that never came, the client hears
    // why, and the connection closes (the rest of the body is not read).
    let resp = match cut.get() {
        None => resp,
        Some(c) => {
            let mut r = match c {
                BodyCut::Late(_) => {
                    Problem::new(StatusCode::REQUEST_TIMEOUT, "timeout", "The request took too long", c.to_string())
                        .into_response()
                }
                BodyCut::Stopping => Problem::unavailable(c.to_string()).into_response(),
            };
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    };
    Ok(resp.map(|inner| Body::new(Answer { inner, phase })))
}

/// Why a request body was not read to its end.
#[derive(Debug, Clone, Copy, thiserror::Error)]
enum BodyCut {
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    Late(Duration),
    #[error("the gateway is stopping; send the request again")]
    Stopping,
}

/// A request body that fails at its deadline or at a stop.
struct GuardedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    cut: Arc<OnceLock<BodyCut>>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(c) = this.cut.get() {
            return Poll::Ready(Some(Err(Box::new(*c))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let why = if this.stopping.as_mut().poll(cx).is_ready() {
                    BodyCut::Stopping
                } else if this.deadline.as_mut().poll(cx).is_ready() {
                    BodyCut::Late(this.timeout)
                } else {
                    return Poll::Pending;
                };
                let why = *this.cut.get_or_init(|| why);
                Poll::Ready(Some(Err(Box::new(why))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; when hyper has written it and drops it, the connection
/// is idle.
struct Answer {
    inner: Body,
    phase: Arc<watch::Sender<Phase>>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.phase.send_replace(Phase::Idle(Instant::now()));
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when the first byte of a request arrives on an idle
/// connection (the head's deadline starts then).
struct Tracked {
    inner: TcpStream,
    phase: Arc<watch::Sender<Phase>>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.phase.send_if_modified(|p| match p {
                Phase::Idle(_) => {
                    *p = Phase::Head(Instant::now());
                    true
                }
                _ => false,
            });
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// On stop, a request already read is answered, a half-sent one is not
    /// waited for, and `serve` returns once the answer is out.
    #[tokio::test]
    async fn stop_answers_what_was_read_and_drops_what_was_not() {
        let app = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits {
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stop_rx.await;
        }));
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\"").await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(()).unwrap();
        let mut answer = String::new();
        slow.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve waited for the half-sent request")
            .unwrap();
    }
}
