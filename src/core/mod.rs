//! The pure domain: money, agents, policies, windows, prices, usage, events, Merkle proofs.
//! No I/O, no async, no clock reads: every function takes what it needs as arguments, so every
//! rule here is unit- and property-tested without a database.

pub mod agent;
pub mod money;
pub mod policy;
pub mod pricing;
