//! Falco-compatible rule language: load Falco rule files unmodified, compile and evaluate them.
