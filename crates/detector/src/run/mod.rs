//! `aerie-detector run`: capture → state → rules → outputs.

pub mod convert;
pub mod detector;
pub mod drops;
pub mod pipeline;
pub mod privileges;

pub use detector::run;
pub use pipeline::{Pipeline, RulesError, load_rules};
