//! Who may read the admin surface: the live page (`/`, `/status`), `/status.json` and
//! `/metrics`, which name clients, models, rates and key fingerprints.
//!
//! The rule, decided once at start from the configuration ([`AdminAccess::new`]):
//!
//! | configuration | on `listen` | on `admin_listen` (if set) |
//! |---|---|---|
//! | no `[[clients]]`, no `admin_key_env` | open (so is the API itself) | open |
//! | `admin_key_env` set | the admin key | the admin key |
//! | `[[clients]]`, no `admin_key_env` | refused (403, saying how to open it) | open |
//!
//! A gateway with clients is meant to be reached by others, so its admin surface is never open
//! on the address they reach by default: it needs an admin key, or a separate address (keep
//! `admin_listen` on loopback or a private network). The admin key is sent as
//! `Authorization: Bearer KEY`, as the password of HTTP Basic authentication (what a browser
//! asks for on the live page; any user name), or as `x-api-key`. Like client keys it is kept
//! only as a SHA-256 digest. `/healthz` is not part of the admin surface: load balancers call
//! it without credentials.
//!
//! It must not know what the admin pages show: it only lets a request through or refuses it.

use super::errors::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `listen`: the API's own address.
    Api,
    /// `admin_listen`: the admin surface's own address.
    Admin,
}

/// What the admin surface asks of a request on one listener.
#[derive(Debug, Clone)]
pub enum AdminAccess {
    /// Anyone may read it.
    Open,
    /// Only a request carrying the admin key (its SHA-256 digest).
    Key([u8; 32]),
    /// Nobody on this listener: the gateway has clients and no admin key.
    Closed,
}

impl AdminAccess {
    /// The rule for `listener`, given whether the gateway has `[[clients]]` and the admin key
    /// read from `admin_key_env` (if set).
    pub fn new(listener: Listener, has_clients: bool, admin_key: Option<&str>) -> Self {
        match (admin_key, listener, has_clients) {
            (Some(key), _, _) => AdminAccess::Key(Sha256::digest(key.trim().as_bytes()).into()),
            (None, Listener::Api, true) => AdminAccess::Closed,
            (None, _, _) => AdminAccess::Open,
        }
    }

    /// Whether a request with these headers may read the admin surface; the refusal if not.
    ///
    /// ```
    /// use axum::http::{HeaderMap, HeaderValue, header};
    /// use paceline::gateway::admin::{AdminAccess, Listener};
    ///
    /// let access = AdminAccess::new(Listener::Api, true, Some("admin-secret"));
    /// let mut headers = HeaderMap::new();
    /// assert!(access.check(&headers).is_err());
    /// headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer admin-secret"));
    /// assert!(access.check(&headers).is_ok());
    /// ```
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self {
            AdminAccess::Open => Ok(()),
            AdminAccess::Closed => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("admin_surface_closed"),
                "This gateway has [[clients]], so its status page and metrics are not served on \
                 this address without an admin key: set admin_key_env (--admin-key-env) and send \
                 that key, or read them on admin_listen (--admin-listen)."
                    .into(),
            )),
            AdminAccess::Key(digest) => {
                let given = presented_key(headers);
                match given {
                    Some(key) if Sha256::digest(key.trim().as_bytes()).as_slice() == digest => {
                        Ok(())
                    }
                    Some(_) => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_request_error",
                        Some("invalid_admin_key"),
                        "Incorrect admin key: the status page and metrics need the key held by \
                         the gateway's admin_key_env."
                            .into(),
                    )),
                    None => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_request_error",
                        Some("missing_admin_key"),
                        "The status page and metrics need the admin key: send it as \
                         `Authorization: Bearer KEY` (or as the password of HTTP Basic \
                         authentication)."
                            .into(),
                    )),
                }
            }
        }
    }
}

/// The key a request presents: a bearer token, the password of Basic authentication, or
/// `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim().to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (_user, password) = text.split_once(':')?;
            return Some(password.to_string());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Middleware for the admin routes: let the request through or answer the refusal (a 401
/// invites a browser to ask for the key).
pub async fn guard(
    State(access): State<Arc<AdminAccess>>,
    request: Request,
    next: Next,
) -> Response {
    match access.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let unauthorized = err.status == StatusCode::UNAUTHORIZED;
            let mut response = err.into_response();
            if unauthorized {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"paceline admin\", charset=\"UTF-8\""),
                );
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_rule_by_configuration() {
        let none = HeaderMap::new();
        assert!(
            AdminAccess::new(Listener::Api, false, None)
                .check(&none)
                .is_ok()
        );
        assert!(
            AdminAccess::new(Listener::Admin, true, None)
                .check(&none)
                .is_ok()
        );
        let closed = AdminAccess::new(Listener::Api, true, None).check(&none);
        assert_eq!(closed.unwrap_err().status, StatusCode::FORBIDDEN);
        for listener in [Listener::Api, Listener::Admin] {
            for clients in [false, true] {
                let access = AdminAccess::new(listener, clients, Some("s3cret"));
                assert_eq!(
                    access.check(&none).unwrap_err().status,
                    StatusCode::UNAUTHORIZED
                );
            }
        }
    }

    #[test]
    fn the_key_by_every_scheme() {
        let access = AdminAccess::new(Listener::Api, true, Some("s3cret"));
        assert!(
            access
                .check(&headers("authorization", "Bearer s3cret"))
                .is_ok()
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
        assert!(
            access
                .check(&headers("authorization", &format!("Basic {basic}")))
                .is_ok()
        );
        assert!(access.check(&headers("x-api-key", "s3cret")).is_ok());
        let wrong = access
            .check(&headers("authorization", "Bearer client-key"))
            .unwrap_err();
        assert_eq!(wrong.code, Some("invalid_admin_key"));
        assert!(!wrong.message.contains("client-key"));
        let garbled = access.check(&headers("authorization", "Basic %%%"));
        assert_eq!(garbled.unwrap_err().code, Some("missing_admin_key"));
    }
}
