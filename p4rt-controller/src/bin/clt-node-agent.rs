//! `clt-node-agent`: the Linux node agent the controller's rollout reaches a
//! Linux node on another machine through (`docs/rollout.md`). It applies
//! the plan steps it is sent in the kernel of the network namespace it runs
//! in, reads them back, and keeps their inverses for a rollback. TLS only;
//! with `--client-ca`, only clients with a certificate that CA signed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use clt_controller::node_agent::{ServerTls, serve};

#[derive(Debug, Parser)]
#[command(name = "clt-node-agent", version, about)]
struct Cli {
    /// The fabric node this host is (the controller's steps must name it).
    #[arg(long)]
    node: String,
    /// Address to serve on.
    #[arg(long, default_value = "[::]:7443")]
    listen: SocketAddr,
    /// PEM certificate of the agent (it should name the node).
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key of the agent.
    #[arg(long)]
    key: PathBuf,
    /// PEM CA of the controllers allowed in (mutual TLS).
    #[arg(long)]
    client_ca: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cli.client_ca.is_none() {
        tracing::warn!("no --client-ca: any TLS client may configure this node");
    }
    let tls = ServerTls {
        cert: cli.cert,
        key: cli.key,
        client_ca: cli.client_ca,
    };
    tracing::info!(node = %cli.node, listen = %cli.listen, "serving");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    serve(&cli.node, cli.listen, &tls, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("serving the node agent")
}
