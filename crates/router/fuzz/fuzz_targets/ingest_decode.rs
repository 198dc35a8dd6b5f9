//! Fuzz the ingest path's decoder: `POST /` (one alert) and `POST /v1/alerts` (array or NDJSON)
//! bodies, then what the router does with a decoded alert — routing, dedup key, escaping.
//!
//! Run: `cd crates/router/fuzz && cargo +nightly fuzz run ingest_decode -- -max_total_time=600`
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aerie_alert::{Alert, decode_alert, decode_batch};
use aerie_router::config::Config;
use aerie_router::dedup::KeySpec;
use aerie_router::render::{json_escape, slack_escape};
use aerie_router::routing::Router;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
outputs:
  - {name: a, type: stdout, min_priority: warning}
  - {name: b, type: stdout}
routes:
  - match: { priority: ">= critical", tags_any: [container], rule: "/^Terminal.*(shell|tty)/" }
    outputs: [a]
    continue: true
  - match: { rule: "K8s *", output_fields: { k8s.ns.name: "kube-*", container.id: { exists: true } } }
    outputs: [b]
default_outputs: [b]
"#;

fn router() -> &'static (Router, KeySpec) {
    static R: OnceLock<(Router, KeySpec)> = OnceLock::new();
    R.get_or_init(|| {
        let cfg = Config::parse("fuzz.yaml", CONFIG, &BTreeMap::<String, String>::new()).unwrap();
        (Router::new(&cfg).unwrap(), KeySpec::new(&cfg.dedup.key))
    })
}

fn exercise(a: &Alert) {
    // What ingest accepted must survive the trip to a webhook and back.
    let back = decode_alert(a.to_json().as_bytes()).expect("an accepted alert re-decodes");
    assert_eq!(back.rule, a.rule);
    assert_eq!(back.priority, a.priority);
    // Not `time`: an offset can carry 9999-12-31T23:59:59-01:00 past year 9999, which
    // aerie-alert's Timestamp cannot print (reported to the lead; it falls back to the epoch).
    assert_eq!(back.tags, a.tags);
    let (router, key) = router();
    let routed = router.route(a, false);
    assert!(!routed.targets.is_empty() || !routed.below_min_priority.is_empty());
    let _ = key.hash(a);
    for text in [&a.output, &a.rule, &a.hostname] {
        let s = slack_escape(text);
        assert!(!s.contains('<') && !s.contains('>'));
        let decoded: String =
            serde_json::from_str(&format!("\"{s}\"")).expect("escaped text is a JSON string");
        assert!(!decoded.contains('<'));
        let j: String =
            serde_json::from_str(&format!("\"{}\"", json_escape(text))).expect("JSON-escaped");
        assert_eq!(&j, text);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = decode_alert(data) {
        exercise(&a);
    }
    if let Ok(items) = decode_batch(data) {
        for a in items.into_iter().flatten() {
            exercise(&a);
        }
    }
});
