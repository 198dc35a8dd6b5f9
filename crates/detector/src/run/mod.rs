//! `aerie-detector run`: capture → state → rules → outputs.

pub mod privileges;
