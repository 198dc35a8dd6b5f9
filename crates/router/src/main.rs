//! aerie-router: Falco-compatible alert router (drop-in for falcosidekick on port 2801).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aerie_router::config::Config;
use aerie_router::render::Templates;
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Every alert allocates a few short-lived buffers on several threads; mimalloc's per-thread
/// heaps keep that off glibc malloc's shared arenas (20% of ingest CPU in a profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "aerie-router",
    version,
    about = "Route Falco alerts to Slack, PagerDuty, webhooks and files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the router.
    Serve {
        #[arg(long, short, default_value = "config/router.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration and every template; exit non-zero with file and line.
    CheckConfig {
        #[arg(long, short, default_value = "config/router.yaml")]
        config: PathBuf,
    },
    /// Routing tools.
    Routes {
        #[command(subcommand)]
        cmd: RoutesCmd,
    },
}

#[derive(Subcommand)]
enum RoutesCmd {
    /// Show the routes and outputs alerts would reach, and whether dedup or a rate limit would
    /// hold them. ALERT is a Falco JSON alert, a JSON array or NDJSON (`-` for stdin).
    Test {
        #[arg(long, short, default_value = "config/router.yaml")]
        config: PathBuf,
        alert: PathBuf,
    },
}

fn main() -> ExitCode {
    // Colour only on a terminal: log files and collectors get plain timestamped lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AERIE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { config } => serve(&config),
        Cmd::CheckConfig { config } => check_config(&config),
        Cmd::Routes {
            cmd: RoutesCmd::Test { config, alert },
        } => routes_test(&config, &alert),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aerie-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    Templates::load(&cfg)?;
    let checked = Templates::check_dir(&cfg.templates_dir)?;
    aerie_router::routing::Router::new(&cfg).map_err(anyhow::Error::msg)?;
    for w in aerie_router::routing::filtering_routes(&cfg) {
        println!("warning: {w}");
    }
    println!(
        "{}: OK ({} outputs, {} routes, {checked} templates in {})",
        path.display(),
        cfg.outputs.len(),
        cfg.routes.len(),
        cfg.templates_dir.display()
    );
    Ok(())
}

fn routes_test(path: &Path, alert: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let body = if alert == Path::new("-") {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
        v
    } else {
        std::fs::read(alert).with_context(|| format!("cannot read {}", alert.display()))?
    };
    let mut alerts = Vec::new();
    for item in
        aerie_alert::decode_batch(&body).map_err(|e| anyhow::anyhow!("{}: {e}", alert.display()))?
    {
        let mut a = item.map_err(|e| {
            anyhow::anyhow!("{}: alert #{}: {e}", alert.display(), e.index.unwrap_or(0))
        })?;
        aerie_router::falco_output::fill_missing(&mut a);
        alerts.push(a);
    }
    if alerts.is_empty() {
        anyhow::bail!("{}: no alert in the file", alert.display());
    }
    print!(
        "{}",
        aerie_router::routes_test::report(&cfg, &alerts).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let running = aerie_router::server::start(cfg, None).await?;
        let core = running.core.clone();
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => match core.reload_templates() {
                    Ok(()) => tracing::info!("templates reloaded"),
                    Err(e) => tracing::error!(error = %e, "template reload failed; keeping the previous templates"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down: draining queues");
        running.shutdown().await?;
        tracing::info!("stopped");
        Ok(())
    });
    // Everything is drained; do not wait for idle runtime threads.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}
