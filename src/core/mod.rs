//! The pure domain: money, agents, policies, windows, prices, usage, events, Merkle proofs.
//! No I/O, no async, no clock reads: every function takes what it needs as arguments, so every
//! rule here is unit- and property-tested without a database.

pub mod agent;
pub mod checkpoint;
pub mod decision;
pub mod estimate;
pub mod events;
pub mod glob;
pub mod hex;
pub mod merkle;
pub mod money;
pub mod policy;
pub mod pricebook_file;
pub mod pricebook_shipped;
pub mod pricing;
pub mod proof;
pub mod sse;
pub mod stream_usage;
pub mod usage;
pub mod usage_chunks;
pub mod window;

#[cfg(test)]
mod stream_fixtures;
