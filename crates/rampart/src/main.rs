//! `rampart`: the security gateway and its operator toolkit, one binary.
//!
//! This file is the command line (DESIGN.md §2); each verb lives in its own module.
//! Exit codes: 0 success, 1 findings or verification failure, 2 usage or configuration
//! error.

mod audit;
mod audit_writer;
mod check;
mod demo;
mod echo;
mod keys;
mod logging;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: fewer cycles per allocation than glibc malloc on the request path, and
/// less fragmentation under many connections.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "Security gateway and hardening toolkit",
    after_help = "Examples:\n  rampart demo\n  rampart serve --config /etc/rampart/rampart.toml\n  rampart check --config /etc/rampart/rampart.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (public listener + admin listener).
    #[command(
        after_help = "Example:\n  rampart serve --config /etc/rampart/rampart.toml --config /etc/rampart/site.toml\n\nSignals: SIGHUP reloads the configuration (an invalid one is rejected and the running one kept); SIGTERM/SIGINT drain in-flight requests and exit."
    )]
    Serve {
        /// Configuration file; repeat to overlay (later files win).
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Validate configuration, profile rules, data roots and secret files without serving.
    #[command(
        after_help = "Example:\n  rampart check --config /etc/rampart/rampart.toml\n\nExit status: 0 no findings, 1 findings (e.g. a data root fails a check), 2 the configuration cannot be loaded."
    )]
    Check {
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = check::Format::Text)]
        format: check::Format,
    },
    /// Run a self-contained gateway with a built-in echo upstream and print curl commands.
    #[command(
        after_help = "Example:\n  rampart demo\n\nThe data root is $XDG_STATE_HOME/rampart/demo (or ~/.local/state/rampart/demo), created with mode 0700."
    )]
    Demo {
        /// Public listener address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Admin listener address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        admin_listen: SocketAddr,
    },
    /// Ed25519 signing keyring: active key + retained public keys, fingerprints.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The audit trail: verify chain, tree and checkpoints; follow; retention; proofs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// A fast loopback HTTP/1.1 echo server (demo and benchmark upstream).
    #[command(hide = true)]
    Echo {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Answer every request with the same small body instead of echoing it.
        #[arg(long)]
        fixed: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::Check { config, format } => check::run(&config, format),
        Command::Demo {
            listen,
            admin_listen,
        } => demo::run(listen, admin_listen),
        Command::Echo { listen, fixed } => echo::run_blocking(listen, fixed),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
    };
    ExitCode::from(code)
}
