//! Ingest authentication: a bearer token compared in constant time, and a request deadline so
//! slow clients cannot hold connections and memory forever. mTLS lives in [`crate::tls_server`].
//!
//! Falco's `http_output` (libcurl) and falcosidekick clients can send custom headers, so
//! `Authorization: Bearer <token>` works with both.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::config::{AuthConfig, DEFAULT_REQUEST_TIMEOUT, ServerTlsConfig, TOKEN_ENV};
use crate::shared::Core;

/// Checks `Authorization: Bearer <token>`.
///
/// Only the SHA-256 digest of the expected token is kept, and the presented token is hashed
/// before a constant-time comparison (`subtle`, already in the dependency tree through the
/// TLS stack): comparing equal-length digests leaks neither the token's length nor the
/// position of the first differing byte, which a plain `==` on strings would.
pub struct BearerAuth {
    expected: [u8; 32],
    protect_metrics: bool,
    metrics: Option<Arc<Core>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("expected", &"<redacted>")
            .field("protect_metrics", &self.protect_metrics)
            .finish()
    }
}

/// Why a request was refused (never includes what the client sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    WrongScheme,
    InvalidToken,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing Authorization header",
            Refusal::WrongScheme => "the Authorization header must use the Bearer scheme",
            Refusal::InvalidToken => "invalid bearer token",
        }
    }
}

impl BearerAuth {
    pub fn new(cfg: &AuthConfig) -> Option<BearerAuth> {
        let token = cfg.bearer_token.as_ref()?;
        Some(BearerAuth {
            expected: Sha256::digest(token.expose().as_bytes()).into(),
            protect_metrics: cfg.protect_metrics,
            metrics: None,
        })
    }

    /// Probes (falcosidekick's `/ping` too) stay open; `/metrics` unless `protect_metrics`;
    /// everything else needs the token.
    pub fn is_open(&self, path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz" | "/ping")
            || (path == "/metrics" && !self.protect_metrics)
    }

    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?.as_bytes();
        // RFC 7235: the scheme is case-insensitive.
        let (scheme, rest) = value.split_at(value.len().min(7));
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return Err(Refusal::WrongScheme);
        }
        let presented: [u8; 32] = Sha256::digest(rest.trim_ascii()).into();
        if bool::from(presented.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(Refusal::InvalidToken)
        }
    }
}

/// Axum middleware: 401 with `WWW-Authenticate: Bearer` unless the token is right.
pub async fn require_token(
    State(auth): State<Arc<BearerAuth>>,
    req: Request,
    next: Next,
) -> Response {
    if auth.is_open(req.uri().path()) {
        return next.run(req).await;
    }
    match auth.check(req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            if let Some(core) = &auth.metrics {
                core.metrics.requests_unauthorized.fetch_add(1, Relaxed);
            }
            tracing::debug!(
                path = req.uri().path(),
                reason = refusal.reason(),
                "request refused"
            );
            refusal_response(refusal)
        }
    }
}

/// 401 with the `WWW-Authenticate: Bearer` challenge.
pub fn refusal_response(refusal: Refusal) -> Response {
    let challenge = match refusal {
        Refusal::InvalidToken => "Bearer realm=\"aerie-router\", error=\"invalid_token\"",
        _ => "Bearer realm=\"aerie-router\"",
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        axum::Json(json!({
            "error": "unauthorized",
            "field": "authorization",
            "reason": refusal.reason(),
        })),
    )
        .into_response()
}

/// Axum middleware: a request (body included) that takes longer than the deadline gets 408;
/// this is what stops clients that trickle a body byte by byte.
pub async fn deadline(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    let limit = core.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => timeout_response(&core),
    }
}

/// 408 (and close the connection): the request did not complete within `request_timeout`.
pub fn timeout_response(core: &Core) -> Response {
    let limit = core.config.request_timeout;
    core.metrics.requests_timed_out.fetch_add(1, Relaxed);
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(json!({
            "error": "request timeout",
            "field": ".",
            "reason": format!("the request did not complete within {limit:?}"),
        })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Wrap the ingest routes: the deadline outermost, then the token check (before any body is read).
pub fn guard(routes: axum::Router, core: &Arc<Core>) -> axum::Router {
    let routes = match BearerAuth::new(&core.config.auth) {
        Some(mut auth) => {
            auth.metrics = Some(core.clone());
            routes.layer(axum::middleware::from_fn_with_state(
                Arc::new(auth),
                require_token,
            ))
        }
        None => routes,
    };
    routes.layer(axum::middleware::from_fn_with_state(core.clone(), deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> BearerAuth {
        BearerAuth::new(&AuthConfig {
            bearer_token: Some(crate::config::Secret::new("s3cret-token")),
            protect_metrics: false,
        })
        .unwrap()
    }

    #[test]
    fn bearer_scheme_and_token() {
        let a = auth();
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(a.check(Some(&h("Bearer s3cret-token"))), Ok(()));
        assert_eq!(a.check(Some(&h("bearer  s3cret-token "))), Ok(()));
        assert_eq!(a.check(None), Err(Refusal::Missing));
        assert_eq!(
            a.check(Some(&h("Basic czNjcmV0"))),
            Err(Refusal::WrongScheme)
        );
        assert_eq!(a.check(Some(&h("Bearer"))), Err(Refusal::WrongScheme));
        assert_eq!(
            a.check(Some(&h("Bearer s3cret-toke"))),
            Err(Refusal::InvalidToken)
        );
        assert_eq!(
            a.check(Some(&h("Bearer s3cret-token2"))),
            Err(Refusal::InvalidToken)
        );
        assert_eq!(a.check(Some(&h("Bearer "))), Err(Refusal::InvalidToken));
    }

    #[test]
    fn probes_open_metrics_configurable() {
        let mut a = auth();
        assert!(a.is_open("/healthz") && a.is_open("/readyz") && a.is_open("/metrics"));
        assert!(a.is_open("/ping"));
        assert!(!a.is_open("/") && !a.is_open("/v1/alerts") && !a.is_open("/test"));
        a.protect_metrics = true;
        assert!(!a.is_open("/metrics"));
    }

    #[test]
    fn debug_redacts_the_token() {
        let cfg = AuthConfig {
            bearer_token: Some(crate::config::Secret::new("s3cret-token")),
            protect_metrics: false,
        };
        let dump = format!("{cfg:?} {:?}", auth());
        assert!(!dump.contains("s3cret"), "{dump}");
        assert!(dump.contains("redacted"), "{dump}");
    }
}
