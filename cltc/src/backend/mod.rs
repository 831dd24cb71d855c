//! Backends: each is a function from the [`crate::ir::Fabric`] to an artifact.

pub mod dot;
pub mod linux;
pub mod p4;
pub mod rollout;
