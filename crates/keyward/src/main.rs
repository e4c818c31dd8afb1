//! The `keyward` binary: the clap command tree and dispatch. Each subcommand lives in `cmd/`.
#![forbid(unsafe_code)]

mod boot;
mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// keyward: issue, scope, restrict, sign, rate-limit, verify and revoke API keys.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: boot::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (creates and migrates the database on start).
    Serve(cmd::serve::Args),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage organizations.
    #[command(subcommand)]
    Org(cmd::org::Command),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Manage organization members.
    #[command(subcommand)]
    Member(cmd::member::Command),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Rotate the master key: status, rotate, add, retire.
    #[command(subcommand, name = "master-key")]
    MasterKey(cmd::master_key::Command),
    /// Print the signature headers for a request (for clients and debugging).
    Sign(cmd::sign::Args),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Args),
    /// Print the man page (roff).
    Man,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return boot::usage_error(&error),
    };
    boot::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keyward: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(&cli.global, args).await,
            Command::Migrate => cmd::migrate::run(&cli.global).await,
            Command::Org(command) => cmd::org::run(&cli.global, command).await,
            Command::Keys(command) => cmd::keys::run(&cli.global, command).await,
            Command::Member(command) => cmd::member::run(&cli.global, command).await,
            Command::Audit(command) => cmd::audit::run(&cli.global, command).await,
            Command::MasterKey(command) => cmd::master_key::run(&cli.global, command).await,
            Command::Sign(args) => cmd::sign::run(&cli.global, &args),
            Command::Config(command) => {
                cmd::config::run(&command);
                Ok(())
            }
            Command::Completions(args) => {
                cmd::completions::completions(Cli::command(), &args);
                Ok(())
            }
            Command::Man => cmd::completions::man(Cli::command()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => boot::report(&error),
    }
}
