//! The strikeflow binary's library half: configuration, migrations and stage wiring, shared
//! by `main.rs` and the end-to-end tests.

pub mod bench;
pub mod config;
pub mod migrate;

pub use config::Config;
