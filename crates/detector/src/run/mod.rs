//! `aerie-detector run`: capture → state → rules → outputs.

pub mod pipeline;
pub mod privileges;

pub use pipeline::{Pipeline, RulesError, load_rules};
