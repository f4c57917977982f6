//! Bearer tokens that are JSON Web Tokens, verified with a key the identities file names (its
//! `jwt` section), for deployments whose callers get their tokens from an identity provider:
//! the caller is the token's subject (`sub`), with the roles its roles claim lists.
//!
//! A token must be signed with the configured algorithm and key, carry `exp` and `sub`, and
//! match the configured issuer and audience when those are set. A token may not grant the
//! `node` role: nodes are known by their certificates. A verified token is remembered until it
//! expires, so a caller's every call does not pay for a signature check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tonic::Status;

use super::{Caller, Role};

/// The identities file's `jwt` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtConfig {
    /// The signing algorithm tokens must use, as JWS names it (`ES256`, `RS256`, `EdDSA`,
    /// `HS256` …).
    algorithm: String,
    /// The PEM public key that verifies tokens (for `HS*`, the file holding the shared secret),
    /// relative to the identities file.
    key_file: PathBuf,
    /// The `iss` tokens must carry, if set.
    #[serde(default)]
    issuer: Option<String>,
    /// The `aud` tokens must carry, if set.
    #[serde(default)]
    audience: Option<String>,
    /// The claim listing the caller's roles (an array of role names, or one string of them
    /// separated by spaces).
    #[serde(default = "default_roles_claim")]
    roles_claim: String,
}

fn default_roles_claim() -> String {
    "roles".into()
}

/// How long past `exp` a token is still taken, for clocks that disagree a little.
const LEEWAY_SECS: u64 = 30;

/// Verified tokens remembered at most; the memory is emptied when it fills.
const REMEMBERED: usize = 10_000;

/// Verifies JWT bearer tokens with the configured key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: String,
    /// By the token's SHA-256.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A token that verified: its caller, and until when (Unix seconds) it is good.
struct Verified {
    caller: Arc<Caller>,
    good_until: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The claims Verdict reads; the roles claim is looked up among the rest by its name.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

impl JwtVerifier {
    /// The verifier `config` describes; `base` is the directory `key_file` is relative to.
    pub(super) fn load(config: JwtConfig, base: &Path) -> anyhow::Result<Self> {
        let algorithm: Algorithm = config.algorithm.parse().map_err(|_| {
            anyhow!(
                "jwt.algorithm {:?} is not a JWS algorithm: use ES256, ES384, EdDSA, RS256, \
                 RS384, RS512, PS256, PS384, PS512, HS256, HS384 or HS512",
                config.algorithm
            )
        })?;
        let path = base.join(&config.key_file);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("jwt.key_file {}: cannot be read", path.display()))?;
        let key = decoding_key(algorithm, &bytes)
            .with_context(|| format!("jwt.key_file {}", path.display()))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            key,
            validation,
            algorithm,
            issuer: config.issuer,
            audience: config.audience,
            roles_claim: config.roles_claim,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The caller `token` (whose SHA-256 is `digest`) names, if its signature and claims
    /// verify; otherwise `UNAUTHENTICATED` saying what is wrong with it.
    pub fn verify(&self, token: &str, digest: [u8; 32]) -> Result<Arc<Caller>, Status> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(known) = self
            .verified
            .lock()
            .expect("lock")
            .get(&digest)
            .filter(|known| now <= known.good_until)
        {
            return Ok(known.caller.clone());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| Status::unauthenticated(self.explain(e.kind())))?
            .claims;
        let caller = Arc::new(Caller {
            roles: self.roles(&claims)?,
            name: claims.sub,
        });
        let mut verified = self.verified.lock().expect("lock");
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        let good_until = claims.exp + LEEWAY_SECS;
        verified.insert(
            digest,
            Verified {
                caller: caller.clone(),
                good_until,
            },
        );
        Ok(caller)
    }

    fn roles(&self, claims: &Claims) -> Result<std::collections::BTreeSet<Role>, Status> {
        let claim = &self.roles_claim;
        let refuse = |what: String| Status::unauthenticated(format!("the bearer token {what}"));
        let names: Vec<&str> = match claims.rest.get(claim) {
            Some(serde_json::Value::String(names)) => names.split_whitespace().collect(),
            Some(serde_json::Value::Array(names)) => {
                names.iter().filter_map(serde_json::Value::as_str).collect()
            }
            None => {
                let what =
                    format!("has no {claim:?} claim, so no roles: its issuer must list them");
                return Err(refuse(what));
            }
            Some(_) => {
                let what = format!("has a {claim:?} claim that is not a list of role names");
                return Err(refuse(what));
            }
        };
        names.into_iter().map(role).collect()
    }

    fn explain(&self, error: &ErrorKind) -> String {
        let what = match error {
            ErrorKind::ExpiredSignature => "has expired: get a new one from its issuer".into(),
            ErrorKind::ImmatureSignature => "is not valid yet (its nbf is in the future)".into(),
            ErrorKind::InvalidSignature => {
                "has a signature that the key this coordinator trusts does not verify".into()
            }
            ErrorKind::InvalidAlgorithm => {
                format!("is signed with another algorithm than {:?}", self.algorithm)
            }
            ErrorKind::InvalidIssuer => format!(
                "comes from another issuer (iss) than {:?}",
                self.issuer.as_deref().unwrap_or_default()
            ),
            ErrorKind::InvalidAudience => format!(
                "is meant for another audience (aud) than {:?}",
                self.audience.as_deref().unwrap_or_default()
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("has no {claim:?} claim"),
            other => format!("is not a JWT this coordinator can read ({other:?})"),
        };
        format!("the bearer token {what}")
    }
}

fn role(name: &str) -> Result<Role, Status> {
    match Role::named(name) {
        Some(Role::Node) => Err(Status::permission_denied(
            "a bearer token may not grant the node role: nodes are known by their certificates",
        )),
        Some(role) => Ok(role),
        None => Err(Status::unauthenticated(format!(
            "the bearer token names the role {name:?}, which is not application, participant \
             or operator"
        ))),
    }
}

fn decoding_key(algorithm: Algorithm, bytes: &[u8]) -> anyhow::Result<DecodingKey> {
    use Algorithm::*;
    let key = match algorithm {
        HS256 | HS384 | HS512 => {
            let secret = bytes.trim_ascii();
            anyhow::ensure!(
                secret.len() >= 32,
                "an {algorithm:?} secret of {} bytes is guessable: use at least 32 random bytes",
                secret.len()
            );
            return Ok(DecodingKey::from_secret(secret));
        }
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(bytes),
        ES256 | ES384 => DecodingKey::from_ec_pem(bytes),
        EdDSA => DecodingKey::from_ed_pem(bytes),
    };
    key.map_err(|e| anyhow!("not a PEM public key for {algorithm:?} ({e})"))
}
