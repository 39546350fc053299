//! What the `keyward` command-line verbs do: `serve`, `dev`, `token`, `audit verify`,
//! `seed`, `openapi`. The binary only parses arguments and calls these.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use poem::listener::{Acceptor, Listener, TcpListener};

use crate::api::routes;
use crate::app::{AppState, StartError};
use crate::audit::{Actor, AuditEvent, VerifyReport};
use crate::auth::dev_issuer::DevIssuer;
use crate::auth::{Principal, Role};
use crate::config::Config;
use crate::files::write_private_file;
use crate::intent::raw::RawPayload;
use crate::keys::{Algorithm, HashAlg, Kek, Purpose, SignOptions};
use crate::lifecycle::keys::{NewKey, create_key};
use crate::pipeline::{SignCall, Submitted};
use crate::store::audit::AuditFilter;
use crate::store::{SignStatus, StateChange, Store};

/// How long the development admin token is valid.
pub const DEV_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Runs the server with `config` until SIGINT or SIGTERM. `announce` is called once the
/// server is listening, with its state and base URL.
pub async fn serve(
    config: Config,
    announce: impl FnOnce(&AppState, &str) -> Result<(), StartError>,
) -> Result<(), StartError> {
    let acceptor = TcpListener::bind(config.listen)
        .into_acceptor()
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr: SocketAddr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(config.listen);
    let base_url = format!("http://{addr}");
    let state = AppState::build(config, &base_url).await?;
    announce(&state, &base_url)?;
    let store = state.signing().store().clone();
    let routes = routes::routes(state);
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes, shutdown_signal(), Some(Duration::from_secs(10)))
        .await
        .map_err(|e| StartError::Other(format!("server error: {e}")))?;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Builds the configuration of `keyward dev`: SQLite and a KEK in `data_dir` (created on
/// first start), the development issuer, `allow` as the default decision, and the built-in
/// `allow-all` policy bound to every new key. `KEYWARD_*`
/// variables still apply. Returns the config and whether a new KEK was created.
pub fn dev_config(data_dir: &Path, listen: SocketAddr) -> Result<(Config, bool), StartError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StartError::Other(format!("cannot create {}: {e}", data_dir.display())))?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| StartError::Other(format!("{}: {e}", data_dir.display())))?;
    let kek_path = data_dir.join("kek");
    let created = if kek_path.exists() {
        false
    } else {
        write_private_file(&kek_path, Kek::generate().to_hex().as_bytes())
            .map_err(|e| StartError::Other(format!("cannot write {}: {e}", kek_path.display())))?;
        true
    };
    let mut table = toml::Table::new();
    let mut section = |name: &str, entries: Vec<(&str, toml::Value)>| {
        let t: toml::Table = entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        table.insert(name.to_string(), toml::Value::Table(t));
    };
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    section(
        "server",
        vec![("listen", toml::Value::String(listen.to_string()))],
    );
    section("storage", vec![("data_dir", path(&data_dir))]);
    section("keys", vec![("kek_file", path(&kek_path))]);
    section("auth", vec![("dev_issuer", toml::Value::Boolean(true))]);
    section(
        "policy",
        vec![
            ("default_decision", toml::Value::String("allow".into())),
            (
                "bind_on_create",
                toml::Value::Array(vec![toml::Value::String("allow-all".into())]),
            ),
        ],
    );
    let config = Config::from_table(table, std::env::vars(), &data_dir)
        .map_err(|e| StartError::Other(e.to_string()))?;
    Ok((config, created))
}

/// `keyward dev`: prints `listening:`, `swagger:` and `admin token:` lines, then serves.
pub async fn dev(data_dir: &Path, listen: SocketAddr) -> Result<(), StartError> {
    let (config, created) = dev_config(data_dir, listen)?;
    if created {
        eprintln!(
            "keyward dev: created a new key-encryption key at {} (keep it secret; without it the keys in this directory cannot be used)",
            config.data_dir.join("kek").display()
        );
    }
    eprintln!("keyward dev: data in {}", config.data_dir.display());
    serve(config, |state, base_url| {
        let issuer = state
            .dev_issuer()
            .ok_or_else(|| StartError::Other("the development issuer is not running".into()))?;
        let token = issuer.mint("dev-admin", &[Role::Admin], DEV_ADMIN_TOKEN_TTL)?;
        println!("listening: {base_url}");
        println!("swagger: {base_url}/docs");
        println!("approvals: {base_url}/ui/");
        println!("admin token: {token}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        Ok(())
    })
    .await
}

/// `keyward token`: mints a development token.
pub fn token(
    data_dir: &Path,
    subject: &str,
    roles: &[String],
    ttl: &str,
) -> Result<String, StartError> {
    let ttl = parse_ttl(ttl).map_err(StartError::Other)?;
    for name in roles {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            return Err(StartError::Other(format!(
                "role {name:?} is not a valid role name; Keyward roles are {} (other names, \
                 such as an approver group like treasury, are carried as they are)",
                all.join(", ")
            )));
        }
    }
    if subject.trim().is_empty() {
        return Err(StartError::Other("--subject must not be empty".into()));
    }
    let issuer = DevIssuer::load(data_dir)?;
    Ok(issuer.mint_named(subject, roles, ttl)?)
}

