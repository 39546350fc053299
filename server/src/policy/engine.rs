//! The wasmtime engine: compiles modules once (at upload or first use) into a cached
//! `InstancePre`, and runs each evaluation in a fresh instance under fuel, an epoch deadline,
//! a memory cap and a stack limit, with NaN canonicalization for determinism.
//!
//! Evaluations block: callers on the async runtime use `run_blocking`, which also bounds how
//! many run at once to the pooling allocator's size. Compiles at upload are bounded too
//! (`MAX_CONCURRENT_COMPILES`), and both bounds stay held until the blocking work really ends,
//! even when the caller stopped waiting. An evaluation never returns an allow unless the
//! policy's own output said so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_policy::{Decision, SettingsCheck};
use sha2::Digest as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Module, OptLevel,
    PoolingAllocationConfig, Store, TypedFunc,
};

use super::PolicyError;
use super::abi::{self, HostState, PolicyFailure};
use super::limits::{LimitsConfig, PolicyLimits};
pub use super::pace::Pace;
use super::pace::thread_cpu_time;

/// A module compiled for this engine, ready to instantiate.
#[derive(Clone)]
pub struct CompiledPolicy {
    /// SHA-256 of the module bytes, hex.
    pub digest: String,
    /// Whether the module exports `keyward_validate_settings`.
    pub validates_settings: bool,
    /// The limits it runs under.
    pub limits: PolicyLimits,
    /// How long its evaluations take, to decide where they run (see `Pace`).
    pub pace: Arc<Pace>,
    pre: InstancePre<HostState>,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("digest", &self.digest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision; a deny with the failure's code when the evaluation failed.
    pub decision: Decision,
    /// Why the evaluation failed, if it did.
    pub failure: Option<PolicyFailure>,
    /// Fuel consumed.
    pub fuel: u64,
    /// Wall time, microseconds.
    pub micros: u64,
    /// CPU time of the evaluating thread, microseconds (what `Pace` judges).
    pub cpu_micros: u64,
    /// Lines the policy logged.
    pub logs: Vec<String>,
}

/// The policy engine. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<wasmtime::Linker<HostState>>,
    limits: Arc<LimitsConfig>,
    slots: Arc<Semaphore>,
    compiles: Arc<Semaphore>,
    max_compiles: usize,
    compile_wait: Duration,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// How long compiling a module at upload may take, and how long an upload waits for a
/// compile permit before it is answered that the server is busy.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Uploads compiled at once. Cranelift compiles on all cores and wasmtime cannot cancel a
/// compile, so a compile whose caller timed out keeps running (and keeps its permit) until
/// its thread ends; a small bound keeps slow uploads from piling up threads and starving
/// evaluations. Compiling stored policies on first use is bounded by `run_blocking` only.
pub const MAX_CONCURRENT_COMPILES: usize = 2;

/// Bytes of a pooled memory (and table) reset in place rather than returned to the kernel.
const KEEP_RESIDENT: usize = 2 << 20;

impl PolicyEngine {
    /// An engine with `limits`, and its epoch ticker thread (which ends with the engine).
    pub fn new(limits: LimitsConfig) -> Result<Self, PolicyError> {
        Self::with_compile_bound(limits, MAX_CONCURRENT_COMPILES, COMPILE_TIMEOUT)
    }

    /// Like `new`, with at most `max_compiles` uploads compiled at once (at least 1), each
    /// upload waiting at most `compile_wait` for its turn.
    pub fn with_compile_bound(
        limits: LimitsConfig,
        max_compiles: usize,
        compile_wait: Duration,
    ) -> Result<Self, PolicyError> {
        let max_compiles = max_compiles.max(1);
        let mut pool = PoolingAllocationConfig::default();
        let slots = limits.max_concurrent.max(1);
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(limits.max.memory_bytes as usize)
            // Reset a slot's memory with memset instead of madvise: every madvise on a
            // multi-threaded process flushes the TLBs of every core (an interrupt each), which
            // cost more than the evaluation itself. With PAGEMAP_SCAN (Linux 6.7) only the
            // pages an evaluation touched are reset; without it, the first `KEEP_RESIDENT`
            // bytes are.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .cranelift_nan_canonicalization(true)
            .cranelift_opt_level(OptLevel::Speed)
            // Explicit bounds checks instead of guard pages: a slot whose memory grew during
            // an evaluation is otherwise shrunk back with mprotect before its next use, and
            // every mprotect that takes access away flushes the TLBs of all cores.
            .signals_based_traps(false)
            .memory_guard_size(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| PolicyError::Engine(format!("cannot start the policy engine: {e}")))?;
        let linker = abi::linker(&engine)
            .map_err(|e| PolicyError::Engine(format!("cannot link host functions: {e}")))?;
        let weak = engine.weak();
        let tick = Duration::from_millis(limits.tick_ms.max(1));
        std::thread::Builder::new()
            .name("keyward-policy-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PolicyError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(PolicyEngine {
            engine,
            linker: Arc::new(linker),
            slots: Arc::new(Semaphore::new(slots as usize)),
            compiles: Arc::new(Semaphore::new(max_compiles)),
            max_compiles,
            compile_wait,
            limits: Arc::new(limits),
        })
    }

