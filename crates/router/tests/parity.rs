//! falcosidekick parity on the HTTP surface: `GET /ping` and a JSON `/healthz` (open even
//! with a bearer token, as the falcosidekick chart's probes send none), alerts without `output`
//! (Falco with `json_include_output_property: false`), and `POST /test` reaching every output
//! of a routed config.

mod common;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "parity-token-0123456789abcdef";

#[tokio::test]
async fn ping_and_healthz_answer_like_falcosidekick_without_a_token() {
    let dir = temp_dir("parity-probes");
    let r = start_router(&format!(
        "auth: {{ bearer_token: {TOKEN} }}\noutputs:\n  - {{name: a, type: file, path: {}}}\n",
        dir.join("a.jsonl").display()
    ))
    .await;
    let ping = reqwest::get(format!("http://{}/ping", r.addr))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), "pong\n");

    let health = reqwest::get(format!("http://{}/healthz", r.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value =
        serde_json::from_str(&health.text().await.unwrap()).expect("/healthz answers JSON");
    assert_eq!(body, json!({"status": "ok"}));

    // The token still guards ingest.
    assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 401);
    r.shutdown().await.unwrap();
}