/// Parses `90s`, `15m`, `1h`, `7d` (or a plain number of seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("ttl {text:?} must look like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("ttl {text:?} must look like 90s, 15m, 1h or 7d")),
    };
    if secs == 0 || secs > 366 * 86400 {
        return Err(format!("ttl {text:?} must be between 1s and 366d"));
    }
    Ok(Duration::from_secs(secs))
}

/// Where `keyward audit verify` finds the database.
pub enum DatabaseLocation {
    /// `<dir>/keyward.db`.
    DataDir(PathBuf),
    /// The database named by a config file.
    Config(PathBuf),
}

impl DatabaseLocation {
    /// Opens the database (running its migrations, as the server would at start).
    pub async fn open(self) -> Result<Store, StartError> {
        let path = match self {
            DatabaseLocation::DataDir(dir) => dir.join("keyward.db"),
            DatabaseLocation::Config(file) => {
                let config = Config::load(&file).map_err(|e| StartError::Other(e.to_string()))?;
                if let Some(options) = &config.postgres {
                    return Ok(Store::open_postgres(options).await?);
                }
                config.database
            }
        };
        if !path.exists() {
            return Err(StartError::Other(format!(
                "no database at {}",
                path.display()
            )));
        }
        Ok(Store::open_file(&path).await?)
    }
}

/// `keyward audit verify`: checks the whole chain.
/// On PostgreSQL the one chain of every node is checked.
pub async fn audit_verify(location: DatabaseLocation) -> Result<VerifyReport, StartError> {
    let store = location.open().await?;
    let report = crate::audit::verify(&store).await?;
    store.close().await;
    Ok(report)
}

/// The policy `keyward policy replay` evaluates.
pub enum ReplayedPolicy {
    /// A module file (a draft), run under the server's default limits.
    Module(Vec<u8>),
    /// A stored policy, by id, run under its own limits.
    Stored(String),
}

/// `keyward policy replay`: evaluates a policy on the kept inputs of past sign requests in a
/// database, as `POST /v1/policies/{id}/replay` does, without a running server and without
/// an audit record (it reads; it changes nothing).
pub async fn policy_replay(
    location: DatabaseLocation,
    policy: ReplayedPolicy,
    settings: serde_json::Value,
    filter: crate::store::inputs::InputFilter,
) -> Result<crate::policy::replay::ReplayReport, StartError> {
    use crate::policy::{LimitsConfig, PolicyEngine};
    let failed = |e: crate::policy::PolicyError| StartError::Other(e.to_string());
    let store = location.open().await?;
    let engine = PolicyEngine::new(LimitsConfig::default()).map_err(failed)?;
    let (module, limits) = match policy {
        ReplayedPolicy::Module(bytes) => (bytes, engine.limits().default),
        ReplayedPolicy::Stored(id) => {
            let row = store
                .policy(&id)
                .await?
                .ok_or_else(|| StartError::Other(format!("no policy with id {id:?}")))?;
            let limits = serde_json::from_str(&row.limits)
                .map_err(|e| StartError::Other(format!("stored policy limits: {e}")))?;
            (row.module, limits)
        }
    };
    let compiled = engine.compile(&module, limits).map_err(failed)?;
    // A policy without `keyward_validate_settings` accepts any settings.
    engine
        .validate_settings(&compiled, settings.to_string().as_bytes())
        .map_err(|why| StartError::Other(format!("the policy refused its settings: {why}")))?;
    let rows = store.policy_inputs(&filter).await?;
    store.close().await;
    let report = tokio::task::spawn_blocking(move || {
        // No time budget here: the command line waits for every request it asked for.
        crate::policy::replay::replay(&engine, &compiled, &settings, &rows, Duration::MAX)
    })
    .await
    .map_err(|e| StartError::Other(format!("replay: {e}")))?;
    Ok(report)
}

// `keyward seed`: fills a `keyward dev` data directory with many keys and signature records,
// so that a load test (`scripts/bench --big`) measures a big store rather than an empty one.
//
// Everything goes through the server's own code: keys are made by key administration
// (generated and sealed by the software slot, one audited transaction each), and signature
// records by the audit writer (a sign request row and its chained record per signature,
// group-committed as under load). The signature records repeat the rows of one real
// signature made through the signing path first, each with its own request id, key and time,
// so their sizes are those of real records. The chain stays verifiable.