    /// The engine's limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// Runs blocking engine work off the async runtime, at most `max_concurrent` at once. The
    /// slot is held by the blocking thread, so work whose caller stopped waiting still counts
    /// until it ends (the pooling allocator has no more instances than slots).
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PolicyEngine) -> T + Send + 'static,
    ) -> Result<T, PolicyError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PolicyError::Engine("the policy engine is shutting down".into()))?;
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&engine)
        })
        .await
        .map_err(|e| PolicyError::Engine(format!("policy task failed: {e}")))
    }

    /// Runs engine work on the calling thread, under the same bound on concurrent
    /// evaluations as `run_blocking`. Only for work known to be short (see `Pace`).
    pub async fn run_inline<T>(
        &self,
        work: impl FnOnce(&PolicyEngine) -> T,
    ) -> Result<T, PolicyError> {
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|_| PolicyError::Engine("the policy engine is shutting down".into()))?;
        Ok(work(self))
    }

    /// Checks and compiles a module (blocking): size cap, wasm binary, imports and exports
    /// of ABI v1, a successful instantiation under `limits`, and `keyward_abi_version() == 1`.
    pub fn compile(
        &self,
        bytes: &[u8],
        limits: PolicyLimits,
    ) -> Result<CompiledPolicy, PolicyError> {
        if bytes.len() > self.limits.max_module_bytes {
            return Err(PolicyError::TooLarge {
                size: bytes.len(),
                max: self.limits.max_module_bytes,
            });
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(PolicyError::InvalidModule(
                "the module is not WebAssembly (it must start with \\0asm); upload the .wasm \
                 file built for wasm32-unknown-unknown"
                    .into(),
            ));
        }
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| {
            PolicyError::InvalidModule(format!("the module is not valid WebAssembly: {e}"))
        })?;
        let validates_settings = abi::check_module(&module).map_err(PolicyError::InvalidModule)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PolicyError::InvalidModule(format!("the module cannot be linked: {e}")))?;
        let policy = CompiledPolicy {
            digest: hex::encode(sha2::Sha256::digest(bytes)),
            validates_settings,
            limits,
            pace: Arc::default(),
            pre,
        };
        let mut store = self.store(&policy.limits);
        let instance = policy.pre.instantiate(&mut store).map_err(|e| {
            let why = PolicyFailure::from_call(&e, store.data());
            PolicyError::InvalidModule(format!(
                "the module cannot be instantiated within its limits: {} ({})",
                why.code(),
                why.detail()
            ))
        })?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, "keyward_abi_version")
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| PolicyError::InvalidModule(format!("keyward_abi_version failed: {e}")))?;
        if version != keyward_policy::ABI_VERSION as i32 {
            return Err(PolicyError::InvalidModule(format!(
                "keyward_abi_version returned {version}; this server speaks ABI {}",
                keyward_policy::ABI_VERSION
            )));
        }
        Ok(policy)
    }

    /// Like `compile`, off the async runtime and within `COMPILE_TIMEOUT`, at most
    /// `MAX_CONCURRENT_COMPILES` at once; when no compile permit frees up in time, the server
    /// answers that it is busy rather than queueing without bound.
    pub async fn compile_async(
        &self,
        bytes: Arc<Vec<u8>>,
        limits: PolicyLimits,
    ) -> Result<CompiledPolicy, PolicyError> {
        let permit = self.compile_permit().await?;
        self.compile_with(permit, move |e| e.compile(&bytes, limits))
            .await
    }

    /// Waits up to `compile_wait` for a compile permit.
    async fn compile_permit(&self) -> Result<OwnedSemaphorePermit, PolicyError> {
        let acquire = self.compiles.clone().acquire_owned();
        match tokio::time::timeout(self.compile_wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PolicyError::Engine(
                "the policy engine is shutting down".into(),
            )),
            Err(_) => Err(PolicyError::Engine(format!(
                "the server is busy compiling other policies (at most {} at once); retry the \
                 upload later",
                self.max_compiles
            ))),
        }
    }

    /// Runs the compile `work` holding `permit`, answering within `COMPILE_TIMEOUT`.
    async fn compile_with<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        work: impl FnOnce(&PolicyEngine) -> Result<T, PolicyError> + Send + 'static,
    ) -> Result<T, PolicyError> {
        let work = self.run_blocking(move |engine| {
            // The permit moves into the blocking thread and is released only when the compile
            // really ends. wasmtime 48 cannot stop a Cranelift compile once started (the
            // instantiation that follows runs under fuel and the epoch deadline), so after a
            // timeout the thread runs to completion and keeps counting against the bound.
            let _permit = permit;
            work(engine)
        });
        match tokio::time::timeout(COMPILE_TIMEOUT, work).await {
            Ok(result) => result?,
            Err(_) => Err(PolicyError::InvalidModule(format!(
                "the module took longer than {}s to compile",
                COMPILE_TIMEOUT.as_secs()
            ))),
        }
    }

    fn store(&self, limits: &PolicyLimits) -> Store<HostState> {
        let mut store = Store::new(&self.engine, HostState::new(limits.memory_bytes));
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // Fuel is enabled on every store of this engine, so this cannot fail.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(self.limits.ticks(limits.timeout_ms));
        store.epoch_deadline_trap();
        store
    }

    /// Evaluates `input` (the ABI v1 JSON document) in a fresh instance (blocking).
    pub fn evaluate(&self, policy: &CompiledPolicy, input: &[u8]) -> Evaluation {
        self.call(policy, "keyward_evaluate", input, abi::parse_decision)
            .into_evaluation(policy)
    }

    /// Asks the policy whether `settings` (JSON) are acceptable (blocking). Policies that do
    /// not export `keyward_validate_settings` accept any settings.
    pub fn validate_settings(
        &self,
        policy: &CompiledPolicy,
        settings: &[u8],
    ) -> Result<(), String> {
        if !policy.validates_settings {
            return Ok(());
        }
        let out = self.call(policy, "keyward_validate_settings", settings, |bytes| {
            serde_json::from_slice::<SettingsCheck>(bytes).map_err(|e| {
                PolicyFailure::BadOutput(format!("keyward_validate_settings output: {e}"))
            })
        });
        match out.result {
            Ok(SettingsCheck { valid: true, .. }) => Ok(()),
            Ok(SettingsCheck { error, .. }) => {
                Err(error.unwrap_or_else(|| "the policy refused these settings".into()))
            }
            Err(f) => Err(format!(
                "the policy failed while checking settings: {} ({})",
                f.code(),
                f.detail()
            )),
        }
    }

    fn call<T>(
        &self,
        policy: &CompiledPolicy,
        export: &str,
        input: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, PolicyFailure>,
    ) -> CallOutcome<T> {
        let started = Instant::now();
        let cpu_started = thread_cpu_time();
        let mut store = self.store(&policy.limits);
        let result = self.call_in(&mut store, policy, export, input, parse);
        let fuel = policy.limits.fuel - store.get_fuel().unwrap_or(0);
        let micros = started.elapsed().as_micros() as u64;
        let cpu_micros = thread_cpu_time().saturating_sub(cpu_started).as_micros() as u64;
        let mut logs = std::mem::take(&mut store.data_mut().logs);
        if store.data().logs_dropped > 0 {
            logs.push(format!(
                "({} more lines dropped)",
                store.data().logs_dropped
            ));
        }
        CallOutcome {
            result,
            fuel,
            micros,
            cpu_micros,
            logs,
        }
    }

    fn call_in<T>(
        &self,
        store: &mut Store<HostState>,
        policy: &CompiledPolicy,
        export: &str,
        input: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, PolicyFailure>,
    ) -> Result<T, PolicyFailure> {
        let instance = policy
            .pre
            .instantiate(&mut *store)
            .map_err(|e| PolicyFailure::from_call(&e, store.data()))?;
        let unavailable = |e: wasmtime::Error| PolicyFailure::Unavailable(e.to_string());
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| PolicyFailure::Unavailable("no memory export".into()))?;
        let alloc: TypedFunc<i32, i32> = instance
            .get_typed_func(&mut *store, "keyward_alloc")
            .map_err(unavailable)?;
        let run: TypedFunc<(i32, i32), i64> = instance
            .get_typed_func(&mut *store, export)
            .map_err(unavailable)?;
        let len = i32::try_from(input.len())
            .map_err(|_| PolicyFailure::Unavailable("input too large".into()))?;
        let ptr = alloc
            .call(&mut *store, len)
            .map_err(|e| PolicyFailure::from_call(&e, store.data()))?;
        memory
            .write(&mut *store, ptr as u32 as usize, input)
            .map_err(|_| {
                PolicyFailure::BadOutput(
                    "keyward_alloc returned memory the policy does not have".into(),
                )
            })?;
        let packed = run
            .call(&mut *store, (ptr, len))
            .map_err(|e| PolicyFailure::from_call(&e, store.data()))?;
        let (out_ptr, out_len) = abi::unpack(packed);
        if out_len > self.limits.max_output_bytes {
            return Err(PolicyFailure::BadOutput(format!(
                "the output is {out_len} bytes; at most {} are read",
                self.limits.max_output_bytes
            )));
        }
        let bytes = memory
            .data(&*store)
            .get(out_ptr..out_ptr.saturating_add(out_len))
            .ok_or_else(|| {
                PolicyFailure::BadOutput(format!(
                    "the output pointer {out_ptr:#x}+{out_len} is outside the policy's memory"
                ))
            })?;
        parse(bytes)
    }
}

