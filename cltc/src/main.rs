//! `cltc`: the CLI over the `cltc` library. The only place that does I/O.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cltc::backend::{self, p4::Target};
use cltc::ir::{Fabric, NodeIdx, NodeKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cltc",
    version,
    about = "The CLT policy compiler: .clt to Linux, bmv2 and Tofino artifacts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compiles FILE: writes every artifact to DIR, or prints one stage.
    Compile {
        file: PathBuf,
        /// Output directory.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print a stage to stdout instead of writing files.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// With --emit: only this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Checks FILE and prints its diagnostics; exit status 1 on errors.
    Check { file: PathBuf },
    /// Prints the fabric graph as DOT, or writes it (and an SVG when
    /// Graphviz `dot` is installed) with -o.
    Graph {
        file: PathBuf,
        /// `X.dot` (and `X.svg` when `dot` is found) or `X.svg`.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Ast,
    Model,
    Ir,
    P4,
    Entries,
    Linux,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cltc: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(file: &Path) -> anyhow::Result<(String, String)> {
    let src =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok((file.display().to_string(), src))
}

/// Compiles, printing diagnostics to stderr; `None` when there are errors.
fn compile(name: &str, src: &str) -> Option<Fabric> {
    match cltc::compile_source(name, src) {
        Ok(c) => {
            if !c.warnings.is_empty() {
                eprint!("{}", cltc::Diagnostics(c.warnings).render(name, src));
            }
            Some(c.fabric)
        }
        Err(d) => {
            eprint!("{}", d.render(name, src));
            None
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { file } => {
            let (name, src) = read(&file)?;
            let (_, diags) = cltc::check_source(&src);
            eprint!("{}", diags.render(&name, &src));
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            println!("{name}: ok");
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { file, output } => {
            let (name, src) = read(&file)?;
            let Some(fabric) = compile(&name, &src) else {
                return Ok(ExitCode::FAILURE);
            };
            let dot = backend::dot::dot(&fabric);
            let Some(out) = output else {
                print!("{dot}");
                return Ok(ExitCode::SUCCESS);
            };
            let is_svg = out.extension().is_some_and(|e| e == "svg");
            let dot_path = if is_svg {
                out.with_extension("dot")
            } else {
                out.clone()
            };
            if !is_svg {
                std::fs::write(&dot_path, &dot)
                    .with_context(|| format!("cannot write {}", dot_path.display()))?;
                println!("wrote {}", dot_path.display());
            }
            let svg_path = out.with_extension("svg");
            match svg(&dot)? {
                Some(svg) => {
                    std::fs::write(&svg_path, svg)
                        .with_context(|| format!("cannot write {}", svg_path.display()))?;
                    println!("wrote {}", svg_path.display());
                }
                None if is_svg => bail!(
                    "graphviz `dot` is not on PATH: cannot write {}; use -o FILE.dot",
                    svg_path.display()
                ),
                None => println!("graphviz `dot` is not on PATH: no SVG written"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compile {
            file,
            output,
            emit,
            node,
        } => {
            let (name, src) = read(&file)?;
            if let Some(Emit::Ast) = emit {
                let (ast, diags) = cltc::parse_source(&src);
                eprint!("{}", diags.render(&name, &src));
                println!("{ast:#?}");
                return Ok(if diags.has_errors() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            if let Some(Emit::Model) = emit {
                let (model, diags) = cltc::check_source(&src);
                eprint!("{}", diags.render(&name, &src));
                return Ok(match model {
                    Some(m) => {
                        print!("{}", cltc::model::print(&m));
                        ExitCode::SUCCESS
                    }
                    None => ExitCode::FAILURE,
                });
            }
            let Some(fabric) = compile(&name, &src) else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(emit) = emit {
                print!("{}", emit_stage(&fabric, emit, node.as_deref())?);
                return Ok(ExitCode::SUCCESS);
            }
            let Some(dir) = output else {
                bail!(
                    "give an output directory (-o DIR) or a stage to print (--emit ast|model|ir|p4|entries|linux)"
                );
            };
            write_all(&dir, &name, &fabric)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn selected(fabric: &Fabric, node: Option<&str>) -> anyhow::Result<Vec<NodeIdx>> {
    if let Some(name) = node
        && !fabric.nodes.iter().any(|n| n.name == name)
    {
        bail!("no node `{name}` in the fabric");
    }
    Ok((0..fabric.nodes.len())
        .filter(|&i| node.is_none_or(|n| fabric.nodes[i].name == n))
        .map(|i| NodeIdx(i as u32))
        .collect())
}

fn emit_stage(fabric: &Fabric, emit: Emit, node: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    match emit {
        Emit::Ir => out = cltc::print::ir(fabric),
        Emit::Linux => {
            for i in selected(fabric, node)? {
                if fabric.node(i).kind == NodeKind::Linux {
                    let plan = backend::linux::plan(fabric, i);
                    out.push_str(&backend::linux::script(&plan));
                    out.push('\n');
                }
            }
        }
        Emit::P4 | Emit::Entries => {
            for i in selected(fabric, node)? {
                let target = match fabric.node(i).kind {
                    NodeKind::Linux => continue,
                    NodeKind::Bmv2 => Target::V1Model,
                    NodeKind::Tofino => Target::Tna,
                };
                let a = backend::p4::compile(fabric, i, target);
                let (body, c) = match emit {
                    Emit::P4 => (a.program, "//"),
                    _ => (a.entries, "#"),
                };
                out.push_str(&format!("{c} node {}\n{body}\n", fabric.node(i).name));
            }
        }
        Emit::Ast | Emit::Model => {}
    }
    Ok(out)
}

fn write_all(dir: &Path, name: &str, fabric: &Fabric) -> anyhow::Result<()> {
    let base = Path::new(name)
        .file_name()
        .map_or(name.to_string(), |f| f.to_string_lossy().into_owned());
    let files = cltc::output::files(&base, fabric);
    for f in &files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{name}: wrote {} files to {}", files.len(), dir.display());
    let width = fabric
        .nodes
        .iter()
        .map(|n| n.name.len() + 7)
        .max()
        .unwrap_or(0);
    for n in &fabric.nodes {
        let kind = cltc::model::kind_name(n.kind);
        let what = match n.kind {
            NodeKind::Linux => "plan.json, plan.sh",
            _ => "program.p4, p4info.txtpb, entries.txtpb",
        };
        let roles: Vec<String> = n
            .roles
            .iter()
            .map(|r| format!("{} {:?}", fabric.policy(r.policy).name, r.role).to_lowercase())
            .collect();
        let roles = if roles.is_empty() {
            "forwarding only".to_string()
        } else {
            roles.join(", ")
        };
        let dir = format!("nodes/{}/", n.name);
        println!("  {dir:<width$}  {kind:<6}  {what:<40}  {roles}");
    }
    println!("  fabric.dot, rollout.json, manifest.json");
    Ok(())
}

/// Runs Graphviz `dot -Tsvg`; `None` when it is not installed.
fn svg(dot: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot run graphviz `dot`"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .context("cannot write to `dot`")?;
    }
    let out = child.wait_with_output().context("`dot` failed")?;
    if !out.status.success() {
        bail!(
            "`dot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(out.stdout))
}
