//! Errors are one line naming the key path and the origin of the value.
#![allow(clippy::unwrap_used)]
