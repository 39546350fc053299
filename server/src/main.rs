//! The `keyward` command line. Parses arguments and calls into `keyward_server::commands`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keyward_server::commands::{self, DatabaseLocation};

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "Policy-gated remote signing server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with a configuration file.
    Serve {
        /// TOML configuration (KEYWARD_* environment variables override it).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a development server: local SQLite, software keys, a built-in token issuer.
    Dev {
        #[arg(long, default_value = "./keyward-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Mint a token from the development issuer of a `keyward dev` data directory.
    Token {
        #[arg(long, default_value = "./keyward-data")]
        data_dir: PathBuf,
        #[arg(long)]
        subject: String,
        /// A role: admin, key-admin, policy-admin, signer, approver, auditor (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log.
    Verify {
        #[arg(long, conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => {
            let config = keyward_server::config::Config::load(&config)?;
            commands::serve(config, |_, url| {
                println!("listening: {url}");
                Ok(())
            })
            .await?;
        }
        Command::Dev { data_dir, listen } => commands::dev(&data_dir, listen).await?,
        Command::Openapi => println!("{}", keyward_server::app::openapi_json()),
        Command::Token {
            data_dir,
            subject,
            roles,
            ttl,
        } => {
            println!("{}", commands::token(&data_dir, &subject, &roles, &ttl)?);
        }
        Command::Audit {
            command: AuditCommand::Verify { data_dir, config },
        } => {
            let location = match (data_dir, config) {
                (_, Some(config)) => DatabaseLocation::Config(config),
                (Some(dir), None) => DatabaseLocation::DataDir(dir),
                (None, None) => DatabaseLocation::DataDir(PathBuf::from("./keyward-data")),
            };
            let report = commands::audit_verify(location)
                .await
                .context("audit verify")?;
            return Ok(match report.broken {
                None => {
                    println!("OK: {} records, chain intact", report.records);
                    ExitCode::SUCCESS
                }
                Some((seq, why)) => {
                    println!("BROKEN at seq {seq}: {why}");
                    ExitCode::FAILURE
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
