//! The outputs. Each kind is one folder, `outputs/<kind>/`, that owns everything about it:
//! its keys (`Raw`, serde with `deny_unknown_fields`) and their validation (`Settings`),
//! falcosidekick's environment names, its escaping, default and embedded template, payload
//! shape, limits and fallback body, and its [`Output`] implementation (`Sink`).
//!
//! The list below is the only place that names them all: adding an output is one folder, one
//! line here and one template.

pub mod common;
pub mod http;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use common::{EnvShared, FieldError, OpenContext};

/// Declares the kinds: `Variant(module) = "type name"`. Generates the `type:`-tagged enum of
/// raw keys, the enum of validated settings, the enum of open sinks, and their dispatch.
macro_rules! outputs {
    ($($variant:ident($module:ident) = $name:literal,)+) => {
        $(pub mod $module;)+

        /// The keys of one output kind, selected by `type:` (flattened into the output's
        /// shared keys).
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "type")]
        pub enum RawKind {
            $(#[serde(rename = $name)] $variant($module::Raw),)+
        }

        /// The validated settings of one output kind.
        #[derive(Debug, Clone)]
        pub enum Kind {
            $($variant($module::Settings),)+
        }

        /// An open output of one kind.
        pub enum Sink {
            $($variant($module::Sink),)+
        }

        /// Every output type name, in declaration order.
        pub const NAMES: &[&str] = &[$($name),+];

        /// Templates shipped in the binary: used when `templates_dir` has no file of that name.
        pub const EMBEDDED: &[(&str, &str)] = &[$($module::TEMPLATE),+];

        impl RawKind {
            /// A kind with none of its keys set (an output created from the environment).
            pub fn empty(name: &str) -> Option<RawKind> {
                match name {
                    $($name => Some(RawKind::$variant($module::Raw::default())),)+
                    _ => None,
                }
            }

            pub fn name(&self) -> &'static str {
                match self {
                    $(RawKind::$variant(_) => $name,)+
                }
            }

            /// falcosidekick's environment prefix of this kind (`SLACK`), if it has one.
            pub fn env_prefix(&self) -> Option<&'static str> {
                match self {
                    $(RawKind::$variant(_) => $module::ENV_PREFIX,)+
                }
            }

            /// Apply falcosidekick's environment names; `None` when they do not ask for it.
            pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
                match self {
                    $(RawKind::$variant(r) => r.apply_env(get),)+
                }
            }

            pub fn build(&self) -> Result<Kind, FieldError> {
                match self {
                    $(RawKind::$variant(r) => r.build().map(Kind::$variant),)+
                }
            }
        }

        impl Kind {
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Kind::$variant(_) => $name,)+
                }
            }

            /// The template used when none is configured; `None`: the Falco JSON as received,
            /// plus an `aerie` object when there is something to report.
            pub fn default_template(&self) -> Option<&'static str> {
                match self {
                    $(Kind::$variant(_) => $module::DEFAULT_TEMPLATE,)+
                }
            }

            pub fn escape(&self) -> Escape {
                match self {
                    $(Kind::$variant(_) => $module::ESCAPE,)+
                }
            }

            pub fn open(&self, ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
                Ok(match self {
                    $(Kind::$variant(s) => Sink::$variant(s.open(ctx)?),)+
                })
            }
        }

        impl Output for Sink {
            fn batch_policy(&self) -> Option<crate::delivery::BatchPolicy> {
                match self {
                    $(Sink::$variant(s) => s.batch_policy(),)+
                }
            }

            fn body(&self, rendered: &str, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
                match self {
                    $(Sink::$variant(s) => s.body(rendered, ctx),)+
                }
            }

            fn fallback(&self, ctx: &BodyContext<'_>) -> Vec<u8> {
                match self {
                    $(Sink::$variant(s) => s.fallback(ctx),)+
                }
            }

            async fn deliver(&mut self, batch: &[Message]) -> Result<(), DeliveryError> {
                match self {
                    $(Sink::$variant(s) => s.deliver(batch).await,)+
                }
            }

            fn flush(&mut self) -> Result<(), DeliveryError> {
                match self {
                    $(Sink::$variant(s) => s.flush(),)+
                }
            }

            fn take_repairs(&mut self) -> u64 {
                match self {
                    $(Sink::$variant(s) => s.take_repairs(),)+
                }
            }
        }
    };
}

outputs! {
    Slack(slack) = "slack",
    PagerDuty(pagerduty) = "pagerduty",
    Webhook(webhook) = "webhook",
    File(file) = "file",
    Stdout(stdout) = "stdout",
}
