//! Any text as a condition: parsing never panics; what parses prints to text that parses
//! back to the same text; compiling it as a rule never panics.
#![no_main]

use aerie_rules::condition::parse;
use aerie_rules::{EngineConfig, JsonEvent, Matches, RuleLoader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cond) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = parse(cond) else {
        return;
    };
    let printed = expr.to_string();
    let reparsed = parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(reparsed.to_string(), printed, "printing is not stable for {cond:?}");

    // As a rule (single-quoted YAML keeps the text verbatim).
    let yaml = format!(
        "- macro: m\n  condition: proc.name = x\n- list: l\n  items: [a, b]\n- rule: r\n  desc: d\n  condition: '{}'\n  output: '%proc.name'\n  priority: info\n",
        cond.replace('\'', "''").replace('\n', " ")
    );
    let mut loader = RuleLoader::new();
    loader.load_str("fuzz.yaml", &yaml);
    let engine = loader.compile(&EngineConfig::default());
    let ev = JsonEvent::parse(
        r#"{"fields":{"evt.type":"execve","proc.name":"x","proc.aname":["a"],"fd.name":"/tmp/a"}}"#,
    )
    .expect("fixed event parses");
    let mut m = Matches::new();
    engine.evaluate(&ev, &mut m);
});
