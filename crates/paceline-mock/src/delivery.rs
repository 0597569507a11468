//! Turning an answer (or a fault) into a response body: whole, streamed with pacing, cut short,
//! or aborted.
//!
//! It decides nothing: which answer, which fault and which pace are chosen by [`crate::server`].

use crate::api::Payload;
use crate::keys::KeyState;
use crate::slots::Slot;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to record once the last byte of an answer is handed over.
pub struct Completion {
    /// The key to record it on.
    pub key: Arc<KeyState>,
    /// The model asked for (its buckets get a refund).
    pub model: String,
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Tokens to give back to the token bucket (`--refund-unused`), else 0.
    pub refund: u64,
    /// The slot the answer holds (`--slots`): released with the last byte, or when the client
    /// hangs up and the body is dropped.
    pub slot: Option<Slot>,
}

impl Completion {
    /// Record the answer as complete.
    pub fn record(self) {
        // The slot goes as the last byte does (when `self` is dropped, after the record).
        self.key.record_ok(
            &self.model,
            self.prompt,
            self.completion,
            self.refund,
            Instant::now(),
        );
    }
}

/// How long a truncated body waits before the connection is cut.
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "fault injected by the mock")
}

/// The content type of a payload.
pub fn content_type(payload: &Payload) -> HeaderValue {
    match payload {
        Payload::Json(_) => HeaderValue::from_static("application/json"),
        Payload::Sse(_) => HeaderValue::from_static("text/event-stream; charset=utf-8"),
    }
}

/// A complete body. JSON is sent whole; frames are sent one by one, `gap` apart. The
/// completion is recorded just before the last frame goes out.
pub fn complete(payload: Payload, gap: Duration, done: Completion) -> Body {
    match payload {
        Payload::Json(bytes) => {
            done.record();
            Body::from(bytes)
        }
        Payload::Sse(frames) => {
            let state = (frames.into_iter(), Some(done), false);
            let stream =
                futures::stream::unfold(state, move |(mut frames, mut done, started)| async move {
                    let frame = frames.next()?;
                    if started && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    if frames.len() == 0
                        && let Some(d) = done.take()
                    {
                        d.record();
                    }
                    Some((Ok::<Bytes, io::Error>(frame), (frames, done, true)))
                });
            Body::from_stream(stream)
        }
    }
}

/// A body that fails before its first byte: the connection closes without a complete response.
pub fn reset() -> Body {
    Body::from_stream(futures::stream::once(async {
        Err::<Bytes, io::Error>(aborted())
    }))
}

/// Part of the body, then the connection closes. JSON declares its full `Content-Length` (set on
/// `response`) and sends half; a stream sends half of its frames and never `[DONE]`.
pub fn truncated(payload: Payload, response: &mut Response) -> Body {
    let chunks: Vec<Bytes> = match payload {
        Payload::Json(bytes) => {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let half = bytes.len() / 2;
            vec![Bytes::from(bytes).slice(..half)]
        }
        Payload::Sse(mut frames) => {
            frames.truncate(frames.len() / 2);
            frames
        }
    };
    // Pause before failing so the server flushes the part already written: the client sees the
    // status, the headers and the partial body, then the connection closes.
    let cut = futures::stream::once(async {
        tokio::time::sleep(FLUSH_PAUSE).await;
        Err(aborted())
    });
    Body::from_stream(futures::stream::iter(chunks.into_iter().map(Ok)).chain(cut))
}
