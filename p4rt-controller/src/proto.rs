//! The P4Runtime protocol types, generated from `proto/p4runtime/`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod p4 {
    pub mod v1 {
        include!("../../proto/p4runtime/gen/p4.v1.rs");
    }
    pub mod config {
        pub mod v1 {
            include!("../../proto/p4runtime/gen/p4.config.v1.rs");
        }
    }
}

pub mod google {
    pub mod rpc {
        include!("../../proto/p4runtime/gen/google.rpc.rs");
    }
}

/// The encoded `FileDescriptorSet` of the P4Runtime protos (with imports),
/// used to parse protobuf text format.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("../../proto/p4runtime/gen/p4runtime.bin");
