//! Route matching: compiled matchers, evaluated in order; the first match wins unless the route
//! says `continue: true`. Alerts that match nothing go to the default outputs.

use aerie_alert::{Alert, Priority};

use crate::config::Config;
pub use crate::matcher::{Cmp, MatchError, Matcher, TextPattern, parse_priority_cmp};

/// Where one alert goes: output index and the index of the route that sent it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub output: u16,
    /// Route index, or [`DEFAULT_ROUTE`] for the default outputs.
    pub route: u16,
}

/// The pseudo-route of alerts that matched no route.
pub const DEFAULT_ROUTE: u16 = u16::MAX;

/// The outcome of routing one alert.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Routed {
    pub targets: Vec<Target>,
    /// Routes that matched, in order.
    pub matched_routes: Vec<u16>,
    /// Outputs skipped because the alert is below their `min_priority`.
    pub below_min_priority: Vec<u16>,
    /// No route matched; the default outputs were used.
    pub unmatched: bool,
}

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Option<Matcher>, Vec<u16>, bool)>,
    defaults: Vec<u16>,
    min_priority: Vec<Priority>,
    /// `test_alert.routed`: the test alert is routed like any other.
    test_routed: bool,
}

impl Router {
    /// The routing table of `cfg` (its matchers were compiled when it was loaded). Kept
    /// fallible for callers; a loaded config always routes.
    pub fn new(cfg: &Config) -> Result<Router, String> {
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                (
                    r.compiled.clone(),
                    r.outputs.iter().map(|&o| o as u16).collect(),
                    r.cont,
                )
            })
            .collect();
        Ok(Router {
            routes,
            defaults: cfg.default_outputs.iter().map(|&o| o as u16).collect(),
            min_priority: cfg.outputs.iter().map(|o| o.min_priority).collect(),
            test_routed: cfg.test_alert_routed,
        })
    }

    /// Route the test alert of `POST /test`: to every output (on the default route, past each
    /// `min_priority`), as falcosidekick does, unless `test_alert.routed` sends it through the
    /// routes.
    pub fn route_test(&self, a: &Alert) -> Routed {
        if self.test_routed {
            return self.route(a, true);
        }
        Routed {
            targets: (0..self.min_priority.len() as u16)
                .map(|output| Target {
                    output,
                    route: DEFAULT_ROUTE,
                })
                .collect(),
            ..Routed::default()
        }
    }

    /// Route one alert. Each output appears once, with the first route that reached it.
    pub fn route(&self, a: &Alert, bypass_min_priority: bool) -> Routed {
        let mut out = Routed::default();
        let push = |out: &mut Routed, o: u16, route: u16| {
            if out.targets.iter().any(|t| t.output == o) || out.below_min_priority.contains(&o) {
                return;
            }
            if !bypass_min_priority && a.priority < self.min_priority[o as usize] {
                out.below_min_priority.push(o);
                return;
            }
            out.targets.push(Target { output: o, route });
        };
        for (i, (m, outputs, cont)) in self.routes.iter().enumerate() {
            if m.as_ref().is_none_or(|m| m.matches(a)) {
                out.matched_routes.push(i as u16);
                for &o in outputs {
                    push(&mut out, o, i as u16);
                }
                // A route that reached no output (each filtered it by min_priority) does not
                // stop the walk: the alert falls through to the next route.
                if !cont && !out.targets.is_empty() {
                    return out;
                }
            }
        }
        out.unmatched = out.matched_routes.is_empty();
        if out.targets.is_empty() {
            // Matched nothing, or nothing it matched reached an output: the default outputs.
            for &o in &self.defaults {
                push(&mut out, o, DEFAULT_ROUTE);
            }
        }
        out
    }
}