struct CallOutcome<T> {
    result: Result<T, PolicyFailure>,
    fuel: u64,
    micros: u64,
    cpu_micros: u64,
    logs: Vec<String>,
}

impl CallOutcome<Decision> {
    fn into_evaluation(self, policy: &CompiledPolicy) -> Evaluation {
        let (decision, failure) = match self.result {
            Ok(d) => (d, None),
            Err(f) => {
                tracing::warn!(digest = %policy.digest, reason = f.code(), detail = %f.detail(), "policy evaluation failed");
                (Decision::deny(f.code()), Some(f))
            }
        };
        Evaluation {
            decision,
            failure,
            fuel: self.fuel,
            micros: self.micros,
            cpu_micros: self.cpu_micros,
            logs: self.logs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(max_compiles: usize, compile_wait: Duration) -> PolicyEngine {
        let limits = LimitsConfig {
            max_concurrent: 2,
            ..LimitsConfig::default()
        };
        PolicyEngine::with_compile_bound(limits, max_compiles, compile_wait).unwrap()
    }

    fn allow_all() -> Arc<Vec<u8>> {
        Arc::new(super::super::builtin::module("allow-all").unwrap())
    }

    fn is_busy(r: &Result<CompiledPolicy, PolicyError>) -> bool {
        matches!(r, Err(PolicyError::Engine(m))
            if m.contains("busy compiling other policies") && m.contains("retry"))
    }

    /// While the only compile permit is held, another upload is answered busy instead of
    /// waiting without bound; once it is released, uploads compile again.
    #[tokio::test]
    async fn a_second_compile_while_the_permit_is_held_is_busy() {
        let engine = engine(1, Duration::from_millis(50));
        let limits = engine.limits().default;
        let held = engine.compile_permit().await.unwrap();
        let second = engine.compile_async(allow_all(), limits).await;
        assert!(is_busy(&second), "{second:?}");
        drop(held);
        let compiled = engine.compile_async(allow_all(), limits).await.unwrap();
        assert!(compiled.validates_settings);
    }

    /// A compile whose caller stopped waiting keeps its permit (and its evaluation slot) until
    /// its thread ends, so abandoned compiles cannot pile up past the bound.
    #[tokio::test]
    async fn an_abandoned_compile_keeps_its_permit_until_it_ends() {
        let engine = engine(1, Duration::from_millis(50));
        let limits = engine.limits().default;
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let permit = engine.compile_permit().await.unwrap();
        // A compile that runs until the test releases it.
        let slow = engine.compile_with(permit, move |_| {
            let _ = started_tx.send(());
            let _ = wait.recv();
            Ok(())
        });
        let mut slow = Box::pin(slow);
        tokio::select! {
            r = &mut slow => panic!("the slow compile ended early: {r:?}"),
            r = started => r.unwrap(),
        }
        // The caller stops waiting, as `compile_with` does on its timeout.
        drop(slow);
        assert_eq!(engine.compiles.available_permits(), 0);
        assert_eq!(engine.slots.available_permits(), 1);
        let busy = engine.compile_async(allow_all(), limits).await;
        assert!(is_busy(&busy), "{busy:?}");

        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.compiles.available_permits() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.compiles.available_permits(), 1);
        assert_eq!(engine.slots.available_permits(), 2);
        engine.compile_async(allow_all(), limits).await.unwrap();
    }
}
