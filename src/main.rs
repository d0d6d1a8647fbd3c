//! `kubelet-rs`: the node agent, or with `cadvisor` just its monitoring core.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubelet-rs",
    version,
    about = "A Kubernetes node agent with a built-in cAdvisor-class collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: kubelet_rs::config::Flags,
}

#[derive(Subcommand)]
enum Command {
    /// Run only the monitoring core and its cAdvisor-compatible API, without a container runtime.
    Cadvisor(kubelet_rs::cadvisor::CadvisorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubelet-rs: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Cadvisor(args)) => {
            runtime.block_on(kubelet_rs::cadvisor::run_standalone(args))
        }
        None => {
            let settings = match kubelet_rs::config::load(&cli.flags) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("kubelet-rs: {e}");
                    return ExitCode::FAILURE;
                }
            };
            kubelet_rs::config::init_logging(settings.verbosity);
            runtime.block_on(kubelet_rs::agent::run(settings))
        }
    };
    // Do not wait for blocking tasks (file scans, collectors) on the way out.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubelet-rs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
