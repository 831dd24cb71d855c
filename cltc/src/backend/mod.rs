//! Backends: each is a function from the [`crate::ir::Fabric`] to an artifact.

pub mod p4;
