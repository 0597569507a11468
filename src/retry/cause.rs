//! Why an attempt is worth retrying ([`RetryCause`]), with its stable label for logs, the
//! summary and the store's attempt rows.
//!
//! Owns the retry vocabulary shared by the classification, the engine's reaction and a
//! failure's status. It must not know how a cause is found or what is done about it.

/// Why an attempt is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// 429 on the requests dimension.
    RateLimitRequests,
    /// 429 on the tokens dimension.
    RateLimitTokens,
    /// 429 on the input tokens dimension (Anthropic: "… input tokens per minute").
    RateLimitInputTokens,
    /// 429 on the output tokens dimension (Anthropic: "… output tokens per minute").
    RateLimitOutputTokens,
    /// 429 whose dimension is unknown.
    RateLimit,
    /// 529, or a 5xx that says the service is overloaded: load, not quota.
    Overloaded,
    /// Any other 5xx, with its status.
    ServerError(u16),
    /// The attempt timed out on our side.
    Timeout,
    /// 408 Request Timeout.
    RequestTimeout,
    /// 409 Conflict.
    Conflict,
    /// Connect failure or connection reset.
    Connection,
    /// The body or stream was cut short or did not parse.
    Truncated,
    /// A status that is otherwise final, answered with `x-should-retry: true`.
    ServerRequested,
}

impl RetryCause {
    /// A short, stable snake_case label for logs and the summary: `rate_limit_requests`,
    /// `server_error_500`, `overloaded`, …
    pub fn label(&self) -> &'static str {
        match self {
            Self::RateLimitRequests => "rate_limit_requests",
            Self::RateLimitTokens => "rate_limit_tokens",
            Self::RateLimitInputTokens => "rate_limit_input_tokens",
            Self::RateLimitOutputTokens => "rate_limit_output_tokens",
            Self::RateLimit => "rate_limit",
            Self::Overloaded => "overloaded",
            Self::ServerError(status) => server_error_label(*status),
            Self::Timeout => "timeout",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::Connection => "connection",
            Self::Truncated => "truncated",
            Self::ServerRequested => "server_requested",
        }
    }
}

/// Defines `server_error_label`, mapping each listed status to `server_error_<status>`.
macro_rules! server_error_labels {
    ($($status:literal)*) => {
        /// `server_error_<status>` for a 5xx, `server_error` for anything else.
        fn server_error_label(status: u16) -> &'static str {
            match status {
                $($status => concat!("server_error_", $status),)*
                _ => "server_error",
            }
        }
    };
}

server_error_labels!(
    500 501 502 503 504 505 506 507 508 509 510 511 512 513 514 515 516 517 518 519
    520 521 522 523 524 525 526 527 528 529 530 531 532 533 534 535 536 537 538 539
    540 541 542 543 544 545 546 547 548 549 550 551 552 553 554 555 556 557 558 559
    560 561 562 563 564 565 566 567 568 569 570 571 572 573 574 575 576 577 578 579
    580 581 582 583 584 585 586 587 588 589 590 591 592 593 594 595 596 597 598 599
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        use RetryCause::*;
        let cases = [
            (RateLimitRequests, "rate_limit_requests"),
            (RateLimitTokens, "rate_limit_tokens"),
            (RateLimitInputTokens, "rate_limit_input_tokens"),
            (RateLimitOutputTokens, "rate_limit_output_tokens"),
            (RateLimit, "rate_limit"),
            (Overloaded, "overloaded"),
            (ServerError(500), "server_error_500"),
            (ServerError(503), "server_error_503"),
            (ServerError(599), "server_error_599"),
            (ServerError(600), "server_error"),
            (Timeout, "timeout"),
            (RequestTimeout, "request_timeout"),
            (Conflict, "conflict"),
            (Connection, "connection"),
            (Truncated, "truncated"),
            (ServerRequested, "server_requested"),
        ];
        for (cause, label) in cases {
            assert_eq!(cause.label(), label);
        }
    }
}
