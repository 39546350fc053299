//! The session pool of one PKCS#11 backend: loads the module, finds the token by label, logs
//! in once, and lends out at most `max_sessions` read-write sessions.
//!
//! Fault handling: any token or session error marks the pool down. The next caller after the
//! back-off delay finalizes the module and starts again (initialize, find the token, log in);
//! meanwhile callers get `KeyError::Unavailable` at once, never a software fallback. A refused
//! PIN is final: retrying could lock the token, so the operator must fix the PIN and restart.
//! The PIN is passed to `C_Login` and nowhere else; it never appears in an error or a log line.
//! Every call here blocks: callers run on blocking threads, never on the async runtime.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use super::config::Pkcs11Config;
use crate::keys::{KeyError, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

/// The logged-in module of one generation.
struct Live {
    ctx: Pkcs11,
    slot: Slot,
    /// Held open so that the login (shared by all sessions of the application) stays.
    anchor: Option<Session>,
    idle: Vec<Session>,
    /// Private key handles by CKA_ID; handles are valid for the whole generation.
    handles: HashMap<Vec<u8>, ObjectHandle>,
}

impl Live {
    fn shut_down(mut self) {
        self.idle.clear();
        self.anchor = None;
        // Closing every session of the old generation happened above; finalizing may fail
        // if the token is gone, which changes nothing.
        let _ = self.ctx.finalize();
    }
}

enum Health {
    Up,
    Down {
        reason: String,
        retry_at: Instant,
        backoff: Duration,
    },
    LoginRefused(String),
}

struct PoolState {
    live: Option<Live>,
    generation: u64,
    in_use: usize,
    health: Health,
}

/// A pool of logged-in sessions on one token.
pub struct SessionPool {
    config: Pkcs11Config,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// A session lent by the pool; it goes back when dropped, or is discarded after a fault.
pub struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    generation: u64,
    broken: bool,
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Present from checkout until drop.
        self.session
            .as_ref()
            .expect("a pooled session is present until dropped")
    }
}

