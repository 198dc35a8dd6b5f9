//! The condition language: parser, syntax tree, compiler and evaluator.

pub mod ast;
pub mod compile;
pub mod matchers;
pub mod parser;
pub mod program;

pub use ast::{Expr, Op};
pub use parser::{MAX_DEPTH, ParseError, parse};
