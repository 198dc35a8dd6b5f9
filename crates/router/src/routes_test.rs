//! `aerie-router routes test`: where alerts would go, and whether dedup or a rate limit would
//! hold them (compare `amtool config routes test`). Alerts in the file are replayed in order,
//! as if they arrived together, through fresh dedup and rate-limit state.

use std::fmt::Write;
use std::time::Instant;

use aerie_alert::Alert;

use crate::config::Config;
use crate::dedup::{DedupState, KeySpec, Verdict, repeated_text};
use crate::duration::format_duration;
use crate::ratelimit::Limiter;
use crate::routing::{DEFAULT_ROUTE, Router};

pub fn report(cfg: &Config, alerts: &[Alert]) -> Result<String, String> {
    let router = Router::new(cfg)?;
    let mut dedup: Vec<DedupState> = cfg.outputs.iter().map(|_| DedupState::new()).collect();
    let limiters: Vec<Option<Limiter>> = cfg
        .outputs
        .iter()
        .map(|o| o.rate_limit.as_ref().map(Limiter::new))
        .collect();
    let now = Instant::now();
    let mut s = String::new();
    for (i, a) in alerts.iter().enumerate() {
        let r = router.route(a, false);
        let _ = writeln!(
            s,
            "alert #{i}: {} {:?} (source {}, tags [{}])",
            a.priority,
            a.rule,
            a.source,
            a.tags.join(", ")
        );
        if r.unmatched {
            let _ = writeln!(s, "  routes: none matched -> default outputs");
        } else {
            let names: Vec<&str> = r
                .matched_routes
                .iter()
                .map(|&x| cfg.routes[x as usize].name.as_str())
                .collect();
            let _ = writeln!(s, "  routes: {}", names.join(" -> "));
        }
        if r.targets.is_empty() {
            let _ = writeln!(
                s,
                "  outputs: none (the alert would be counted as without output)"
            );
        }
        for t in &r.targets {
            let o = &cfg.outputs[t.output as usize];
            let route = if t.route == DEFAULT_ROUTE {
                None
            } else {
                Some(&cfg.routes[t.route as usize])
            };
            let d = route.and_then(|r| r.dedup.as_ref()).unwrap_or(&cfg.dedup);
            let spec = KeySpec::new(&d.key);
            let key = spec.hash(a);
            let verdict = match dedup[t.output as usize].check(key, d.window, now) {
                Verdict::Suppress => "SUPPRESSED by dedup (a repeat inside the window)".to_owned(),
                Verdict::Deliver { repeated } => match limiters[t.output as usize]
                    .as_ref()
                    .map(|l| l.try_take(key))
                {
                    Some(Err(wait)) => format!(
                        "HELD by rate limit: folded into a digest sent in {}",
                        format_duration(wait)
                    ),
                    _ if repeated > 0 => format!("deliver ({})", repeated_text(repeated, d.window)),
                    _ => "deliver".to_owned(),
                },
            };
            let _ = writeln!(
                s,
                "  -> output {} ({}) via route {}: {verdict}",
                o.name,
                o.kind.as_str(),
                route.map(|r| r.name.as_str()).unwrap_or("default")
            );
            if d.window.is_zero() {
                let _ = writeln!(s, "     dedup: off");
            } else {
                let parts: Vec<String> = spec
                    .describe(a)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "     dedup: window {}, key {key:016x} [{}]",
                    format_duration(d.window),
                    parts.join(", ")
                );
            }
            if let Some(rl) = &o.rate_limit {
                let _ = writeln!(
                    s,
                    "     rate limit: {}/min, burst {}{}",
                    rl.per_minute,
                    rl.burst,
                    if rl.per_key { ", per dedup key" } else { "" }
                );
            }
        }
        for &o in &r.below_min_priority {
            let o = &cfg.outputs[o as usize];
            let _ = writeln!(
                s,
                "  -x output {} ({}): skipped, {} is below its min_priority {}",
                o.name,
                o.kind.as_str(),
                a.priority,
                o.min_priority
            );
        }
    }
    Ok(s)
}
