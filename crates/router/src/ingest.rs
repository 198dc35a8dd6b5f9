//! HTTP ingest (axum): Falco's `http_output` and falcosidekick's API on port 2801.
//!
//! - `POST /`          one Falco JSON alert
//! - `POST /v1/alerts` a batch: JSON array or NDJSON (all or nothing)
//! - `POST /test`      a test alert to every output (only through the routes with
//!   `test_alert: {routed: true}`); skips min_priority, dedup, rate limits
//! - `GET /ping` (`pong`, as falcosidekick), `GET /healthz` (`{"status":"ok"}`),
//!   `GET /readyz`, `GET /metrics`
//!
//! An alert without `output` is accepted; the text is built from its other keys
//! ([`crate::falco_output`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aerie_alert::{Alert, DecodeError, Priority, Timestamp, decode_alert, decode_batch};
use axum::Router as Http;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::falco_output;
use crate::queue::{AcceptError, Envelope, QueueSet};
use crate::routing::Router;
use crate::shared::Core;

/// Ingest state: the routing table and the queues alerts are accepted into.
pub struct App {
    pub core: Arc<Core>,
    pub router: Router,
    pub queues: QueueSet,
    pub ready: AtomicBool,
}

pub fn http(app: Arc<App>) -> Http {
    let limit = app.core.config.max_body_bytes;
    let core = app.core.clone();
    let routes = Http::new()
        .route("/", post(post_one))
        .route("/v1/alerts", post(post_batch))
        .route("/test", post(post_test))
        .route("/ping", get(|| async { "pong\n" }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    crate::auth::guard(routes, &core)
}

fn json_error(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn decode_error_response(e: &DecodeError) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid alert", "field": e.field, "reason": e.reason, "index": e.index}),
    )
}

fn body_error(app: &App, r: BytesRejection) -> Response {
    let reason = (r.status() != StatusCode::PAYLOAD_TOO_LARGE).then(|| r.body_text());
    body_error_response(app, r.status(), reason)
}

/// The body could not be read: `status` with `reason`, or (`None`) the body-limit reason
/// that goes with 413.
pub(crate) fn body_error_response(
    app: &App,
    status: StatusCode,
    reason: Option<String>,
) -> Response {
    let reason = reason.unwrap_or_else(|| {
        format!(
            "request body is larger than {} bytes",
            app.core.config.max_body_bytes
        )
    });
    app.core.metrics.requests_bad.fetch_add(1, Relaxed);
    json_error(
        status,
        json!({"error": "unreadable body", "field": ".", "reason": reason}),
    )
}

async fn post_one(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match body {
        Ok(b) => ingest_one(&app, &b).await,
        Err(r) => body_error(&app, r),
    }
}

/// `POST /`: one Falco alert (the axum route and the direct path in [`crate::service`]).
pub(crate) async fn ingest_one(app: &App, body: &[u8]) -> Response {
    let start = Instant::now();
    match decode_alert(body) {
        Ok(mut alert) => {
            // A built output is not in the received JSON: store the alert as decoded then.
            let json = (!falco_output::fill_missing(&mut alert)).then_some(body);
            accept(app, std::iter::once(alert), json, false, start).await
        }
        Err(e) => {
            app.core.metrics.requests_bad.fetch_add(1, Relaxed);
            app.core.metrics.alerts_rejected.fetch_add(1, Relaxed);
            decode_error_response(&e)
        }
    }
}

async fn post_batch(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_error(&app, r),
    };
    let start = Instant::now();
    let items = match decode_batch(&body) {
        Ok(items) => items,
        Err(e) => {
            app.core.metrics.requests_bad.fetch_add(1, Relaxed);
            return decode_error_response(&e);
        }
    };
    if items.is_empty() {
        app.core.metrics.requests_bad.fetch_add(1, Relaxed);
        return json_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid batch", "field": ".", "reason": "the batch holds no alert"}),
        );
    }
    let mut alerts = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for item in items {
        match item {
            Ok(mut a) => {
                falco_output::fill_missing(&mut a);
                alerts.push(a);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // All or nothing: a client can fix and resend the batch without creating duplicates.
        app.core.metrics.requests_bad.fetch_add(1, Relaxed);
        app.core
            .metrics
            .alerts_rejected
            .fetch_add(errors.len() as u64, Relaxed);
        let first = &errors[0];
        return json_error(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid alert in batch; nothing was accepted",
                "field": first.field, "reason": first.reason, "index": first.index,
                "errors": errors.iter().take(100).collect::<Vec<_>>(),
            }),
        );
    }
    accept(&app, alerts.into_iter(), None, false, start).await
}

async fn post_test(State(app): State<Arc<App>>) -> Response {
    let alert = Alert {
        hostname: hostname(),
        output: "This is a test from aerie-router".into(),
        output_fields: serde_json::Map::new(),
        priority: Priority::Debug,
        rule: "Test rule".into(),
        source: "aerie".into(),
        tags: vec!["test".into(), "example".into()],
        time: Timestamp::now(),
    };
    accept(&app, std::iter::once(alert), None, true, Instant::now()).await
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Route and queue; 200 only once every job is queued. `json`: the single alert's JSON as
/// received (stored as is by the durable queue).
async fn accept(
    app: &App,
    alerts: impl ExactSizeIterator<Item = Alert>,
    json: Option<&[u8]>,
    test: bool,
    start: Instant,
) -> Response {
    let m = &app.core.metrics;
    let mut batch = Vec::with_capacity(alerts.len());
    let mut unmatched = 0u64;
    let mut no_output = 0u64;
    for alert in alerts {
        let routed = if test {
            app.router.route_test(&alert)
        } else {
            app.router.route(&alert, false)
        };
        unmatched += routed.unmatched as u64;
        for &o in &routed.below_min_priority {
            m.output(o as usize)
                .below_min_priority
                .fetch_add(1, Relaxed);
        }
        if routed.targets.is_empty() {
            no_output += 1;
        }
        let env = Arc::new(Envelope {
            alert,
            test,
            received: start,
        });
        batch.push((env, routed.targets));
    }
    match app.queues.accept_with_json(&batch, json).await {
        Ok(()) => {
            let n = batch.len() as u64;
            m.requests_ok.fetch_add(1, Relaxed);
            m.alerts_accepted.fetch_add(n, Relaxed);
            m.alerts_unmatched.fetch_add(unmatched, Relaxed);
            m.alerts_no_output.fetch_add(no_output, Relaxed);
            for (_, targets) in &batch {
                for t in targets {
                    m.output(t.output as usize).queued.fetch_add(1, Relaxed);
                }
            }
            m.observe_ingest(start.elapsed());
            let body = if n == 1 {
                // The common case (Falco's http_output): no formatting, no allocation.
                axum::body::Body::from(Bytes::from_static(b"{\"accepted\":1}"))
            } else {
                axum::body::Body::from(format!("{{\"accepted\":{n}}}"))
            };
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => {
            m.requests_busy.fetch_add(1, Relaxed);
            let reason = match e {
                AcceptError::Full { output } => format!(
                    "queue of output {} is full",
                    app.core.config.outputs[output].name
                ),
                AcceptError::Closed | AcceptError::SpoolFull(_) | AcceptError::Spool(_) => {
                    e.to_string()
                }
            };
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "not accepted, retry later", "field": ".", "reason": reason}),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

/// Liveness, as falcosidekick answers it: the process serves HTTP.
async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(br#"{"status":"ok"}"#),
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut body = app.core.metrics.render(|i| app.queues.depth(i));
    app.queues.write_metrics(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
