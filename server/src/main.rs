//! The `keyward` command line. Parses arguments and calls into `keyward_server::commands`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keyward_server::commands::{self, DatabaseLocation};

// A request allocates and frees many small buffers on two threads at once (the JSON of the
// request, the policy input, the audit record); glibc's allocator spent about a fifth of the
// signing path's CPU time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Fill a `keyward dev` data directory with synthetic keys and signature records, through
    /// the server's own key administration and audit writer (for load tests; stop the server
    /// first).
    Seed {
        #[arg(long, default_value = "./keyward-data")]
        data_dir: PathBuf,
        /// Ed25519 software keys to create.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Add signature records until the audit log holds this many records.
        #[arg(long, default_value_t = 1_000_000)]
        audit_records: u64,
    },
    /// Policy authoring tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Create a policy crate NAME in the current directory.
    New {
        name: String,
        /// An SDK directory to depend on by path (default: a copy of the SDK carried in this
        /// binary, written to NAME/keyward-policy-sdk).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run a built module on an input the way the server does; prints decision, fuel, time.
    Test {
        /// The .wasm file.
        module: PathBuf,
        /// An input document {"abi":1,"request":...,"settings":...} or a bare sign request.
        input: PathBuf,
        /// A JSON file with settings (replaces the input's settings).
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Make an Ed25519 key for signing policy modules: writes its PKCS#8 PEM to FILE (mode
    /// 0600; never over an existing file) and prints the public key for
    /// `[policy] trusted_signers`.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a built module for a server with `[policy] trusted_signers`: writes the signature
    /// (base64, the upload's `signature`) to MODULE.sig or --out (`-` for standard output).
    Sign {
        /// The Ed25519 private key, PKCS#8 PEM or DER (`keyward policy keygen`, or `openssl
        /// genpkey -algorithm ed25519`).
        #[arg(long)]
        key: PathBuf,
        /// The .wasm file.
        module: PathBuf,
        /// Where to write the signature.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replay a policy on the kept inputs of past sign requests in a database: how many would
    /// get each decision, and every request whose decision would change (exit status 1 when
    /// some would).
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// A built .wasm module (a draft, not uploaded).
    #[arg(long, required_unless_present = "policy", conflicts_with = "policy")]
    module: Option<PathBuf>,
    /// The id of a stored policy.
    #[arg(long)]
    policy: Option<String>,
    /// A JSON file with the settings to evaluate with.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// The data directory of a SQLite node (default ./keyward-data).
    #[arg(long, conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// A configuration file naming the database.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only requests to this key.
    #[arg(long)]
    key: Option<String>,
    /// Only requests of this operation, e.g. raw.sign.
    #[arg(long)]
    operation: Option<String>,
    /// Only requests judged at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only requests judged before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// The newest this many matching requests.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
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

/// The time of a log line, then the name of the node (`[server] node_id`) for `keyward
/// serve`, whose nodes may log to one place.
struct NodeTime(Option<String>);

impl tracing_subscriber::fmt::time::FormatTime for NodeTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        match &self.0 {
            Some(node) => write!(w, " node={node}"),
            None => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The configuration of `serve` is read first, for the node's name in every log line.
    let serving = match &cli.command {
        Command::Serve { config } => Some(keyward_server::config::Config::load(config)?),
        _ => None,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_timer(NodeTime(serving.as_ref().map(|c| c.node_id.clone())))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve { .. } => {
            let config = serving.context("the configuration was read above")?;
            commands::serve(config, |_, url| {
                println!("listening: {url}");
                Ok(())
            })
            .await?;
        }
        Command::Dev { data_dir, listen } => commands::dev(&data_dir, listen).await?,
        Command::Policy { command } => return policy_command(command).await,
        Command::Seed {
            data_dir,
            keys,
            audit_records,
        } => {
            let report = commands::seed(&data_dir, keys, audit_records).await?;
            println!(
                "seeded {} keys and {} signature records in {:.1} s; the audit log holds {} records",
                report.keys, report.signatures, report.seconds, report.records
            );
        }
        Command::Openapi => println!("{}", keyward_server::api::routes::openapi_json()),
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
            let location = database_location(data_dir, config);
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

async fn replay_command(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayArgs {
        module,
        policy,
        settings,
        data_dir,
        config,
        key,
        operation,
        since,
        until,
        limit,
        json,
    } = args;
    let policy = match (module, policy) {
        (Some(path), _) => commands::ReplayedPolicy::Module(
            std::fs::read(&path).with_context(|| path.display().to_string())?,
        ),
        (None, Some(id)) => commands::ReplayedPolicy::Stored(id),
        (None, None) => anyhow::bail!("give --module FILE or --policy ID"),
    };
    let settings = match settings {
        Some(p) => {
            let text = std::fs::read_to_string(&p).with_context(|| p.display().to_string())?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?
        }
        None => serde_json::Value::Null,
    };
    let time = |t: Option<String>| {
        t.map(|t| keyward_server::clock::parse_unix(&t))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let filter = keyward_server::store::inputs::InputFilter {
        key_id: key,
        operation,
        since_unix: time(since)?,
        until_unix: time(until)?,
        limit,
    };
    let location = database_location(data_dir, config);
    let report = commands::policy_replay(location, policy, settings, filter)
        .await
        .context("policy replay")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_replay(&report);
    }
    Ok(if report.changed.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Like a diff: some decision would change.
        ExitCode::from(1)
    })
}

fn database_location(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> DatabaseLocation {
    match (data_dir, config) {
        (_, Some(config)) => DatabaseLocation::Config(config),
        (Some(dir), None) => DatabaseLocation::DataDir(dir),
        (None, None) => DatabaseLocation::DataDir(PathBuf::from("./keyward-data")),
    }
}

fn print_replay(report: &keyward_server::policy::replay::ReplayReport) {
    let counts = |c: &keyward_server::policy::replay::DecisionCounts| {
        format!(
            "allow {}, deny {}, require_approval {}",
            c.allow, c.deny, c.require_approval
        )
    };
    println!("evaluated: {}", report.evaluated);
    println!("before: {}", counts(&report.before));
    println!("after:  {}", counts(&report.after));
    println!(
        "fuel: {} in all, {} at most",
        report.fuel_total, report.fuel_max
    );
    println!("changed: {}", report.changed.len());
    for c in &report.changed {
        println!(
            "  {} {} key {} {}: {} -> {}{}",
            keyward_server::clock::format_unix(c.unix_time),
            c.request_id,
            c.key_id,
            c.operation,
            c.before,
            c.after,
            c.after_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        for line in &c.logs {
            println!("    log: {line}");
        }
    }
}

async fn policy_command(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    use keyward_server::policy::author;
    match command {
        PolicyCommand::Replay(args) => replay_command(args).await,
        PolicyCommand::Keygen { out } => {
            let (pem, public_key) = keyward_server::policy::signature::generate_signing_key();
            keyward_server::files::write_private_file(&out, pem.as_bytes())
                .with_context(|| format!("cannot create {}", out.display()))?;
            eprintln!("wrote the private key to {}", out.display());
            println!("{public_key}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Sign { key, module, out } => {
            use keyward_server::policy::signature;
            let key_bytes = zeroize::Zeroizing::new(
                std::fs::read(&key).with_context(|| key.display().to_string())?,
            );
            let key = signature::read_signing_key(&key_bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let bytes = std::fs::read(&module).with_context(|| module.display().to_string())?;
            let sig = signature::sign_module(&key, &bytes);
            let public_key = signature::encode_public_key(&key.verifying_key());
            let out = out.unwrap_or_else(|| {
                let mut name = module.clone().into_os_string();
                name.push(".sig");
                name.into()
            });
            if out.as_os_str() == "-" {
                println!("{sig}");
            } else {
                std::fs::write(&out, format!("{sig}\n"))
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("wrote the signature to {}", out.display());
            }
            eprintln!("signer public key: {public_key}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::New { name, sdk_path } => {
            let sdk = match &sdk_path {
                Some(path) => author::SdkSource::Path(path),
                None => author::SdkSource::Bundled,
            };
            let dir = author::scaffold(std::path::Path::new("."), &name, sdk)
                .map_err(anyhow::Error::msg)?;
            println!("created {}", dir.display());
            println!(
                "next: cd {name} && cargo test && cargo build --target wasm32-unknown-unknown --release"
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test {
            module,
            input,
            settings,
        } => {
            let bytes = std::fs::read(&module).with_context(|| module.display().to_string())?;
            let text =
                std::fs::read_to_string(&input).with_context(|| input.display().to_string())?;
            let settings = settings
                .map(|p| std::fs::read_to_string(&p).with_context(|| p.display().to_string()))
                .transpose()?;
            let input =
                author::read_input(&text, settings.as_deref()).map_err(anyhow::Error::msg)?;
            let (eval, check) = author::run_module(&bytes, &input)?;
            println!("decision: {}", serde_json::to_string(&eval.decision)?);
            if let Some(f) = &eval.failure {
                println!("failure: {}", f.detail());
            }
            println!("fuel: {}", eval.fuel);
            println!("time: {} us", eval.micros);
            for line in &eval.logs {
                println!("log: {line}");
            }
            if let Err(why) = check {
                println!("settings refused: {why}");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime as _;

    use super::NodeTime;

    #[test]
    fn serve_names_its_node_after_the_time_of_each_line() {
        let mut line = String::new();
        NodeTime(Some("keyward-b".into()))
            .format_time(&mut Writer::new(&mut line))
            .unwrap();
        assert!(line.starts_with("20"), "{line}");
        assert!(line.ends_with(" node=keyward-b"), "{line}");
        let mut line = String::new();
        NodeTime(None)
            .format_time(&mut Writer::new(&mut line))
            .unwrap();
        assert!(!line.contains("node="), "{line}");
    }
}
