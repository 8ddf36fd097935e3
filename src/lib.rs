//! Caracal: the gateway between AI agents and the paid APIs they call.
//! The library holds everything; `main.rs` only parses arguments and dispatches.

pub mod admission;
pub mod aggregate;
pub mod audit;
pub mod bus;
pub mod cli;
pub mod config;
pub mod consume;
pub mod core;
pub mod embedded_db;
pub mod http;
pub mod kafka;
pub mod ledger;
pub mod mcp;
pub mod mock;
pub mod ops;
pub mod roles;
pub mod spend;
pub mod store;
pub mod telemetry;
pub mod version;
