//! `aerie-detector`: the node agent. `run` captures syscalls and raises alerts; `check-config`
//! and the other subcommands work on the configuration and rule files without a kernel.

use std::path::PathBuf;
use std::process::ExitCode;

use aerie_detector::config::{DetectorConfig, OutputSpec};
use clap::{Parser, Subcommand};

mod check_config;
mod rules_cli;

#[derive(Parser)]
#[command(
    name = "aerie-detector",
    version,
    about = "aerie node agent: eBPF syscall capture, Falco-compatible rules, JSON alerts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture syscalls on this host, evaluate the rules and emit alerts (needs root or
    /// CAP_BPF + CAP_PERFMON + CAP_SYS_RESOURCE + CAP_SYS_PTRACE).
    Run(RunArgs),
    /// Load the configuration and rules as `run` would and check the files they name, without
    /// attaching anything; exit 1 with every error (file:line) on a problem.
    CheckConfig(RunArgs),
    #[command(flatten)]
    Rules(rules_cli::RulesCommand),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (YAML). Missing is fine for the default path, an error otherwise.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Rule file; repeat for several. Replaces the configuration's `rules` list.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Alert destination: stdout, file:PATH or http://HOST:PORT/. Repeat for several.
    /// Replaces the configuration's `outputs` list.
    #[arg(long = "output", value_name = "OUTPUT")]
    outputs: Vec<OutputSpec>,
}

const DEFAULT_CONFIG: &str = "config/detector.yaml";

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => {
            load_config(args).and_then(|cfg| check_config::check(&cfg).map(|()| ExitCode::SUCCESS))
        }
        Command::Rules(cmd) => rules_cli::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aerie-detector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file, environment overrides and command-line replacements, as `run` and
/// `check-config` both see them.
fn load_config(args: RunArgs) -> anyhow::Result<DetectorConfig> {
    let required = args.config != std::path::Path::new(DEFAULT_CONFIG);
    let mut cfg = DetectorConfig::load(&args.config, required)?;
    if !args.rules.is_empty() {
        cfg.rules = args.rules;
    }
    if !args.outputs.is_empty() {
        cfg.outputs = args.outputs;
    }
    Ok(cfg)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(aerie_detector::run::run(cfg))
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AERIE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout carries alert JSON lines. Colour only on a terminal, so that
    // log files and collectors get plain timestamped lines.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
