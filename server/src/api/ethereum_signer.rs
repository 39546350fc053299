//! The Ethereum signer shared by the REST routes and the JSON-RPC endpoint: decodes a request
//! (`chains::ethereum::signed`), hands its digest to `SigningPath::submit` (the only way
//! anything gets signed), and assembles the backend's signature into the standard's form.
//! Never returns a signature that does not recover to the key's address.

use keyward_policy::Intent;

use super::sign_route::Routed;
use super::signing::DryRunResult;
use crate::auth::Principal;
use crate::chains::ethereum::signed::{Assembled, EthRequest, finish_approved};
use crate::chains::ethereum::{address_of, lower, signed};
use crate::intent::{IntentError, SignIntent};
use crate::keys::{EcdsaFormat, HashAlg, KeyError, SignOptions, ToSign};
use crate::pipeline::{
    Idempotency, PendingReceipt, PipelineError, SignCall, SignReceipt, SigningPath,
};

/// Errors of Ethereum signing.
#[derive(Debug, thiserror::Error)]
pub enum EthError {
    /// The input does not decode or does not make sense.
    #[error(transparent)]
    Intent(#[from] IntentError),
    /// The pipeline refused or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// What a signing produced: the signature in the standard's form, and the pipeline's receipt.
#[derive(Debug, Clone)]
pub struct EthSigned {
    /// The signature, assembled.
    pub assembled: Assembled,
    /// The pipeline's receipt.
    pub receipt: SignReceipt,
}

/// A signature, or a request waiting for approvers.
#[derive(Debug, Clone)]
pub enum EthOutcome {
    /// Signed.
    Signed(Box<EthSigned>),
    /// Waiting for approvers.
    Pending(Box<PendingReceipt>),
}

/// The Ethereum result of a request signed after approval (`None` for intents of other
/// kinds): the signed transaction rebuilt from the unsigned encoding kept in the intent, or
/// the 65-byte signature.
pub fn approved_result(
    receipt: &SignReceipt,
    intent: &Intent,
) -> Result<Option<EthSigned>, PipelineError> {
    Ok(
        finish_approved(&receipt.signature, receipt.recovery_id, intent)?.map(|assembled| {
            EthSigned {
                assembled,
                receipt: receipt.clone(),
            }
        }),
    )
}

/// Hands `request` to the pipeline for the key `key_id` and assembles the result.
pub async fn sign(
    path: &SigningPath,
    principal: Principal,
    key_id: String,
    request: EthRequest,
    idempotency: Option<Idempotency>,
    request_id: String,
    dry_run: bool,
) -> Result<Result<EthOutcome, DryRunResult>, EthError> {
    let operation = request.operation();
    let decoded = request.decode()?;
    let key = path
        .check_access(
            &principal,
            &key_id,
            crate::chains::ethereum::PURPOSE,
            operation,
            &request_id,
        )
        .await?;
    let from = address_of(&key.meta.public_key).ok();
    let from_text = from.as_ref().map(lower).unwrap_or_default();
    let signed::Prepared {
        hash,
        chain_id,
        intent,
        transaction,
    } = decoded.prepare(&from_text)?;
    let allowed_chains = crate::wallets::allowed_chain_ids(path, &key_id)
        .await
        .map_err(PipelineError::from)?;
    let key_label = key_id.clone();
    let call = SignCall {
        principal,
        key_id,
        operation,
        build: Box::new(move |_algorithm| {
            if let Some(chain_id) = chain_id
                && !allowed_chains.is_empty()
                && !allowed_chains.contains(&chain_id)
            {
                return Err(PipelineError::Forbidden(format!(
                    "key {key_label} may sign for chain ids {allowed_chains:?} only, not {chain_id}"
                )));
            }
            let intent = SignIntent {
                purpose: crate::chains::ethereum::PURPOSE,
                intent,
                // The digest is Keccak-256; the hash label only sizes the 32-byte slot, and
                // ECDSA backends sign the digest as given.
                to_sign: ToSign::Digest {
                    hash: HashAlg::Sha256,
                    digest: hash.to_vec(),
                },
            };
            let options = SignOptions {
                format: EcdsaFormat::Raw,
                ..Default::default()
            };
            Ok((intent, options))
        }),
        idempotency,
        request_id,
    };
    let receipt = match super::sign_route::run(path, call, dry_run).await? {
        Routed::Signed(r) => r,
        Routed::Pending(p) => return Ok(Ok(EthOutcome::Pending(Box::new(p)))),
        Routed::DryRun(d) => return Ok(Err(d)),
    };
    let from = from.ok_or_else(|| {
        PipelineError::Key(KeyError::Unavailable(
            "the key has no Ethereum address".into(),
        ))
    })?;
    let assembled = signed::assemble(
        transaction,
        &receipt.signature,
        receipt.recovery_id,
        hash,
        from,
    )
    .map_err(PipelineError::from)?;
    Ok(Ok(EthOutcome::Signed(Box::new(EthSigned {
        assembled,
        receipt,
    }))))
}
