//! `cltc`, the CLT policy compiler.
//!
//! Stages are one-way types: syntax (pest) -> [`ast`] -> checked [`model`] ->
//! [`ir`] -> backends. Every stage has a printer (`cltc compile --emit`). The
//! crate does no I/O: the CLI reads the input and writes the output.
//!
//! ```
//! let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/login.clt")).unwrap();
//! let compiled = cltc::compile_source("login.clt", &src).unwrap();
//! let entry = compiled.fabric.nodes.iter().position(|n| n.name == "entry").unwrap();
//! let plan = cltc::backend::linux::plan(&compiled.fabric, cltc::ir::NodeIdx(entry as u32));
//! assert!(cltc::backend::linux::script(&plan).contains("encap ioam6"));
//! ```
#![forbid(unsafe_code)]

pub mod artifact;
pub mod ast;
pub mod backend;
pub mod diag;
pub mod ir;
pub mod lower;
pub mod model;
pub mod output;
pub mod print;
pub mod syntax;

pub use diag::{Diagnostic, Diagnostics};

/// A successful compilation: the fabric and the warnings it produced.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub fabric: ir::Fabric,
    pub warnings: Vec<Diagnostic>,
}

/// Compiles `.clt` source text to the IR.
///
/// `file_name` is only used in messages. On error, every diagnostic (errors
/// and warnings, sorted by position) is returned; render them with
/// [`Diagnostics::render`].
pub fn compile_source(file_name: &str, src: &str) -> Result<Compiled, Diagnostics> {
    let _ = file_name;
    let mut diags = Diagnostics::default();
    let ast = syntax::parse(src, &mut diags);
    let model = model::check(&ast, &mut diags);
    diags.sort();
    match model {
        Some(m) if !diags.has_errors() => Ok(Compiled {
            fabric: lower::lower(&m),
            warnings: diags.0,
        }),
        _ => Err(diags),
    }
}

/// Parses only (`--emit ast`): the syntax tree and syntax diagnostics.
pub fn parse_source(src: &str) -> (ast::File, Diagnostics) {
    let mut diags = Diagnostics::default();
    let file = syntax::parse(src, &mut diags);
    (file, diags)
}

/// Parses and checks (`--emit model`): the model when there is no error.
pub fn check_source(src: &str) -> (Option<model::Model>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let ast = syntax::parse(src, &mut diags);
    let model = model::check(&ast, &mut diags);
    diags.sort();
    if diags.has_errors() {
        (None, diags)
    } else {
        (model, diags)
    }
}
