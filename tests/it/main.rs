//! Integration tests: one binary, one module per behaviour, all against the real `caracal`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod admin_api;
mod audit;
mod audit_s3;
mod audit_store;
mod avro_interop;
mod cli_admin;
mod cli_errors;
mod config_cli;
mod disconnect;
mod embedded_limits;
mod first_run;
mod gateway;
mod gateway_auth;
mod kafka_admin;
mod kafka_registry;
mod kafka_tls;
mod kafka_topology;
mod ledger;
mod ledger_store;
mod ledger_tamper;
mod mcp;
mod merkle_proof_python;
mod metrics_role;
mod mock_upstream;
mod postgres_roles;
mod postgres_store;
mod redis_rebuild;
mod sdk;
mod serve_lifecycle;
mod shared_budget;
mod store_conformance;
