//! A server-streaming gRPC call whose response messages are split out of the HTTP/2 DATA frames in place.
//!
//! tonic's `Streaming` copies every DATA frame into a buffer of its own and, as the flows split from that buffer
//! keep it shared, reallocates it for each frame: a copy of every byte received and a large allocation every
//! 16 KiB (6% of the gateway's CPU at saturation in a profile, the flows being ~600 bytes each). Here a message
//! that lies within one frame, nearly every one, is a slice of the frame; only a message that spans frames is
//! assembled, into a buffer of its exact size. The gRPC semantics are tonic's: a trailers-only response, the
//! status in the trailers, the HTTP status when they lack one, and transport errors as tonic maps them.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use http_body::Body as _;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::ServiceExt as _;

/// A message's prefix: the compressed flag and the length (big-endian `u32`).
const PREFIX: usize = 5;

/// Calls `path` with `request` and returns its response messages, each at most `max` bytes, as they arrive. Fails
/// as tonic does: a transport error, or a status in the response's headers (a trailers-only response).
pub async fn server_streaming(
    channel: Channel,
    path: &'static str,
    request: &impl prost::Message,
    max: usize,
) -> Result<Messages, Status> {
    let len = request.encoded_len();
    let mut body = BytesMut::with_capacity(PREFIX + len);
    body.put_u8(0);
    body.put_u32(u32::try_from(len).map_err(|_| Status::internal("request too large"))?);
    request.encode(&mut body).map_err(|e| Status::internal(format!("encoding the request: {e}")))?;
    let mut http_request = http::Request::new(tonic::body::Body::new(http_body_util::Full::new(body.freeze())));
    *http_request.method_mut() = http::Method::POST;
    *http_request.uri_mut() = http::Uri::from_static(path);
    *http_request.version_mut() = http::Version::HTTP_2;
    let headers = http_request.headers_mut();
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let channel = channel.ready_oneshot().await.map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let response = channel.oneshot(http_request).await.map_err(|e| Status::from_error(Box::new(e)))?;
    Messages::of_response(response, max)
}

/// The messages of a streaming response, each the protobuf bytes of one.
pub struct Messages {
    body: tonic::body::Body,
    status: http::StatusCode,
    max: usize,
    /// What is left of the DATA frame being split.
    frame: Bytes,
    /// A message begun in an earlier frame: its prefix and what has arrived of it.
    spanning: BytesMut,
    /// Set once the stream is over: what is left to yield (its error, if it ended with one).
    ended: Option<Option<Status>>,
}

impl Messages {
    /// The messages of `response`, or the status its headers carry (a trailers-only response).
    pub fn of_response(response: http::Response<tonic::body::Body>, max: usize) -> Result<Messages, Status> {
        let status = response.status();
        // A status among the headers: the response is trailers-only and carries no messages.
        let ended = match Status::from_header_map(response.headers()) {
            Some(s) if s.code() != Code::Ok => return Err(s),
            Some(_) => Some(None),
            None => None,
        };
        // No compression was offered in the request, so none is accepted.
        if let Some(encoding) = response.headers().get("grpc-encoding").filter(|e| *e != "identity") {
            return Err(Status::unimplemented(format!(
                "Goldmane compressed the stream with {encoding:?}, which was not asked for"
            )));
        }
        Ok(Messages { body: response.into_body(), status, max, frame: Bytes::new(), spanning: BytesMut::new(), ended })
    }

    /// The length of the message that `prefix` (five bytes) announces.
    fn length(&self, prefix: &[u8]) -> Result<usize, Status> {
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ));
            }
            f => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {f}"
                )));
            }
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max
            )));
        }
        Ok(len)
    }

    /// The next whole message of what has arrived. When there is none, the frame has been taken whole (into
    /// `spanning`, if it began a message).
    fn split(&mut self) -> Result<Option<Bytes>, Status> {
        if self.spanning.is_empty() {
            if self.frame.len() >= PREFIX {
                let len = self.length(&self.frame[..PREFIX])?;
                if self.frame.len() - PREFIX >= len {
                    self.frame.advance(PREFIX);
                    return Ok(Some(self.frame.split_to(len)));
                }
                self.spanning.reserve(PREFIX + len);
            }
            self.spanning.extend_from_slice(&self.frame);
            self.frame.clear();
            return Ok(None);
        }
        if self.spanning.len() < PREFIX {
            let take = (PREFIX - self.spanning.len()).min(self.frame.len());
            self.spanning.extend_from_slice(&self.frame[..take]);
            self.frame.advance(take);
            if self.spanning.len() < PREFIX {
                return Ok(None);
            }
        }
        let whole = PREFIX + self.length(&self.spanning[..PREFIX])?;
        let take = (whole - self.spanning.len()).min(self.frame.len());
        self.spanning.reserve(whole - self.spanning.len());
        self.spanning.extend_from_slice(&self.frame[..take]);
        self.frame.advance(take);
        if self.spanning.len() < whole {
            return Ok(None);
        }
        let mut message = std::mem::take(&mut self.spanning);
        message.advance(PREFIX);
        Ok(Some(message.freeze()))
    }

    /// How the stream ended, from its trailers (or their absence).
    fn end(&self, trailers: Option<&http::HeaderMap>) -> Option<Status> {
        if !self.frame.is_empty() || !self.spanning.is_empty() {
            return Some(Status::internal("Unexpected EOF decoding stream."));
        }
        match trailers.and_then(Status::from_header_map) {
            Some(s) if s.code() == Code::Ok => None,
            Some(s) => Some(s),
            None => Some(status_of_http(self.status)),
        }
    }
}

