//! aerie-router: a Falco `http_output` / falcosidekick drop-in that routes alerts to outputs
//! with dedup, rate limits and handlebars templates.
//!
//! The pipeline per alert is: ingest ([`ingest`]) → route ([`routing`]) → accept into the
//! per-output queue ([`queue`], the seam where a durable queue plugs in) → 2xx; then, in each
//! output's own worker ([`worker`]): dedup ([`dedup`]) → rate limit ([`ratelimit`]) → render
//! ([`render`]) → shape and deliver ([`outputs`], each behind the [`delivery::Output`] trait),
//! with the one retry loop in the worker.
//!
//! Shared state lives in [`shared`] (`Core`), the accepted alert in [`envelope`], route
//! matching in [`matcher`], text helpers in [`text`]; [`config`] is data. No module uses another
//! that uses it back (`tests/module_graph.rs`).

pub mod auth;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod durable;
pub mod duration;
pub mod envelope;
pub mod falco_output;
pub mod ingest;
pub mod matcher;
pub mod metrics;
pub mod outputs;
pub mod queue;
pub mod ratelimit;
pub mod render;
pub mod routes_test;
pub mod routing;
pub mod server;
pub mod service;
pub mod shared;
pub mod text;
pub mod tls_server;
pub mod worker;
pub mod yaml_lines;
