//! `clt-linux apply|diff|teardown|show PLAN [--netns NAME] [--dry-run]
//! [--insertion route|socket|auto]`: applies a cltc Linux plan.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use clt_linux::{Insertion, Options, netns, nl::Netlink, plan};
use cltc::artifact::linux::LinuxPlan;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "clt-linux",
    version,
    about = "Apply a cltc Linux plan over netlink"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The plan (`<node>.plan.json` from `cltc compile`).
    plan: PathBuf,
    /// Work inside this network namespace (`ip netns` name or a path).
    #[arg(long)]
    netns: Option<String>,
    /// How IOAM is inserted: kernel encap routes, the CLT socket API, or
    /// whichever the kernel supports.
    #[arg(long, default_value = "auto", value_parser = ["route", "socket", "auto"])]
    insertion: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make the kernel match the plan (prints the changes).
    Apply {
        #[command(flatten)]
        common: Common,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the changes apply would make.
    Diff {
        #[command(flatten)]
        common: Common,
    },
    /// Remove everything the plan adds.
    Teardown {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the kernel state the plan touches.
    Show {
        #[command(flatten)]
        common: Common,
    },
}

fn load(path: &PathBuf) -> Result<LinuxPlan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing plan {}", path.display()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (common, action) = match &cli.command {
        Command::Apply { common, dry_run } => (common, if *dry_run { "diff" } else { "apply" }),
        Command::Diff { common } => (common, "diff"),
        Command::Teardown { common, dry_run } => {
            (common, if *dry_run { "teardown-dry" } else { "teardown" })
        }
        Command::Show { common } => (common, "show"),
    };
    let plan = load(&common.plan)?;
    let opts = Options {
        insertion: common.insertion.parse::<Insertion>()?,
    };
    let action = action.to_string();
    let out = netns::run_in(common.netns.as_deref(), move || {
        let nl = Netlink::open()?;
        match action.as_str() {
            "apply" => plan::apply(&nl, &plan, &opts).map(|r| r.to_string()),
            "diff" => plan::diff(&nl, &plan, &opts).map(|r| r.to_string()),
            "teardown" => plan::teardown(&nl, &plan, false).map(|r| r.to_string()),
            "teardown-dry" => plan::teardown(&nl, &plan, true).map(|r| r.to_string()),
            _ => plan::show(&nl, &plan),
        }
    })
    .with_context(|| format!("{} of {}", cli_verb(&cli), common.plan.display()))?;
    print!("{out}");
    Ok(())
}

fn cli_verb(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Apply { .. } => "apply",
        Command::Diff { .. } => "diff",
        Command::Teardown { .. } => "teardown",
        Command::Show { .. } => "show",
    }
}
