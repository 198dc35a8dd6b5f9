//! The per-connection HTTP service: `POST /` (one alert per request: what Falco's
//! `http_output` and falcosidekick send, at the alert rate) is answered directly; every other
//! request goes through the axum router of [`crate::ingest::http`].
//!
//! The direct path applies the same rules as the axum stack (request deadline outermost, then
//! the bearer token before any body is read, then the body limit) and shares its handler
//! ([`crate::ingest::ingest_one`]) and error responses; it only skips what costs per request
//! there: route lookup, boxed middleware futures and service clones.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;

use crate::auth::{BearerAuth, refusal_response, timeout_response};
use crate::ingest::{App, body_error_response, ingest_one};

/// Cheap to clone: one per connection.
#[derive(Clone)]
pub struct IngestService {
    app: Arc<App>,
    auth: Option<Arc<BearerAuth>>,
    router: TowerToHyperService<axum::Router>,
}

impl IngestService {
    pub fn new(app: Arc<App>) -> IngestService {
        let router = TowerToHyperService::new(crate::ingest::http(app.clone()));
        IngestService {
            auth: BearerAuth::new(&app.core.config.auth).map(Arc::new),
            app,
            router,
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for IngestService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> BoxFuture {
        if req.method() == Method::POST && req.uri().path() == "/" {
            let (app, auth) = (self.app.clone(), self.auth.clone());
            return Box::pin(async move {
                let limit = app.core.config.request_timeout;
                Ok(
                    match tokio::time::timeout(limit, post_one(&app, auth.as_deref(), req)).await {
                        Ok(r) => r,
                        Err(_) => timeout_response(&app.core),
                    },
                )
            });
        }
        let fut = self.router.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(r) => Ok(r),
                Err(never) => match never {},
            }
        })
    }
}

async fn post_one(app: &App, auth: Option<&BearerAuth>, req: Request<Incoming>) -> Response {
    if let Some(auth) = auth
        && let Err(refusal) = auth.check(req.headers().get(header::AUTHORIZATION))
    {
        app.core.metrics.requests_unauthorized.fetch_add(1, Relaxed);
        tracing::debug!(path = "/", reason = refusal.reason(), "request refused");
        return refusal_response(refusal);
    }
    let limited = Limited::new(req.into_body(), app.core.config.max_body_bytes);
    let body = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            // The wording of axum's body rejections, so both paths answer alike.
            let (status, reason) = if e.is::<LengthLimitError>() {
                (StatusCode::PAYLOAD_TOO_LARGE, None)
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    Some(format!("Failed to buffer the request body: {e}")),
                )
            };
            return body_error_response(app, status, reason);
        }
    };
    ingest_one(app, &body).await
}
