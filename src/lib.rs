//! Caracal: the gateway between AI agents and the paid APIs they call.
//! The library holds everything; `main.rs` only parses arguments and dispatches.

pub mod core;
