//! Any bytes as a rule file: loading and compiling must never panic, and a file that loads
//! must evaluate an event without panicking.
#![no_main]

use aerie_rules::{EngineConfig, JsonEvent, Matches, RuleLoader, RuleMatching};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loader = RuleLoader::new();
    loader.load_str("fuzz.yaml", text);
    let engine = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    let ev = JsonEvent::parse(
        r#"{"source":"syscall","fields":{"evt.type":"openat","fd.name":"/etc/shadow","proc.name":"cat","proc.aname":["bash","sshd"],"evt.arg.flags":"O_RDONLY","proc.pid":7}}"#,
    )
    .expect("fixed event parses");
    let mut m = Matches::new();
    engine.evaluate(&ev, &mut m);
    for id in m.iter() {
        let _ = engine.alert(id, &ev, "fuzz");
    }
});
