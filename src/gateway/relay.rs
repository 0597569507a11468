//! Streaming pass-through: the provider's SSE body relayed to the client event by event, as it
//! arrives.
//!
//! Design: the relay is a `Stream` over the live upstream body. Each upstream chunk is appended
//! to a small buffer and every complete event in it (ended by a blank line) goes out at once;
//! only an event's unfinished tail waits for the next chunk, so nothing is held longer than it
//! takes the provider to finish the event. Events are inspected, not re-encoded:
//!
//! * an event carrying a `usage` object is parsed to settle the quotas (the Chat Completions
//!   usage chunk, the Responses API's `response.completed` event, or Anthropic's
//!   `message_start` (input tokens) and `message_delta` (output tokens), merged);
//! * when the gateway added `stream_options.include_usage` itself, the usage-only chunk
//!   (`"choices":[]`) is dropped and the `"usage":null` field that this option adds to every
//!   other chunk is removed, so the client sees exactly the stream it asked for. The provider
//!   writes compact JSON, which is what the removal matches.
//!
//! When the relay is dropped — the stream ended, the provider cut it, or the client hung up —
//! it settles the upstream quota and the client's quota with the usage seen (none: the
//! admission estimate stays), and writes the access log line. Dropping it also drops the
//! upstream body, which closes that connection and so cancels the request at the provider.
//!
//! It must not know any provider's usage fields or event names: usage is read by
//! [`crate::provider::usage`].

use super::access::RequestLog;
use super::clients::ClientTicket;
use crate::engine::respond::LiveStream;
use crate::provider::usage::{Charge, Usage, merge_stream_usage};
use crate::upstream::ByteStream;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How a relayed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The provider finished it.
    Complete,
    /// The provider's connection failed mid-stream.
    UpstreamCut,
}

/// A live upstream SSE body on its way to the client.
pub struct Relay {
    body: ByteStream,
    live: Option<LiveStream>,
    pending: BytesMut,
    strip_usage: bool,
    usage: Option<Usage>,
    ticket: Option<ClientTicket>,
    charge: Charge,
    log: Option<RequestLog>,
    end: Option<End>,
}

impl Relay {
    /// Relay `live`; `strip_usage` when the gateway added `include_usage` itself. `ticket` is
    /// the client's quota reservation and `log` the request's access log, both finished when
    /// the relay ends.
    pub fn new(
        mut live: LiveStream,
        strip_usage: bool,
        ticket: ClientTicket,
        charge: Charge,
        log: RequestLog,
    ) -> Self {
        Relay {
            body: live.take_body(),
            live: Some(live),
            pending: BytesMut::new(),
            strip_usage,
            usage: None,
            ticket: Some(ticket),
            charge,
            log: Some(log),
            end: None,
        }
    }

    /// Move every complete event from the buffer to the output.
    fn complete_events(&mut self) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(len) = event_len(&self.pending) {
            let event = self.pending.split_to(len);
            self.pass(&event, &mut out);
        }
        out
    }

    /// Inspect one event and append what the client should see of it.
    fn pass(&mut self, event: &[u8], out: &mut BytesMut) {
        if contains(event, b"\"usage\":{") || contains(event, b"\"usage\": {") {
            for data in data_lines(event) {
                let Ok(value) = serde_json::from_slice::<Value>(data) else {
                    continue;
                };
                self.usage = merge_stream_usage(self.usage, &value);
                let usage_only = value
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                if self.strip_usage && usage_only {
                    return;
                }
            }
        }
        if self.strip_usage {
            out.extend_from_slice(&remove_null_usage(event));
        } else {
            out.extend_from_slice(event);
        }
    }
}

/// Length of the first complete event (through its blank line), if one is complete.
fn event_len(buf: &[u8]) -> Option<usize> {
    let lf = find(buf, b"\n\n").map(|i| i + 2);
    let crlf = find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// The payloads of an event's `data:` lines.
fn data_lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data = line.strip_prefix(b"data:")?;
        Some(data.strip_prefix(b" ").unwrap_or(data))
    })
}

/// The event without the `"usage":null` member that `include_usage` adds to each chunk.
fn remove_null_usage(event: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len());
    let mut rest = event;
    loop {
        let next = [&b",\"usage\":null"[..], &b"\"usage\":null,"[..]]
            .iter()
            .filter_map(|pattern| find(rest, pattern).map(|at| (at, pattern.len())))
            .min();
        match next {
            Some((at, len)) => {
                out.extend_from_slice(&rest[..at]);
                rest = &rest[at + len..];
            }
            None => {
                out.extend_from_slice(rest);
                return out;
            }
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.end.is_some() {
                return Poll::Ready(None);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.pending.extend_from_slice(&chunk);
                    let out = this.complete_events();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.end = Some(End::UpstreamCut);
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "the provider's stream failed: {err}"
                    )))));
                }
                Poll::Ready(None) => {
                    this.end = Some(End::Complete);
                    let mut out = this.complete_events();
                    if !this.pending.is_empty() {
                        let tail = this.pending.split();
                        this.pass(&tail, &mut out);
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.settle(self.usage);
        }
        if let Some(ticket) = self.ticket.take() {
            ticket.settle(self.usage, self.charge);
        }
        if let Some(mut log) = self.log.take() {
            log.usage = self.usage;
            let outcome = match self.end {
                Some(End::Complete) => "ok",
                Some(End::UpstreamCut) => "upstream_cut",
                None => "client_gone",
            };
            log.finish(200, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_and_strips_the_added_usage() {
        let chunk = b"data: {\"id\":\"x\",\"choices\":[{\"delta\":{}}],\"usage\":null}\n\ndata: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let first = b"data: {\"id\":\"x\",\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n";
        assert_eq!(event_len(chunk), Some(first.len()));
        assert_eq!(
            remove_null_usage(b"{\"a\":1,\"usage\":null}"),
            b"{\"a\":1}".to_vec()
        );
        assert_eq!(
            remove_null_usage(b"{\"usage\":null,\"a\":1}"),
            b"{\"a\":1}".to_vec()
        );
        assert_eq!(event_len(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_len(b"data: partial"), None);
        let lines: Vec<&[u8]> = data_lines(b"event: e\ndata: {}\n\n").collect();
        assert_eq!(lines, vec![&b"{}"[..]]);
    }
}
