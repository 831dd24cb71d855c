//! Artifact types: what backends produce and daemons consume.
//!
//! These are the only `cltc` types the daemons (`clt-linux`, `clt-controller`)
//! depend on. They serialise to the files `cltc compile` writes.

pub mod linux;