/// Routes whose outputs can all filter an alert the route takes (each output's `min_priority`
/// is above the lowest priority the route matches): such alerts reach none of the route's
/// outputs and fall through. One line per route, for `check-config`.
pub fn filtering_routes(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for r in &cfg.routes {
        let lowest = match r.matcher.as_ref().and_then(|m| m.priority.as_deref()) {
            None => Priority::Debug,
            Some(p) => match parse_priority_cmp(p) {
                Ok((Cmp::Ge | Cmp::Eq, p)) => p,
                // The next priority up from `p`.
                Ok((Cmp::Gt, p)) => Priority::ALL
                    .iter()
                    .rev()
                    .copied()
                    .find(|&q| q > p)
                    .unwrap_or(p),
                Ok((Cmp::Le | Cmp::Lt, _)) | Err(_) => Priority::Debug,
            },
        };
        let floor = r
            .outputs
            .iter()
            .map(|&o| cfg.outputs[o].min_priority)
            .min()
            .unwrap_or(Priority::Debug);
        if floor > lowest {
            let names: Vec<&str> = r
                .outputs
                .iter()
                .map(|&o| cfg.outputs[o].name.as_str())
                .collect();
            out.push(format!(
                "{}{}: route {}: its outputs ({}) all take {floor} and above, but it matches {lowest}: those alerts reach none of them and fall through to the next route",
                cfg.source,
                r.line.map(|l| format!(":{l}")).unwrap_or_default(),
                r.name,
                names.join(", "),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::BTreeMap;

    fn alert(priority: &str, rule: &str, source: &str, tags: &[&str]) -> Alert {
        let tags = tags
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(",");
        aerie_alert::decode_alert(
            format!(
                r#"{{"output":"x","priority":"{priority}","rule":"{rule}","source":"{source}","tags":[{tags}],"hostname":"node-1","time":"2023-05-25T13:44:05Z","output_fields":{{"k8s.ns.name":"prod","proc.tty":0,"fd.name":null}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn router(yaml: &str) -> (Config, Router) {
        let c = Config::parse("t.yaml", yaml, &BTreeMap::new()).unwrap();
        let r = Router::new(&c).unwrap();
        (c, r)
    }

    fn names(c: &Config, r: &Routed) -> Vec<String> {
        r.targets
            .iter()
            .map(|t| c.outputs[t.output as usize].name.clone())
            .collect()
    }

    const OUTPUTS: &str = "outputs:\n  - {name: pd, type: stdout, min_priority: critical}\n  - {name: slack, type: stdout}\n  - {name: archive, type: stdout}\n  - {name: fallback, type: stdout}\n";

    #[test]
    fn priority_tags_continue_and_catch_all() {
        let yaml = format!(
            "{OUTPUTS}routes:\n  - name: page\n    match: {{ priority: \">= critical\", tags_any: [container, k8s] }}\n    outputs: [pd, slack]\n    continue: true\n  - match: {{ source: k8s_audit, rule: \"K8s Secret*\" }}\n    outputs: [slack]\n  - outputs: [archive]\n"
        );
        let (c, r) = router(&yaml);
        let crit = r.route(
            &alert("Critical", "Shell", "syscall", &["container"]),
            false,
        );
        assert_eq!(names(&c, &crit), ["pd", "slack", "archive"]);
        assert_eq!(crit.matched_routes, [0, 2]);

        // Below critical: page does not match; only the catch-all.
        let warn = r.route(&alert("Warning", "Shell", "syscall", &["container"]), false);
        assert_eq!(names(&c, &warn), ["archive"]);

        // Critical but no matching tag.
        let untagged = r.route(&alert("Critical", "Shell", "syscall", &["host"]), false);
        assert_eq!(names(&c, &untagged), ["archive"]);

        // Glob on rule; first match wins without continue.
        let k8s = r.route(&alert("Notice", "K8s Secret Get", "k8s_audit", &[]), false);
        assert_eq!(names(&c, &k8s), ["slack"]);
        let k8s = r.route(&alert("Notice", "K8s Secret Get", "syscall", &[]), false);
        assert_eq!(names(&c, &k8s), ["archive"]);
    }

    #[test]
    fn regex_fields_and_defaults() {
        let yaml = format!(
            "{OUTPUTS}routes:\n  - match: {{ rule: \"/^Terminal (shell|tty)/\", tags_none: [noisy] }}\n    outputs: [slack]\n  - match:\n      tags_all: [a, b]\n      output_fields:\n        k8s.ns.name: \"prod*\"\n        proc.tty: {{ equals: \"0\" }}\n        fd.name: {{ exists: false }}\n        container.id: {{ exists: false }}\n    outputs: [archive]\n  - match: {{ priority: \"<= debug\" }}\n    outputs: [archive]\ndefault_outputs: [fallback]\n"
        );
        let (c, r) = router(&yaml);
        assert_eq!(
            names(
                &c,
                &r.route(
                    &alert("Error", "Terminal shell in container", "syscall", &[]),
                    false
                )
            ),
            ["slack"]
        );
        assert_eq!(
            names(
                &c,
                &r.route(
                    &alert(
                        "Error",
                        "Terminal shell in container",
                        "syscall",
                        &["noisy"]
                    ),
                    false
                )
            ),
            ["fallback"]
        );
        assert_eq!(
            names(
                &c,
                &r.route(&alert("Error", "Other", "syscall", &["b", "a"]), false)
            ),
            ["archive"]
        );
        let none = r.route(&alert("Error", "Other", "syscall", &["a"]), false);
        assert!(none.unmatched);
        assert_eq!(names(&c, &none), ["fallback"]);
    }

    #[test]
    fn min_priority_filters_per_output() {
        let yaml = format!("{OUTPUTS}routes:\n  - outputs: [pd, slack]\n");
        let (c, r) = router(&yaml);
        let low = r.route(&alert("Warning", "x", "syscall", &[]), false);
        assert_eq!(names(&c, &low), ["slack"]);
        assert_eq!(low.below_min_priority, [0]);
        let bypass = r.route(&alert("Warning", "x", "syscall", &[]), true);
        assert_eq!(names(&c, &bypass), ["pd", "slack"]);
    }

    #[test]
    fn an_alert_that_reaches_no_output_falls_through() {
        // `page` matches every alert but its only output takes critical and above: a warning
        // goes on to the next route, and to the default outputs when no later route matches.
        let yaml = format!(
            "{OUTPUTS}routes:\n  - name: page\n    outputs: [pd]\n  - match: {{ rule: shell }}\n    outputs: [slack]\ndefault_outputs: [fallback]\n"
        );
        let (c, r) = router(&yaml);
        let warn = r.route(&alert("Warning", "shell", "syscall", &[]), false);
        assert_eq!(names(&c, &warn), ["slack"]);
        assert_eq!(warn.matched_routes, [0, 1]);
        assert_eq!(warn.below_min_priority, [0]);
        let other = r.route(&alert("Warning", "other", "syscall", &[]), false);
        assert_eq!(names(&c, &other), ["fallback"]);
        assert!(!other.unmatched, "a route matched; it just reached nothing");
        // A critical alert stops at `page` as before.
        let crit = r.route(&alert("Critical", "shell", "syscall", &[]), false);
        assert_eq!(names(&c, &crit), ["pd"]);
        assert_eq!(crit.matched_routes, [0]);
    }

    #[test]
    fn priority_comparisons() {
        assert_eq!(
            parse_priority_cmp(">= critical").unwrap(),
            (Cmp::Ge, Priority::Critical)
        );
        assert_eq!(
            parse_priority_cmp("<=Warning").unwrap(),
            (Cmp::Le, Priority::Warning)
        );
        assert_eq!(
            parse_priority_cmp("= info").unwrap(),
            (Cmp::Eq, Priority::Informational)
        );
        assert!(parse_priority_cmp(">= urgent").is_err());
    }

    #[test]
    fn test_alert_reaches_every_output_unless_routed() {
        let routes = "routes:\n  - match: { rule: \"Shell\" }\n    outputs: [pd]\n";
        let (c, r) = router(&format!("{OUTPUTS}{routes}"));
        let test = alert("Debug", "Test rule", "aerie", &["test"]);
        let all = r.route_test(&test);
        assert_eq!(names(&c, &all), ["pd", "slack", "archive", "fallback"]);
        assert!(all.below_min_priority.is_empty());

        // Routed: the test alert matches no route and there are no default outputs.
        let (c, r) = router(&format!(
            "{OUTPUTS}{routes}test_alert: {{ routed: true }}\n"
        ));
        assert!(names(&c, &r.route_test(&test)).is_empty());
        let shell = alert("Debug", "Shell", "aerie", &["test"]);
        assert_eq!(names(&c, &r.route_test(&shell)), ["pd"]);
    }
}
