//! The strikeflow binary's library half: configuration, migrations and benchmarks, shared
//! by `main.rs` and the end-to-end tests (which build stage configurations the way the
//! binary does).

pub mod bench;
pub mod config;
pub mod migrate;

pub use config::Config;
