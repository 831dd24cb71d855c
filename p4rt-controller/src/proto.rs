//! The P4Runtime protocol types, generated in `clt-proto` from
//! `proto/p4runtime/`.

pub use clt_proto::p4runtime::{FILE_DESCRIPTOR_SET, google, p4};