impl futures::Stream for Messages {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(end) = &mut this.ended {
                return Poll::Ready(end.take().map(Err));
            }
            match this.split() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(status) => {
                    this.ended = Some(Some(status));
                    continue;
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.frame = data,
                    Err(frame) => {
                        // Trailers end the stream.
                        let trailers = frame.into_trailers().ok();
                        this.ended = Some(this.end(trailers.as_ref()));
                    }
                },
                Some(Err(status)) => this.ended = Some(Some(status)),
                None => this.ended = Some(this.end(None)),
            }
        }
    }
}

/// The status of a response that ended without one, from its HTTP status (gRPC's mapping, as tonic applies it).
fn status_of_http(status: http::StatusCode) -> Status {
    use http::StatusCode as S;
    let code = match status {
        S::OK => {
            return Status::unknown(
                "protocol error: missing grpc-status trailer, stream was terminated without a final status",
            );
        }
        S::BAD_REQUEST => Code::Internal,
        S::UNAUTHORIZED => Code::Unauthenticated,
        S::FORBIDDEN => Code::PermissionDenied,
        S::NOT_FOUND => Code::Unimplemented,
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("grpc-status header missing, mapped from HTTP status code {}", status.as_u16()))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use http_body::Frame;

    use super::*;

    fn prefixed(message: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(message.len() as u32).to_be_bytes());
        v.extend_from_slice(message);
        v
    }

    fn trailers(code: i32) -> http::HeaderMap {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from(code));
        t
    }

    /// A response whose body is these DATA frames, then these trailers.
    fn response(frames: Vec<Bytes>, end: Option<http::HeaderMap>) -> http::Response<tonic::body::Body> {
        let frames = frames.into_iter().map(Frame::data).chain(end.map(Frame::trailers));
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames.map(Ok::<_, Status>)));
        http::Response::new(tonic::body::Body::new(body))
    }

    async fn collect(messages: Messages) -> Vec<Result<Bytes, Status>> {
        messages.collect().await
    }

    #[tokio::test]
    async fn messages_within_a_frame_are_slices_of_it_and_spanning_ones_are_assembled() {
        let messages: Vec<Vec<u8>> =
            vec![b"first".to_vec(), vec![], b"second".to_vec(), vec![7; 40], b"split-prefix".to_vec(), b"end".to_vec()];
        let wire: Vec<u8> = messages.iter().flat_map(|m| prefixed(m)).collect();
        // Frames cut within the fourth message's body and within the fifth's prefix.
        let cut = [0, 5 + 5 + 5 + 5 + 6 + 12, 5 + 5 + 5 + 5 + 6 + 45 + 2, wire.len()];
        let frames: Vec<Bytes> = cut.windows(2).map(|w| Bytes::copy_from_slice(&wire[w[0]..w[1]])).collect();
        let first_frame = frames[0].as_ptr_range();
        let got = collect(Messages::of_response(response(frames, Some(trailers(0))), 1 << 20).unwrap()).await;
        let got: Vec<Bytes> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got.iter().map(|m| m.to_vec()).collect::<Vec<_>>(), messages);
        assert!(first_frame.contains(&got[0].as_ptr()), "a message within a frame is a slice of it");
        assert!(first_frame.contains(&got[2].as_ptr()));
    }

    #[tokio::test]
    async fn the_trailers_status_ends_the_stream() {
        let frames = vec![Bytes::from(prefixed(b"flow"))];
        let got = collect(Messages::of_response(response(frames, Some(trailers(14))), 1 << 20).unwrap()).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().as_ref(), b"flow");
        assert_eq!(got[1].as_ref().unwrap_err().code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_truncated_or_unterminated_stream_is_an_error() {
        let cut = Bytes::from(prefixed(b"truncated")).slice(..8);
        let got = collect(Messages::of_response(response(vec![cut], Some(trailers(0))), 1 << 20).unwrap()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().code(), Code::Internal, "{:?}", got[0]);
        let got =
            collect(Messages::of_response(response(vec![Bytes::from(prefixed(b"x"))], None), 1 << 20).unwrap()).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().code(), Code::Unknown, "no grpc-status at all");
    }

    #[tokio::test]
    async fn a_compressed_or_oversized_message_is_refused() {
        let mut compressed = prefixed(b"zz");
        compressed[0] = 1;
        let got = collect(Messages::of_response(response(vec![compressed.into()], None), 1 << 20).unwrap()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().code(), Code::Internal);
        let got = collect(Messages::of_response(response(vec![prefixed(&[0; 64]).into()], None), 63).unwrap()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().code(), Code::OutOfRange);
        let mut gzipped = response(vec![], None);
        gzipped.headers_mut().insert("grpc-encoding", HeaderValue::from_static("gzip"));
        let status = Messages::of_response(gzipped, 1 << 20).err().expect("a compressed stream is refused");
        assert_eq!(status.code(), Code::Unimplemented);
    }

    #[tokio::test]
    async fn a_trailers_only_response_is_its_status() {
        let mut refused = response(vec![], None);
        refused.headers_mut().insert("grpc-status", HeaderValue::from(16));
        refused.headers_mut().insert("grpc-message", HeaderValue::from_static("no"));
        let status = Messages::of_response(refused, 1 << 20).err().expect("refused");
        assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "no"));
        let mut empty = response(vec![], None);
        empty.headers_mut().insert("grpc-status", HeaderValue::from(0));
        assert!(collect(Messages::of_response(empty, 1 << 20).unwrap()).await.is_empty());
        let mut forbidden = response(vec![], None);
        *forbidden.status_mut() = http::StatusCode::FORBIDDEN;
        let got = collect(Messages::of_response(forbidden, 1 << 20).unwrap()).await;
        assert_eq!(got[0].as_ref().unwrap_err().code(), Code::PermissionDenied);
    }
}
