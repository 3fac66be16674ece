//! Dev-only test kit for retl: [`sink::Sink`], a real HTTP server that plays
//! an HTTP destination. Tests, benchmarks and end-to-end runs use it.

pub mod seed;
pub mod sink;