impl PooledSession<'_> {
    /// Turns a PKCS#11 error of `what` into a key error, and marks the pool down unless the
    /// error is about the input alone.
    pub fn fault(&mut self, what: &str, err: P11Error) -> KeyError {
        let input_only = matches!(
            err,
            P11Error::Pkcs11(
                RvError::DataLenRange
                    | RvError::DataInvalid
                    | RvError::MechanismInvalid
                    | RvError::MechanismParamInvalid
                    | RvError::KeyTypeInconsistent
                    | RvError::KeyFunctionNotPermitted
                    | RvError::TemplateInconsistent
                    | RvError::TemplateIncomplete
                    | RvError::AttributeValueInvalid
                    | RvError::AttributeTypeInvalid
                    | RvError::DomainParamsInvalid
                    | RvError::CurveNotSupported,
                _
            )
        );
        let message = format!(
            "PKCS#11 backend {:?}: {what} failed: {err}",
            self.pool.config.name
        );
        if !input_only {
            self.broken = true;
            self.pool.mark_down(self.generation, &message);
        }
        KeyError::Unavailable(message)
    }

    /// The handle of the private key with `id` (and `label` when the id is empty), cached per
    /// generation. A key Keyward recorded but the token no longer holds is a token fault.
    pub fn private_key(&mut self, id: &[u8], label: &str) -> Result<ObjectHandle> {
        if !id.is_empty()
            && let Some(h) = self.pool.cached_handle(self.generation, id)
        {
            return Ok(h);
        }
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if id.is_empty() {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        } else {
            template.push(Attribute::Id(id.to_vec()));
        }
        let found = self
            .find_objects(&template)
            .map_err(|e| self.fault("finding the key", e))?;
        match found.as_slice() {
            [h] => {
                if !id.is_empty() {
                    self.pool.cache_handle(self.generation, id, *h);
                }
                Ok(*h)
            }
            [] => {
                let message = format!(
                    "PKCS#11 backend {:?}: the token no longer holds key {label:?}",
                    self.pool.config.name
                );
                self.broken = true;
                self.pool.mark_down(self.generation, &message);
                Err(KeyError::Unavailable(message))
            }
            _ => Err(KeyError::Unavailable(format!(
                "PKCS#11 backend {:?}: several private keys match {label:?}",
                self.pool.config.name
            ))),
        }
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let mut state = self.pool.lock();
        if state.generation == self.generation {
            state.in_use = state.in_use.saturating_sub(1);
            if !self.broken
                && matches!(state.health, Health::Up)
                && let Some(live) = state.live.as_mut()
            {
                live.idle.push(session);
            }
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl SessionPool {
    /// A pool for `config`; nothing is loaded until `connect_now` or the first checkout.
    pub fn new(config: Pkcs11Config) -> Self {
        SessionPool {
            config,
            state: Mutex::new(PoolState {
                live: None,
                generation: 0,
                in_use: 0,
                health: Health::Down {
                    reason: "not connected yet".into(),
                    retry_at: Instant::now(),
                    backoff: FIRST_BACKOFF,
                },
            }),
            freed: Condvar::new(),
        }
    }

    /// The backend's configuration.
    pub fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects at start-up; the error says why the backend is not ready.
    pub fn connect_now(&self) -> Result<()> {
        let mut state = self.lock();
        self.reconnect(&mut state)
    }

    /// Lends a logged-in session, reconnecting first if the pool is down and due a retry.
    pub fn checkout(&self) -> Result<PooledSession<'_>> {
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut state = self.lock();
        loop {
            match &state.health {
                Health::LoginRefused(reason) => return Err(KeyError::Unavailable(reason.clone())),
                Health::Down {
                    reason, retry_at, ..
                } => {
                    if Instant::now() < *retry_at {
                        return Err(KeyError::Unavailable(reason.clone()));
                    }
                    if state.in_use > 0 {
                        return Err(KeyError::Unavailable(format!(
                            "{reason} (recovering; sessions still in use)"
                        )));
                    }
                    self.reconnect(&mut state)?;
                }
                Health::Up => {
                    let generation = state.generation;
                    let total = state.in_use + state.live.as_ref().map_or(0, |l| l.idle.len());
                    let Some(live) = state.live.as_mut() else {
                        return Err(KeyError::Unavailable("PKCS#11 pool lost its module".into()));
                    };
                    let session = if let Some(s) = live.idle.pop() {
                        Some(s)
                    } else if total < self.config.max_sessions {
                        match live.ctx.open_rw_session(live.slot) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                let message = format!(
                                    "PKCS#11 backend {:?}: opening a session failed: {e}",
                                    self.config.name
                                );
                                self.down(&mut state, message.clone());
                                return Err(KeyError::Unavailable(message));
                            }
                        }
                    } else {
                        None
                    };
                    if let Some(session) = session {
                        state.in_use += 1;
                        return Ok(PooledSession {
                            pool: self,
                            session: Some(session),
                            generation,
                            broken: false,
                        });
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(KeyError::Unavailable(format!(
                            "PKCS#11 backend {:?}: all {} sessions stayed busy",
                            self.config.name, self.config.max_sessions
                        )));
                    }
                    state = self
                        .freed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Whether the backend can sign now: a session answers and is logged in, and the slot
    /// still holds the configured token.
    pub fn check_ready(&self) -> Result<()> {
        let mut session = self.checkout()?;
        match session.get_session_info() {
            Ok(info)
                if matches!(
                    info.session_state(),
                    cryptoki::session::SessionState::RwUser
                        | cryptoki::session::SessionState::RoUser
                ) => {}
            Ok(_) => {
                return Err(session.fault(
                    "checking the login",
                    P11Error::Pkcs11(
                        RvError::UserNotLoggedIn,
                        cryptoki::context::Function::GetSessionInfo,
                    ),
                ));
            }
            Err(e) => return Err(session.fault("checking the session", e)),
        }
        let probe = {
            let state = self.lock();
            state.live.as_ref().map(|l| (l.ctx.clone(), l.slot))
        };
        let Some((ctx, slot)) = probe else {
            return Err(KeyError::Unavailable("PKCS#11 module not loaded".into()));
        };
        match ctx.get_token_info(slot) {
            Ok(info) if info.label().trim_end() == self.config.token_label => Ok(()),
            Ok(_) => Err(session.fault(
                "checking the token",
                P11Error::Pkcs11(
                    RvError::TokenNotPresent,
                    cryptoki::context::Function::GetTokenInfo,
                ),
            )),
            Err(e) => Err(session.fault("checking the token", e)),
        }
    }

    /// Runs `f` with the module and the token's slot (for listings), marking the pool down if
    /// the module fails.
    pub fn with_module<T>(
        &self,
        f: impl FnOnce(&Pkcs11, Slot) -> std::result::Result<T, P11Error>,
    ) -> Result<T> {
        let session = self.checkout()?;
        let generation = session.generation;
        let (ctx, slot) = {
            let state = self.lock();
            match state.live.as_ref() {
                Some(l) => (l.ctx.clone(), l.slot),
                None => return Err(KeyError::Unavailable("PKCS#11 module not loaded".into())),
            }
        };
        let out = f(&ctx, slot).map_err(|e| {
            let message = format!(
                "PKCS#11 backend {:?}: reading the slots failed: {e}",
                self.config.name
            );
            self.mark_down(generation, &message);
            KeyError::Unavailable(message)
        });
        drop(session);
        out
    }

    fn cached_handle(&self, generation: u64, id: &[u8]) -> Option<ObjectHandle> {
        let state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.live.as_ref()?.handles.get(id).copied()
    }

    fn cache_handle(&self, generation: u64, id: &[u8], handle: ObjectHandle) {
        let mut state = self.lock();
        if state.generation == generation
            && let Some(live) = state.live.as_mut()
        {
            live.handles.insert(id.to_vec(), handle);
        }
    }

    /// Marks generation `generation` down (a later generation is left alone).
    fn mark_down(&self, generation: u64, reason: &str) {
        let mut state = self.lock();
        if state.generation == generation && matches!(state.health, Health::Up) {
            self.down(&mut state, reason.to_string());
        }
    }

    fn down(&self, state: &mut PoolState, reason: String) {
        tracing::error!(backend = %self.config.name, "{reason}; will reconnect");
        if let Some(live) = state.live.as_mut() {
            live.idle.clear();
            live.handles.clear();
        }
        state.health = Health::Down {
            reason,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
        };
    }

    /// Tears down the old generation and connects anew; on failure the next retry waits
    /// twice as long (up to `MAX_BACKOFF`).
    fn reconnect(&self, state: &mut PoolState) -> Result<()> {
        if let Some(old) = state.live.take() {
            old.shut_down();
        }
        state.generation += 1;
        state.in_use = 0;
        match self.connect() {
            Ok(live) => {
                if !matches!(state.health, Health::Up) {
                    tracing::info!(backend = %self.config.name, token = %self.config.token_label,
                        "PKCS#11 token connected and logged in");
                }
                state.live = Some(live);
                state.health = Health::Up;
                Ok(())
            }
            Err(Connect::LoginRefused(reason)) => {
                tracing::error!(backend = %self.config.name, "{reason}");
                state.health = Health::LoginRefused(reason.clone());
                Err(KeyError::Unavailable(reason))
            }
            Err(Connect::Failed(reason)) => {
                let backoff = match &state.health {
                    Health::Down { backoff, .. } => (*backoff * 2).min(MAX_BACKOFF),
                    _ => FIRST_BACKOFF,
                };
                tracing::warn!(backend = %self.config.name, retry_in_ms = backoff.as_millis() as u64, "{reason}");
                state.health = Health::Down {
                    reason: reason.clone(),
                    retry_at: Instant::now() + backoff,
                    backoff,
                };
                Err(KeyError::Unavailable(reason))
            }
        }
    }

    fn connect(&self) -> std::result::Result<Live, Connect> {
        let c = &self.config;
        let failed = |what: &str, e: P11Error| {
            Connect::Failed(format!("PKCS#11 backend {:?}: {what}: {e}", c.name))
        };
        let ctx = Pkcs11::new(&c.module).map_err(|e| failed("loading the module", e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed("initializing the module", e)),
        }
        let mut slot = None;
        for s in ctx
            .get_slots_with_token()
            .map_err(|e| failed("listing slots", e))?
        {
            let info = ctx
                .get_token_info(s)
                .map_err(|e| failed("reading token info", e))?;
            if info.label().trim_end() == c.token_label {
                slot = Some(s);
                break;
            }
        }
        let Some(slot) = slot else {
            let _ = ctx.finalize();
            return Err(Connect::Failed(format!(
                "PKCS#11 backend {:?}: no token labelled {:?} is present",
                c.name, c.token_label
            )));
        };
        let anchor = ctx
            .open_rw_session(slot)
            .map_err(|e| failed("opening a session", e))?;
        match anchor.login(UserType::User, Some(c.pin.secret())) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinLocked
                | RvError::PinExpired),
                _,
            )) => {
                drop(anchor);
                let _ = ctx.finalize();
                let code = match rv {
                    RvError::PinIncorrect => "CKR_PIN_INCORRECT",
                    RvError::PinInvalid => "CKR_PIN_INVALID",
                    RvError::PinLenRange => "CKR_PIN_LEN_RANGE",
                    RvError::PinLocked => "CKR_PIN_LOCKED",
                    _ => "CKR_PIN_EXPIRED",
                };
                return Err(Connect::LoginRefused(format!(
                    "PKCS#11 backend {:?}: the token {:?} refused the user PIN from {} ({code}); \
                     fix the PIN and restart Keyward (no retry, so that the token is not locked)",
                    c.name, c.token_label, c.pin_source
                )));
            }
            Err(e) => return Err(failed("logging in", e)),
        }
        Ok(Live {
            ctx,
            slot,
            anchor: Some(anchor),
            idle: Vec::new(),
            handles: HashMap::new(),
        })
    }
}

enum Connect {
    Failed(String),
    LoginRefused(String),
}
