//! `/healthz` and Prometheus `/metrics` over real HTTP on loopback.

use std::sync::Arc;

use aerie_alert::Priority;
use aerie_detector::metrics::{Metrics, serve};

#[tokio::test]
async fn healthz_follows_readiness_and_metrics_shows_counters() {
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), metrics.clone(), async {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    assert!(addr.ip().is_loopback());
    let client = reqwest::Client::new();
    let health = format!("http://{addr}/healthz");

    let r = client.get(&health).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        503,
        "not ready before the capture is attached"
    );
    metrics.set_ready(true);
    let r = client.get(&health).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    metrics.add_events(1234);
    metrics.set_events_per_second(617.0);
    metrics.set_kernel_drops("ring_full", 9);
    metrics.count_alert("Read sensitive file untrusted", Priority::Warning);
    let r = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = r.text().await.unwrap();
    for line in [
        "aerie_events_total 1234",
        "aerie_events_per_second 617",
        "aerie_kernel_drops_total{reason=\"ring_full\"} 9",
        "aerie_alerts_total{rule=\"Read sensitive file untrusted\",priority=\"warning\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }
    let _ = stop_tx.send(());
    task.await.unwrap();
}
