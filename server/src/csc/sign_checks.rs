//! The checks of a `signHash` request before anything is signed: the hashes fit the signature
//! algorithm and the credential's key, the SAD is the caller's, unused, unexpired and issued
//! for this credential, hash algorithm and count, and every hash is bound to it.

use sha2::Digest as _;

use super::algorithms::{SignAlgo, sign_algo};
use super::credentials::Credential;
use super::sad::{SignHashRequest, decode_hashes, invalid_sad};
use super::{CscError, Result};
use crate::auth::Principal;
use crate::keys::{Algorithm, HashAlg, RsaScheme};
use crate::pipeline::SigningPath;
use crate::store::csc::{CscAuthorizationRow, CscAuthorizationStatus};

/// The signature algorithm and the hashes a `signHash` request asks to sign, checked against
/// the credential's key: the hash algorithm named or implied must agree.
pub(super) fn requested_hashes(
    credential: &Credential,
    req: &SignHashRequest,
) -> Result<(SignAlgo, HashAlg, Vec<Vec<u8>>)> {
    let algo = sign_algo(&req.sign_algo, credential.meta.algorithm)?;
    let named = req
        .hash_algorithm_oid
        .as_deref()
        .map(super::algorithms::hash_of_oid)
        .transpose()?;
    let hash = match (named, algo.hash) {
        (Some(a), Some(b)) if a != b => {
            return Err(CscError::InvalidRequest(format!(
                "hashAlgo names {a} but signAlgo implies {b}"
            )));
        }
        (Some(h), _) | (None, Some(h)) => Some(h),
        (None, None) if credential.meta.algorithm == Algorithm::Ed25519 => None,
        (None, None) => {
            return Err(CscError::InvalidRequest(
                "hashAlgo is required when signAlgo does not name a hash".into(),
            ));
        }
    };
    let (hash, digests) = decode_hashes("hash", &req.hashes, hash)?;
    Ok((algo, hash, digests))
}

/// The authorization behind `sad`, if it still lets this caller sign `count` hashes of `hash`
/// with `credential`; the SAD's hash (what consumes it) with it.
pub(super) async fn usable_sad(
    path: &SigningPath,
    principal: &Principal,
    credential: &Credential,
    sad: &str,
    hash: HashAlg,
    count: usize,
) -> Result<(CscAuthorizationRow, Vec<u8>)> {
    let sad_hash = sha2::Sha256::digest(sad.trim().as_bytes()).to_vec();
    let row = path
        .store()
        .csc_authorization_by_sad(&sad_hash)
        .await?
        .ok_or_else(invalid_sad)?;
    if !principal.is(&row.issuer, &row.subject) {
        return Err(invalid_sad());
    }
    if row.credential_id != credential.meta.id {
        return Err(CscError::InvalidRequest(
            "the SAD was not issued for this credentialID".into(),
        ));
    }
    match row.status {
        CscAuthorizationStatus::Issued => {}
        CscAuthorizationStatus::Used => {
            return Err(CscError::InvalidRequest(
                "the SAD was already used; call credentials/authorize again".into(),
            ));
        }
        CscAuthorizationStatus::Pending => return Err(invalid_sad()),
    }
    // Whole seconds: a SAD answered with `expiresIn: N` is usable for at least N seconds (it
    // expires once the clock has passed its expiry second, not when it reaches it).
    let (_, unix) = crate::clock::now();
    if row.expires_unix.is_none_or(|e| e < unix) {
        return Err(CscError::InvalidRequest(
            "SAD expired; call credentials/authorize again".into(),
        ));
    }
    if count as i64 > row.num_signatures {
        return Err(CscError::InvalidRequest(format!(
            "{} hashes sent, more than the {} signatures this SAD authorizes",
            count, row.num_signatures
        )));
    }
    if hash.as_str() != row.hash_algorithm {
        return Err(CscError::InvalidRequest(format!(
            "the SAD authorizes {} hashes, not {hash}",
            row.hash_algorithm
        )));
    }
    Ok((row, sad_hash))
}

/// Each digest with the approval request it was authorized under (if any): every digest must
/// be bound to the SAD, and an approved RSA hash is signed with the padding it was approved
/// for.
pub(super) fn bound_plan(
    row: &CscAuthorizationRow,
    digests: Vec<Vec<u8>>,
    scheme: RsaScheme,
    credential: &Credential,
) -> Result<Vec<(Vec<u8>, Option<String>)>> {
    let mut plan = Vec::with_capacity(digests.len());
    for (i, digest) in digests.into_iter().enumerate() {
        let hex_digest = hex::encode(&digest);
        let bound = row
            .hashes
            .iter()
            .find(|b| b.hash == hex_digest)
            .ok_or_else(|| {
                CscError::InvalidRequest(format!("hash[{i}] is not bound to this SAD"))
            })?;
        if bound.approval.is_some()
            && scheme == RsaScheme::Pss
            && credential.meta.algorithm.is_rsa()
        {
            return Err(CscError::InvalidRequest(format!(
                "hash[{i}] was approved for a PKCS#1 v1.5 signature; sign it with \
                 sha256WithRSAEncryption (or the matching hash) rather than RSASSA-PSS"
            )));
        }
        plan.push((digest, bound.approval.clone()));
    }
    Ok(plan)
}
