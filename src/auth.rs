//! Who is calling, and what they may do (`verdict serve --auth FILE`).
//!
//! A caller is recognised by the certificate it presented under mutual TLS (its subject's
//! common name or a DNS name in it) or by a bearer token in the `authorization` metadata, as
//! the identities file lists them or as a JWT its `jwt` section trusts (see `jwt.rs`); each
//! identity has roles:
//!
//! | role | may call |
//! |---|---|
//! | `application` | `Begin`, `Submit`; `Enlist`, `Commit`, `Abort`, `GetTransaction` of the transactions it began (a retried `Submit` too) |
//! | `participant` | `Enlist` itself, `Resolve` the transactions it is enlisted in |
//! | `operator` | everything an application may, and `ListTransactions`, `Resolve`, `ResolveByHand`, `RetryDelivery`, `GetStats`; the cluster's status and membership |
//! | `node` | `verdict.internal.Raft` (another node of the cluster), and reads forwarded on a caller's behalf |
//!
//! Health and reflection stay open: they reveal nothing about transactions. A call by no one
//! known answers `UNAUTHENTICATED`, one whose caller lacks the role `PERMISSION_DENIED`; each
//! is logged with the caller and changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use serde::Deserialize;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::credentials::AUTHORIZATION;
use crate::tls::certificate_names;

mod jwt;

use jwt::{JwtConfig, JwtVerifier};

/// Metadata naming the caller on whose behalf a node forwards a read to the leader.
pub const ON_BEHALF_OF: &str = "verdict-on-behalf-of";
/// Metadata with that caller's roles (comma-separated), for a caller the leader's identities
/// file does not list (one known by a JWT).
pub const ON_BEHALF_OF_ROLES: &str = "verdict-on-behalf-of-roles";

/// What an identity may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Application,
    Participant,
    Operator,
    Node,
}

/// A recognised caller, as the request's handlers find it in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub roles: BTreeSet<Role>,
}

impl Role {
    const ALL: [Role; 4] = [
        Role::Application,
        Role::Participant,
        Role::Operator,
        Role::Node,
    ];

    /// As the identities file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Application => "application",
            Role::Participant => "participant",
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }

    fn named(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl Caller {
    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Its roles as [`ON_BEHALF_OF_ROLES`] carries them.
    pub fn role_names(&self) -> String {
        let names: Vec<_> = self.roles.iter().map(|role| role.name()).collect();
        names.join(",")
    }
}

/// The caller a request was admitted as, when the coordinator authenticates callers.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Arc<Caller>> {
    request.extensions().get::<Arc<Caller>>().cloned()
}

/// One identity as the file lists it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    roles: Vec<Role>,
    /// Recognised by a client certificate with this common name or DNS name.
    #[serde(default)]
    certificate: Option<String>,
    /// Recognised by a bearer token whose SHA-256 is this (hex).
    #[serde(default)]
    token_sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    identities: Vec<Entry>,
    /// Bearer tokens that are JWTs from an identity provider, and how to verify them.
    #[serde(default)]
    jwt: Option<JwtConfig>,
}

/// The identities a coordinator knows, by how each is recognised.
#[derive(Debug, Default)]
pub struct Identities {
    by_name: HashMap<String, Arc<Caller>>,
    by_certificate: HashMap<String, Arc<Caller>>,
    by_token: HashMap<[u8; 32], Arc<Caller>>,
    jwt: Option<JwtVerifier>,
}

impl Identities {
    /// Reads and checks the identities file (`--auth`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let what = || format!("--auth {}", path.display());
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot be read", what()))?;
        let file: File = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not an identities file ({{\"identities\": [{{\"name\", \"roles\", \
                 \"certificate\" or \"token_sha256\"}}], \"jwt\": {{\"algorithm\", \
                 \"key_file\", \"issuer\", \"audience\"}}}})",
                what()
            )
        })?;
        let mut identities = Identities::default();
        for (i, entry) in file.identities.into_iter().enumerate() {
            identities
                .add(entry)
                .with_context(|| format!("{}: identity {}", what(), i + 1))?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        identities.jwt = file
            .jwt
            .map(|config| JwtVerifier::load(config, base))
            .transpose()
            .with_context(what)?;
        anyhow::ensure!(
            !identities.by_name.is_empty() || identities.jwt.is_some(),
            "{}: lists no identities and no jwt section, so nobody could call",
            what()
        );
        Ok(identities)
    }

    fn add(&mut self, entry: Entry) -> anyhow::Result<()> {
        let name = entry.name.trim();
        anyhow::ensure!(!name.is_empty(), "has no name");
        anyhow::ensure!(!entry.roles.is_empty(), "{name:?} has no roles");
        anyhow::ensure!(
            entry.certificate.is_some() || entry.token_sha256.is_some(),
            "{name:?} has no credential: give \"certificate\" (a certificate name) or \
             \"token_sha256\""
        );
        let caller = Arc::new(Caller {
            name: name.to_owned(),
            roles: entry.roles.into_iter().collect(),
        });
        let taken = |what: &str| anyhow::anyhow!("{name:?}: another identity has this {what}");
        if self
            .by_name
            .insert(name.to_owned(), caller.clone())
            .is_some()
        {
            return Err(taken("name"));
        }
        if let Some(certificate) = entry.certificate {
            if self
                .by_certificate
                .insert(certificate, caller.clone())
                .is_some()
            {
                return Err(taken("certificate name"));
            }
        }
        if let Some(hex) = entry.token_sha256 {
            let digest = parse_sha256(&hex).with_context(|| {
                format!("{name:?}: token_sha256 is not 64 hex digits (sha256sum of the token)")
            })?;
            if self.by_token.insert(digest, caller).is_some() {
                return Err(taken("token"));
            }
        }
        Ok(())
    }

