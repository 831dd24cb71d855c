//! Protocol buffers of CLT, with the generated code committed under `src/gen/`
//! (regenerated and checked by `tests/generated_code_is_fresh.rs`; a normal
//! build needs no `protoc`).
//!
//! One module per protobuf package, each including its generated file:
//!
//! - [`ioam_api`]: the public IOAM trace API (`IOAMService.Report`), byte for
//!   byte the one of the IOAM ecosystem. Its service decodes with
//!   [`codec::IoamCodec`], which also accepts the older plain variant
//!   ([`ioam_api::legacy`]) on the same method path.
//! - [`clt_api`]: CLT's richer report (flow addresses and ports, capture time,
//!   reporter) around an unchanged [`ioam_api::IoamTrace`].
//! - [`clt_node`]: the Linux node agent the controller's rollout reaches
//!   remote Linux nodes through.
//!
//! Adding a package (e.g. P4Runtime) is: its `.proto` files in a folder beside
//! `ioam_api/`, a `compile` call in the freshness test, a module here.
#![forbid(unsafe_code)]

pub mod codec;

/// The public IOAM trace API, package `ioam_api`.
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod ioam_api {
    include!("gen/ioam_api.rs");

    /// The older plain variant of `IOAMTrace` (no ids), package `ioam_api.legacy`.
    pub mod legacy {
        include!("gen/ioam_api.legacy.rs");
    }
}

/// CLT's own report API, package `clt_api`.
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod clt_api {
    include!("gen/clt_api.rs");
}

/// The Linux node agent of the controller's rollout, package `clt_node`.
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod clt_node {
    include!("gen/clt_node.rs");
}

/// P4Runtime (packages `p4.v1`, `p4.config.v1`, `google.rpc`), written from
/// the specification in `p4runtime/` and generated into `p4runtime/gen/`
/// (checked by `tests/p4runtime_code_is_fresh.rs`).
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod p4runtime {
    pub mod p4 {
        pub mod v1 {
            include!("../p4runtime/gen/p4.v1.rs");
        }
        pub mod config {
            pub mod v1 {
                include!("../p4runtime/gen/p4.config.v1.rs");
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!("../p4runtime/gen/google.rpc.rs");
        }
    }
    /// The encoded `FileDescriptorSet` of these packages and their imports,
    /// for reflection (e.g. protobuf text format with `prost-reflect`).
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("../p4runtime/gen/p4runtime.bin");
}

pub use codec::{DecodeError, IoamVariant};
