//! `429` with `Retry-After: 3` from a webhook on 127.0.0.1: the router waits the 3 s the
//! receiver asked for before the next attempt (and not much longer), then delivers.

mod common;

use std::time::Duration;

use common::{Api, FALCO_DOC_ALERT, Receiver, Reply, post, start_router, temp_dir, wait_lines};

#[tokio::test]
async fn webhook_429_retry_after_3s_is_honoured() {
    let hook = Receiver::start(Api::Webhook).await;
    hook.script(&[Reply::TooMany {
        retry_after_secs: 3,
    }]);
    let dir = temp_dir("retry-after");
    let file = dir.join("alerts.jsonl");
    // A short initial backoff, so only Retry-After can explain a 3 s wait.
    let r = start_router(&format!(
        "outputs:\n  - {{name: hook, type: webhook, url: \"{}\", retry: {{max_attempts: 5, initial_backoff: 50ms, max_backoff: 200ms}}}}\n  - {{name: f, type: file, path: {}}}\n",
        hook.url(),
        file.display()
    ))
    .await;
    let (status, body, _) = post(r.addr, "/", FALCO_DOC_ALERT).await;
    assert_eq!(status, 200, "{body}");
    // The file output is not held back by the webhook's wait.
    wait_lines(&file, 1).await;
    let got = hook.wait_for(1).await;
    let attempts = hook.attempts();
    assert_eq!(attempts.len(), 2, "one 429, then one delivery");
    let gap = attempts[1] - attempts[0];
    println!("second attempt {gap:?} after the 429");
    assert!(
        gap >= Duration::from_secs(3),
        "retried after {gap:?}, before Retry-After: 3"
    );
    assert!(gap < Duration::from_secs(8), "retried only after {gap:?}");
    assert_eq!(got[0].json()["rule"], "Terminal shell in container");
    assert_eq!(got[0].at, attempts[1]);
    r.shutdown().await.unwrap();
}