    /// Who sent `request`: its bearer token's identity, or its client certificate's.
    fn recognise<B>(&self, request: &http::Request<B>) -> Result<Arc<Caller>, Status> {
        if let Some(value) = request.headers().get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization metadata is not \"Bearer TOKEN\"")
                })?;
            let digest = sha256(token);
            return match (self.by_token.get(&digest), &self.jwt) {
                (Some(caller), _) => Ok(caller.clone()),
                (None, Some(jwt)) if token.split('.').count() == 3 => jwt.verify(token, digest),
                (None, _) => Err(Status::unauthenticated(
                    "the bearer token is not one this coordinator knows",
                )),
            };
        }
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        let Some(leaf) = certs.as_ref().and_then(|certs| certs.first()) else {
            return Err(Status::unauthenticated(
                "no credentials: present a client certificate (mutual TLS) or a bearer token \
                 (--token-file)",
            ));
        };
        let names = certificate_names(leaf);
        names
            .iter()
            .find_map(|name| self.by_certificate.get(name).cloned())
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "the client certificate ({}) names no identity this coordinator knows",
                    names.join(", ")
                ))
            })
    }

    /// The caller a node forwarded a call for, with the roles the node found it has (a caller
    /// known by a JWT is in no file); from a node that sends no roles, the identity of that
    /// name here.
    fn forwarded(
        &self,
        name: &http::HeaderValue,
        roles: Option<&http::HeaderValue>,
    ) -> Result<Arc<Caller>, Status> {
        let unknown = || Status::unauthenticated("the forwarded call names no identity known here");
        let name = name.to_str().map_err(|_| unknown())?;
        let Some(roles) = roles else {
            return self.by_name.get(name).cloned().ok_or_else(unknown);
        };
        let roles = roles
            .to_str()
            .ok()
            .and_then(|roles| roles.split(',').map(Role::named).collect::<Option<_>>());
        Ok(Arc::new(Caller {
            name: name.to_owned(),
            roles: roles.ok_or_else(unknown)?,
        }))
    }

    /// The caller a request is from, and whether it may call its method.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Arc<Caller>, Status> {
        let direct = self.recognise(request)?;
        let caller = match request.headers().get(ON_BEHALF_OF) {
            None => direct,
            Some(_) if !direct.is(Role::Node) => {
                return Err(Status::permission_denied(format!(
                    "{} may not call on another's behalf: that needs the node role",
                    direct.name
                )))
            }
            Some(name) => self.forwarded(name, request.headers().get(ON_BEHALF_OF_ROLES))?,
        };
        let path = request.uri().path();
        match required(path) {
            Some(roles) if !roles.iter().any(|role| caller.is(*role)) => {
                Err(Status::permission_denied(format!(
                    "{} may not call {path}: that needs the {} role",
                    caller.name,
                    roles
                        .iter()
                        .map(|role| role.name())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )))
            }
            _ => Ok(caller),
        }
    }
}

/// The roles that may call the method at `path` (any of them); `None` for open services.
fn required(path: &str) -> Option<&'static [Role]> {
    use Role::*;
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    Some(match (service, method) {
        ("verdict.internal.Raft", "AppendEntries" | "Vote" | "InstallSnapshot") => &[Node],
        // `verdict cluster` (status, membership), and a node joining.
        ("verdict.internal.Raft", _) => &[Node, Operator],
        ("verdict.v1.Coordinator", "Begin" | "Commit" | "Submit" | "Abort" | "GetTransaction") => {
            &[Application, Operator]
        }
        ("verdict.v1.Coordinator", "Enlist") => &[Application, Participant, Operator],
        ("verdict.v1.Coordinator", "Resolve") => &[Participant, Operator],
        ("verdict.v1.Coordinator", _) => &[Operator],
        _ => return None,
    })
}

/// The address a request came from, for the log of refusals.
fn remote<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    let extensions = request.extensions();
    let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
    let tcp = extensions.get::<TcpConnectInfo>();
    tcp.or(tls.map(TlsConnectInfo::get_ref))?.remote_addr()
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().try_into().expect("32 bytes")
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// A service behind the identities: a call is admitted, with its [`Caller`] in the request's
/// extensions, or answered at once with the refusal. Without identities, every call passes.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    identities: Option<Arc<Identities>>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, identities: Option<Arc<Identities>>) -> Self {
        Guarded { inner, identities }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        S::Future,
        std::future::Ready<Result<http::Response<R>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        use futures_util::future::Either;
        let Some(identities) = &self.identities else {
            return Either::Left(self.inner.call(request));
        };
        match identities.admit(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Left(self.inner.call(request))
            }
            Err(status) => {
                let from = remote(&request);
                tracing::warn!(method = request.uri().path(), ?from, code = ?status.code(), refusal = status.message(), "call refused");
                Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
