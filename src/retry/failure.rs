//! How a request ends for good: [`Failure`], with the stable code written to the output, the
//! job store and the report, the HTTP status the gateway answers it with, and whether sending
//! the request again could ever help.
//!
//! Owns the failure codes: this is the only place that spells them, and the only place that
//! reads a stored code back ([`Failure::from`]). It must not know the engine, the gateway, the
//! store or the report; they all take their failures from here.

use super::cause::RetryCause;
use crate::provider::error_body::QUOTA_CODES;
use serde::{Serialize, Serializer};
use std::fmt;

/// How a request ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `deadline_exceeded`: no attempt could be sent before the request's deadline.
    DeadlineExceeded,
    /// `model_not_routed`: no key in rotation serves the request's model.
    NoRoute,
    /// `request_too_large`: the request can never fit: over a quota's burst, a 413, or OpenAI's
    /// "Request too large" 429.
    RequestTooLarge,
    /// `max_attempts_exceeded`: every attempt allowed failed in a retryable way.
    MaxAttemptsExceeded,
    /// The key has no quota or credit left (`insufficient_quota`, or OpenAI's own billing
    /// code as sent: `credit_balance_exhausted`, …); the key leaves rotation.
    KeyRefused(String),
    /// `authentication_error`: the provider refused the key (401); the key leaves rotation.
    Authentication,
    /// `permission_denied`: the key may not use this model, endpoint or region (403); the key
    /// stays, as it still serves everything else.
    PermissionDenied,
    /// Any other final answer: the provider's `error.code`, else its `error.type`, else a code
    /// derived from the status (`invalid_request`, `not_found`, `http_418`, …).
    Provider(String),
}

const DEADLINE_EXCEEDED: &str = "deadline_exceeded";
const NO_ROUTE: &str = "model_not_routed";
const REQUEST_TOO_LARGE: &str = "request_too_large";
const MAX_ATTEMPTS_EXCEEDED: &str = "max_attempts_exceeded";
const AUTHENTICATION: &str = "authentication_error";
const PERMISSION_DENIED: &str = "permission_denied";

impl Failure {
    /// The stable snake_case code written to the output and the store.
    pub fn code(&self) -> &str {
        match self {
            Failure::DeadlineExceeded => DEADLINE_EXCEEDED,
            Failure::NoRoute => NO_ROUTE,
            Failure::RequestTooLarge => REQUEST_TOO_LARGE,
            Failure::MaxAttemptsExceeded => MAX_ATTEMPTS_EXCEEDED,
            Failure::Authentication => AUTHENTICATION,
            Failure::PermissionDenied => PERMISSION_DENIED,
            Failure::KeyRefused(code) | Failure::Provider(code) => code,
        }
    }

    /// Whether the key that got this answer must leave rotation (no wait makes it usable).
    pub fn removes_key(&self) -> bool {
        matches!(self, Failure::Authentication | Failure::KeyRefused(_))
    }

    /// Whether sending the same request again could ever succeed. False for a request too
    /// large for the limits, a key without quota and a model no key serves; true otherwise
    /// (the moment, the key or the server's mind may change). A provider's `x-should-retry:
    /// true` turns only a retryable failure into a retry.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Failure::RequestTooLarge | Failure::KeyRefused(_) | Failure::NoRoute
        )
    }

    /// The status the gateway answers with when it has no provider answer to relay, `last`
    /// being the cause of the request's last failed attempt: 400 for a request that cannot be
    /// served as it is; 504 after a timeout; 429 when the deadline passed waiting for
    /// capacity; 502 otherwise (the provider could not be reached, or refused the gateway's
    /// key, or kept failing).
    pub fn http_status(&self, last: Option<RetryCause>) -> u16 {
        match (self, last) {
            (Failure::NoRoute | Failure::RequestTooLarge, _) => 400,
            (_, Some(RetryCause::Timeout | RetryCause::RequestTimeout)) => 504,
            (_, Some(RetryCause::Connection | RetryCause::Truncated)) => 502,
            (Failure::DeadlineExceeded, _) => 429,
            _ => 502,
        }
    }
}

impl From<&str> for Failure {
    /// The failure a stored code stands for (the store and the output keep codes only).
    fn from(code: &str) -> Self {
        match code {
            DEADLINE_EXCEEDED => Failure::DeadlineExceeded,
            NO_ROUTE => Failure::NoRoute,
            REQUEST_TOO_LARGE => Failure::RequestTooLarge,
            MAX_ATTEMPTS_EXCEEDED => Failure::MaxAttemptsExceeded,
            AUTHENTICATION => Failure::Authentication,
            PERMISSION_DENIED => Failure::PermissionDenied,
            _ if QUOTA_CODES.contains(&code) => Failure::KeyRefused(code.to_owned()),
            _ => Failure::Provider(code.to_owned()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Failure {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back_as_written() {
        let failures = [
            Failure::DeadlineExceeded,
            Failure::NoRoute,
            Failure::RequestTooLarge,
            Failure::MaxAttemptsExceeded,
            Failure::KeyRefused("insufficient_quota".into()),
            Failure::KeyRefused("credit_balance_exhausted".into()),
            Failure::Authentication,
            Failure::PermissionDenied,
            Failure::Provider("context_length_exceeded".into()),
            Failure::Provider("http_418".into()),
        ];
        for failure in failures {
            assert_eq!(Failure::from(failure.code()), failure);
            assert_eq!(failure.to_string(), failure.code());
        }
    }

    #[test]
    fn codes_are_stable() {
        let cases = [
            (Failure::DeadlineExceeded, "deadline_exceeded"),
            (Failure::NoRoute, "model_not_routed"),
            (Failure::RequestTooLarge, "request_too_large"),
            (Failure::MaxAttemptsExceeded, "max_attempts_exceeded"),
            (Failure::Authentication, "authentication_error"),
            (Failure::PermissionDenied, "permission_denied"),
        ];
        for (failure, code) in cases {
            assert_eq!(failure.code(), code);
            assert_eq!(serde_json::to_value(&failure).ok(), Some(code.into()));
        }
    }

    #[test]
    fn statuses_the_gateway_answers() {
        use RetryCause::*;
        let cases = [
            (Failure::NoRoute, Some(Timeout), 400),
            (Failure::RequestTooLarge, None, 400),
            (Failure::DeadlineExceeded, None, 429),
            (Failure::DeadlineExceeded, Some(RateLimit), 429),
            (Failure::DeadlineExceeded, Some(Timeout), 504),
            (Failure::DeadlineExceeded, Some(Connection), 502),
            (Failure::MaxAttemptsExceeded, Some(RequestTimeout), 504),
            (Failure::MaxAttemptsExceeded, Some(Truncated), 502),
            (Failure::MaxAttemptsExceeded, Some(ServerError(500)), 502),
            (Failure::Authentication, None, 502),
        ];
        for (failure, last, status) in cases {
            assert_eq!(
                failure.http_status(last),
                status,
                "{failure} after {last:?}"
            );
        }
    }

    #[test]
    fn what_a_retry_or_a_key_can_fix() {
        assert!(Failure::Authentication.removes_key());
        assert!(Failure::KeyRefused("billing_not_active".into()).removes_key());
        assert!(!Failure::PermissionDenied.removes_key());
        assert!(!Failure::RequestTooLarge.is_retryable());
        assert!(!Failure::KeyRefused("insufficient_quota".into()).is_retryable());
        assert!(!Failure::NoRoute.is_retryable());
        assert!(Failure::Authentication.is_retryable());
        assert!(Failure::Provider("not_found".into()).is_retryable());
    }
}
