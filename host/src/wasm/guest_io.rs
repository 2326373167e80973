//! Guest stdout/stderr: each line goes to the host log, attributed to the transform, rate-limited.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::host::{LOG_LINES_PER_SECOND, RateLimit};

/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;

#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    transform: String,
    stream: &'static str,
    partial: Vec<u8>,
    limit: RateLimit,
}

impl GuestLog {
    pub fn new(transform: &str, stream: &'static str) -> Self {
        GuestLog {
            inner: Arc::new(Mutex::new(Lines {
                transform: transform.to_string(),
                stream,
                partial: Vec::new(),
                limit: RateLimit::new(LOG_LINES_PER_SECOND),
            })),
        }
    }
}

impl Lines {
    fn write(&mut self, buf: &[u8]) {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if self.limit.allow() {
            let suppressed = std::mem::take(&mut self.limit.suppressed);
            tracing::info!(transform = %self.transform, stream = self.stream, suppressed, "{line}");
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Synchronous, unbuffered: every line is logged as it is written, so a guest that traps right after
    /// writing (a Python traceback, a Rust panic message) still gets its last words out.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.inner.lock().expect("guest log lock").write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.inner.lock().expect("guest log lock").write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
