//! `cltc`, the CLT policy compiler.
//!
//! Stages are one-way types: syntax (pest) -> [`ast`] -> checked model ->
//! [`ir`] -> backends. Every stage has a printer (`cltc compile --emit`). The
//! crate does no I/O: the CLI reads the input and writes the output.
#![forbid(unsafe_code)]

pub mod artifact;
pub mod backend;
pub mod ir;