/// Appends in flight at once (the writer batches up to 256).
const SEED_IN_FLIGHT: usize = 512;

/// What `seed` did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// Keys created.
    pub keys: u64,
    /// Signature records appended.
    pub signatures: u64,
    /// Audit records in the chain afterwards.
    pub records: i64,
    /// Seconds it took.
    pub seconds: f64,
}

fn seed_failure(what: &str) -> impl Fn(String) -> StartError + '_ {
    move |e| StartError::Other(format!("seed: {what}: {e}"))
}

/// Adds `keys` Ed25519 software keys (at least one: the signature records need a key) to the `keyward dev` data directory `data_dir`, then
/// signature records until the audit log holds at least `records` records. The server must
/// not be running on the directory.
pub async fn seed(data_dir: &Path, keys: u64, records: u64) -> Result<SeedReport, StartError> {
    let start = Instant::now();
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (config, _) = dev_config(data_dir, listen)?;
    let state = AppState::build(config, "http://127.0.0.1:0").await?;
    let path = state.signing();
    let principal = Principal {
        issuer: "keyward-seed".into(),
        subject: "seed".into(),
        roles: vec![Role::Admin],
        ..Default::default()
    };
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];

    let ids: Vec<String> = stream::iter(0..keys.max(1))
        .map(|i| {
            let new = NewKey {
                name: format!("seed-{run}-{i:07}"),
                purpose: Purpose::Raw,
                labels: [("seed".to_string(), run.to_string())].into(),
                signers: vec![],
            };
            let principal = &principal;
            async move {
                create_key(path, principal, new, Algorithm::Ed25519, "software")
                    .await
                    .map(|meta| meta.id)
            }
        })
        .buffer_unordered(SEED_IN_FLIGHT)
        .map_err(|e| seed_failure("creating a key")(e.to_string()))
        .try_collect()
        .await?;

    // One real signature, whose request row and audit record the others repeat.
    let request_id = crate::request_id::fresh();
    let call = SignCall {
        principal: principal.clone(),
        key_id: ids[0].clone(),
        operation: "raw.sign",
        build: Box::new(|algorithm| {
            let payload =
                RawPayload::Message(HashAlg::Sha256, b"seed: pay 10 EUR to Alice".to_vec());
            Ok((payload.into_intent(algorithm), SignOptions::default()))
        }),
        idempotency: None,
        request_id: request_id.clone(),
    };
    let Submitted::Signed(receipt) = path
        .submit(call)
        .await
        .map_err(|e| seed_failure("the template signature")(e.to_string()))?
    else {
        return Err(seed_failure("the template signature")(
            "it was not signed".into(),
        ));
    };
    let store = path.store();
    let template_row = store
        .sign_request(&receipt.request_id)
        .await?
        .ok_or_else(|| {
            seed_failure("the template signature")("its request row is missing".into())
        })?;
    let template_record = store
        .audit_page(&AuditFilter::default(), None, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.action == "sign" && r.request_id.as_deref() == Some(&receipt.request_id))
        .ok_or_else(|| {
            seed_failure("the template signature")("its audit record is missing".into())
        })?;
    let details: serde_json::Value = serde_json::from_str(&template_record.details)
        .map_err(|e| seed_failure("the template record")(e.to_string()))?;

    let head = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    let signatures = records.saturating_sub(u64::try_from(head).unwrap_or(0));
    let actor = Actor {
        issuer: principal.issuer.clone(),
        subject: principal.subject.clone(),
    };
    stream::iter(0..signatures)
        .map(|i| {
            let key_id = ids[(i % ids.len() as u64) as usize].clone();
            let (now, unix) = crate::clock::now();
            let mut row = template_row.clone();
            row.id = crate::request_id::fresh();
            row.key_id.clone_from(&key_id);
            row.status = SignStatus::Signed;
            row.created_at.clone_from(&now);
            row.created_unix = unix;
            let event = AuditEvent {
                action: "sign",
                outcome: "ok",
                actor: actor.clone(),
                key_id: Some(key_id),
                request_id: Some(row.id.clone()),
                details: details.clone(),
            };
            let change = StateChange::InsertSignRequest(Box::new(row));
            async move { path.audit().append(vec![change], event).await }
        })
        .buffer_unordered(SEED_IN_FLIGHT)
        .map_err(|e| seed_failure("appending a signature record")(e.to_string()))
        .try_for_each(|_| async { Ok(()) })
        .await?;

    let records = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    store.close().await;
    Ok(SeedReport {
        keys: ids.len() as u64,
        signatures,
        records,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
