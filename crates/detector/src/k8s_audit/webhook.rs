//! The audit webhook: an HTTP endpoint for the API server's audit webhook backend
//! (Falco's k8saudit plugin, `POST http://:9765/k8s-audit`). Each event in the posted
//! `EventList` is judged by the `k8s_audit` rules, and matches go to the same outputs as
//! syscall alerts (`"source": "k8s_audit"`).
//!
//! Answers: 200 with `{"events": N, "alerts": M}`; 400 naming what is wrong with the body
//! (the API server logs it); 413 past `max_body_bytes`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::AuditSource;
use crate::config::K8sAuditConfig;

/// The endpoint's routes.
pub fn router(cfg: &K8sAuditConfig, source: Arc<AuditSource>) -> Router {
    Router::new()
        .route(&cfg.path, post(receive))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(source)
}

async fn receive(State(src): State<Arc<AuditSource>>, body: Bytes) -> Response {
    let metrics = src.metrics.clone();
    // Rule evaluation is CPU work: keep it off the I/O threads for large batches.
    let work = tokio::task::spawn_blocking(move || src.ingest(&body));
    match work.await {
        Ok(Ok((events, alerts))) => (
            StatusCode::OK,
            axum::Json(json!({"events": events, "alerts": alerts})),
        )
            .into_response(),
        Ok(Err(e)) => {
            metrics.add_k8s_audit_rejected();
            tracing::warn!("k8s audit webhook: refused a body: {e}");
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid audit events", "reason": e.to_string()})),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": format!("evaluation failed: {e}")})),
        )
            .into_response(),
    }
}

/// Bind `cfg.listen` and serve until `shutdown` resolves.
pub async fn serve(
    cfg: &K8sAuditConfig,
    source: Arc<AuditSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding k8s_audit.listen {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let app = router(cfg, source);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!("k8s audit webhook server: {e}");
        }
    });
    Ok((addr, task))
}
