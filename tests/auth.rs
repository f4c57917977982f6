//! Caller identities and roles (`verdict serve --auth`) on real processes: calls without
//! credentials or with an unknown token refused as UNAUTHENTICATED; a token without the role
//! refused as PERMISSION_DENIED, changing nothing; a participant may enlist only itself and
//! resolve only what it is enlisted in; an application may act on and read only the
//! transactions it began; JWT bearer tokens verified with the configured key; Verdict's own
//! clients present `--token-file`; a
//! cluster whose nodes know each other by certificate, where a peer without a node certificate
//! is refused Raft and a read forwarded to the leader is held to the caller's roles.

mod support;

use std::path::Path;

use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use support::certs::{channel, mutual_tls, Ca};
use support::{expect_status, Server, TestCluster, PATIENCE};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::internal::raft_client::RaftClient;
use verdict::proto::internal::{RaftMessage, StatusRequest};
use verdict::proto::{
    AbortRequest, BeginRequest, CommitRequest, EnlistRequest, GetTransactionRequest,
    ListTransactionsRequest, Outcome, ParticipantRef, ParticipantWork, ResolveRequest,
    SubmitRequest, Transaction, TransactionState,
};

/// The hex SHA-256 of `token`, as the identities file holds it.
fn sha256(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An identity known by its bearer token.
fn by_token(name: &str, roles: &[&str], token: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "roles": roles, "token_sha256": sha256(token)})
}

/// An identity known by its certificate, whose common name is its name.
fn by_certificate(name: &str, roles: &[&str]) -> serde_json::Value {
    serde_json::json!({"name": name, "roles": roles, "certificate": name})
}

/// Writes an identities file of `entries` into `dir`; its path.
fn identities(dir: &Path, entries: Vec<serde_json::Value>) -> String {
    let file = dir.join("identities.json");
    let contents = serde_json::json!({ "identities": entries }).to_string();
    std::fs::write(&file, contents).unwrap();
    file.to_str().unwrap().to_owned()
}

/// `message` as a call bearing `token` (none if empty).
fn bearing<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if !token.is_empty() {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn begin(client: &mut CoordinatorClient<Channel>, token: &str) -> Result<String, Status> {
    let begun = client
        .begin(bearing(token, BeginRequest::default()))
        .await?;
    Ok(begun.into_inner().txn_id)
}

async fn count(client: &mut CoordinatorClient<Channel>, token: &str) -> Result<usize, Status> {
    let request = bearing(token, ListTransactionsRequest::default());
    Ok(client
        .list_transactions(request)
        .await?
        .into_inner()
        .transactions
        .len())
}

async fn enlist(
    client: &mut CoordinatorClient<Channel>,
    token: &str,
    txn: &str,
    name: &str,
) -> Result<(), Status> {
    let participant = ParticipantRef {
        name: name.into(),
        endpoint: "http://127.0.0.1:1".into(),
    };
    let request = EnlistRequest {
        txn_id: txn.into(),
        participant: Some(participant),
    };
    client.enlist(bearing(token, request)).await.map(drop)
}

async fn resolve(
    client: &mut CoordinatorClient<Channel>,
    token: &str,
    txn: &str,
) -> Result<Outcome, Status> {
    let request = bearing(token, ResolveRequest { txn_id: txn.into() });
    Ok(client.resolve(request).await?.into_inner().outcome())
}

#[tokio::test]
async fn callers_are_held_to_their_roles_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let auth = identities(
        dir.path(),
        vec![
            by_token("orders", &["application"], "orders-token"),
            by_token("ops", &["operator"], "ops-token"),
            by_token("bank-a", &["participant"], "bank-a-token"),
            by_token("bank-b", &["participant"], "bank-b-token"),
        ],
    );
    let coordinator = Server::start(&["--auth", &auth]).await;
    let mut client = coordinator.client().await;

    expect_status(
        begin(&mut client, "").await,
        Code::Unauthenticated,
        "no credentials",
    );
    expect_status(
        begin(&mut client, "guess").await,
        Code::Unauthenticated,
        "not one this coordinator knows",
    );
    expect_status(begin(&mut client, "bank-a-token").await, Code::PermissionDenied, "bank-a may not call /verdict.v1.Coordinator/Begin: that needs the application or operator role");
    expect_status(
        count(&mut client, "orders-token").await,
        Code::PermissionDenied,
        "orders may not call",
    );
    assert_eq!(
        count(&mut client, "ops-token").await.unwrap(),
        0,
        "the refused Begins began nothing"
    );

    let txn = begin(&mut client, "orders-token").await.unwrap();
    enlist(&mut client, "bank-a-token", &txn, "bank-a")
        .await
        .expect("enlisting itself");
    expect_status(
        enlist(&mut client, "bank-a-token", &txn, "bank-b").await,
        Code::PermissionDenied,
        "bank-a may enlist only itself",
    );
    expect_status(
        resolve(&mut client, "bank-b-token", &txn).await,
        Code::PermissionDenied,
        "bank-b is not a participant of",
    );
    assert_eq!(
        resolve(&mut client, "bank-a-token", &txn).await.unwrap(),
        Outcome::Pending,
        "undecided"
    );
    assert_eq!(
        resolve(&mut client, "ops-token", &txn).await.unwrap(),
        Outcome::Pending
    );
    let unknown = "01890a5d-ac96-774b-bcce-b302099a8057";
    assert_eq!(
        resolve(&mut client, "bank-b-token", unknown).await.unwrap(),
        Outcome::Aborted,
        "presumed abort tells nothing"
    );
    assert_eq!(count(&mut client, "ops-token").await.unwrap(), 1);

    // Health stays open, for orchestrators' probes.
    let verdict = env!("CARGO_BIN_EXE_verdict");
    let health = std::process::Command::new(verdict)
        .args(["health", &coordinator.url()])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // Verdict's own clients present --token-file.
    let token = dir.path().join("ops.token");
    std::fs::write(&token, "ops-token\n").unwrap();
    let list = |token: &Path| {
        std::process::Command::new(verdict)
            .args([
                "txn",
                "list",
                "--coordinator",
                &coordinator.url(),
                "--token-file",
            ])
            .arg(token)
            .output()
            .unwrap()
    };
    let listed = list(&token);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&txn));
    std::fs::write(&token, "orders-token\n").unwrap();
    let denied = list(&token);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("needs the operator role"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

async fn read(
    client: &mut CoordinatorClient<Channel>,
    token: &str,
    txn: &str,
) -> Result<Transaction, Status> {
    let request = bearing(token, GetTransactionRequest { txn_id: txn.into() });
    let found = client.get_transaction(request).await?.into_inner();
    Ok(found.transaction.expect("a transaction"))
}

#[tokio::test]
async fn an_application_acts_only_on_the_transactions_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let auth = identities(
        dir.path(),
        vec![
            by_token("orders", &["application"], "orders-token"),
            by_token("billing", &["application"], "billing-token"),
            by_token("ops", &["operator"], "ops-token"),
        ],
    );
    let coordinator = Server::start(&["--auth", &auth]).await;
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, "orders-token").await.unwrap();
    let not_its_own = "billing may act only on the transactions it began";

    expect_status(
        read(&mut client, "billing-token", &txn).await,
        Code::PermissionDenied,
        not_its_own,
    );
    expect_status(
        enlist(&mut client, "billing-token", &txn, "stock").await,
        Code::PermissionDenied,
        not_its_own,
    );
    let commit = CommitRequest {
        txn_id: txn.clone(),
        wait_for_acks: false,
        work: Vec::new(),
    };
    expect_status(
        client
            .commit(bearing("billing-token", commit.clone()))
            .await,
        Code::PermissionDenied,
        not_its_own,
    );
    let abort = AbortRequest {
        txn_id: txn.clone(),
        reason: "not mine to abort".into(),
    };
    expect_status(
        client.abort(bearing("billing-token", abort)).await,
        Code::PermissionDenied,
        not_its_own,
    );
    let untouched = read(&mut client, "orders-token", &txn).await.unwrap();
    assert_eq!(untouched.state(), TransactionState::Active, "{untouched:?}");
    assert!(untouched.participants.is_empty(), "{untouched:?}");
    assert_eq!(untouched.begun_by, "orders");
    assert_eq!(untouched.timeline[0].event, "begun by orders");

    // Its own application, and operators, may.
    enlist(&mut client, "orders-token", &txn, "stock")
        .await
        .expect("enlisting in its own transaction");
    let read_by_ops = read(&mut client, "ops-token", &txn).await.unwrap();
    assert_eq!(read_by_ops.participants.len(), 1);
    let abort = AbortRequest {
        txn_id: txn.clone(),
        reason: "the customer cancelled".into(),
    };
    client.abort(bearing("orders-token", abort)).await.unwrap();
    let aborted = read(&mut client, "orders-token", &txn).await.unwrap();
    let decided = [TransactionState::Aborting, TransactionState::Aborted];
    assert!(decided.contains(&aborted.state()), "{aborted:?}");

    let other = begin(&mut client, "billing-token").await.unwrap();
    let committed = client
        .commit(bearing(
            "ops-token",
            CommitRequest {
                txn_id: other,
                wait_for_acks: false,
                work: Vec::new(),
            },
        ))
        .await
        .expect("an operator may commit any transaction");
    assert_eq!(committed.into_inner().outcome(), Outcome::Committed);
}

#[test]
fn a_bad_identities_file_is_refused_at_start_saying_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("identities.json");
    let start = |contents: &str| {
        std::fs::write(&file, contents).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--auth")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "it started with {contents}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_credential = start(r#"{"identities": [{"name": "ops", "roles": ["operator"]}]}"#);
    assert!(
        no_credential.contains("identity 1") && no_credential.contains("has no credential"),
        "{no_credential}"
    );
    let bad_role =
        start(r#"{"identities": [{"name": "ops", "roles": ["admin"], "token_sha256": "00"}]}"#);
    assert!(bad_role.contains("not an identities file"), "{bad_role}");
    let short =
        start(r#"{"identities": [{"name": "ops", "roles": ["operator"], "token_sha256": "abc"}]}"#);
    assert!(
        short.contains("token_sha256 is not 64 hex digits"),
        "{short}"
    );
    let nobody = start(r#"{"identities": []}"#);
    assert!(nobody.contains("nobody could call"), "{nobody}");
    let no_key = start(r#"{"jwt": {"algorithm": "ES256", "key_file": "idp.pem"}}"#);
    assert!(
        no_key.contains("jwt.key_file") && no_key.contains("idp.pem: cannot be read"),
        "{no_key}"
    );
    std::fs::write(dir.path().join("idp.pem"), "not a key").unwrap();
    let not_a_key = start(r#"{"jwt": {"algorithm": "ES256", "key_file": "idp.pem"}}"#);
    assert!(
        not_a_key.contains("not a PEM public key for ES256"),
        "{not_a_key}"
    );
    let bad_algorithm = start(r#"{"jwt": {"algorithm": "none", "key_file": "idp.pem"}}"#);
    assert!(
        bad_algorithm.contains("\"none\" is not a JWS algorithm"),
        "{bad_algorithm}"
    );
    std::fs::write(dir.path().join("secret"), "short").unwrap();
    let short_secret = start(r#"{"jwt": {"algorithm": "HS256", "key_file": "secret"}}"#);
    assert!(short_secret.contains("is guessable"), "{short_secret}");
}

/// A JWT of `claims`, signed with ES256 by `key`.
fn jwt(key: &KeyPair, claims: serde_json::Value) -> String {
    let pem = key.serialize_pem();
    let signer = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    jsonwebtoken::encode(&header, &claims, &signer).unwrap()
}

#[tokio::test]
async fn jwt_bearer_tokens_are_verified_with_the_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let idp = KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("idp.pem"), idp.public_key_pem()).unwrap();
    let file = dir.path().join("identities.json");
    let contents = serde_json::json!({
        "identities": [by_token("ops", &["operator"], "ops-token")],
        "jwt": {
            "algorithm": "ES256",
            "key_file": "idp.pem",
            "issuer": "https://idp.example",
            "audience": "verdict",
        },
    });
    std::fs::write(&file, contents.to_string()).unwrap();
    let coordinator = Server::start(&["--auth", file.to_str().unwrap()]).await;
    let mut client = coordinator.client().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |sub: &str, roles: &[&str]| {
        serde_json::json!({
            "sub": sub,
            "roles": roles,
            "exp": now + 300,
            "iss": "https://idp.example",
            "aud": "verdict",
        })
    };
    let with = |mut claims: serde_json::Value, key: &str, value: serde_json::Value| {
        claims[key] = value;
        claims
    };

    let orders = jwt(&idp, claims("orders", &["application"]));
    let txn = begin(&mut client, &orders).await.expect("a good token");
    let read_back = read(&mut client, &orders, &txn).await.unwrap();
    assert_eq!(read_back.begun_by, "orders");

    let expired = with(
        claims("orders", &["application"]),
        "exp",
        (now - 3600).into(),
    );
    let refusals = [
        (
            jwt(&idp, expired),
            Code::Unauthenticated,
            "the bearer token has expired",
        ),
        (
            jwt(
                &KeyPair::generate().unwrap(),
                claims("orders", &["application"]),
            ),
            Code::Unauthenticated,
            "signature that the key this coordinator trusts does not verify",
        ),
        (
            jwt(
                &idp,
                with(claims("orders", &["application"]), "aud", "other".into()),
            ),
            Code::Unauthenticated,
            "another audience (aud) than \"verdict\"",
        ),
        (
            jwt(
                &idp,
                with(
                    claims("orders", &["application"]),
                    "iss",
                    "https://evil".into(),
                ),
            ),
            Code::Unauthenticated,
            "another issuer (iss)",
        ),
        (
            jwt(
                &idp,
                with(claims("orders", &[]), "roles", serde_json::Value::Null),
            ),
            Code::Unauthenticated,
            "claim that is not a list of role names",
        ),
        (
            jwt(&idp, claims("bank-a", &["participant"])),
            Code::PermissionDenied,
            "bank-a may not call /verdict.v1.Coordinator/Begin",
        ),
        (
            jwt(&idp, claims("mallory", &["node"])),
            Code::PermissionDenied,
            "may not grant the node role",
        ),
    ];
    for (token, code, message) in refusals {
        expect_status(begin(&mut client, &token).await, code, message);
    }
    assert_eq!(
        count(&mut client, "ops-token").await.unwrap(),
        1,
        "the refused Begins began nothing"
    );
}

#[tokio::test]
async fn cluster_nodes_know_each_other_by_certificate_and_a_peer_without_a_node_certificate_is_refused(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let both = |p: &mut rcgen::CertificateParams| {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth)
    };
    let nodes: Vec<_> = (1..=3)
        .map(|i| {
            ca.issue_with(
                &format!("node-{i}"),
                ExtendedKeyUsagePurpose::ServerAuth,
                both,
            )
        })
        .collect();
    let orders = ca.issue("orders", ExtendedKeyUsagePurpose::ClientAuth);
    let mut who: Vec<_> = (1..=3)
        .map(|i| by_certificate(&format!("node-{i}"), &["node"]))
        .collect();
    who.push(by_certificate("orders", &["application"]));
    let auth = identities(dir.path(), who);
    let cluster = TestCluster::start_at_scheme(3, "https", |i| {
        let (cert, key) = &nodes[i];
        let mut args = mutual_tls(&ca, cert, key, &nodes[i]);
        args.extend(["--auth".to_owned(), auth.clone()]);
        args
    })
    .await;
    let url = |i: usize| format!("https://{}", cluster.nodes[i].addr);
    let as_orders =
        |i: usize| CoordinatorClient::new(channel(&url(i), &ca.ca_file(), Some(&orders)));

    // The nodes elect a leader over Raft calls each admits as a node's. A transaction committed
    // there is durable in the cluster (one only begun is lost if the leader is deposed at once,
    // as one may be while the first election settles).
    let committed = |i: usize| async move {
        let txn_id = as_orders(i)
            .begin(BeginRequest::default())
            .await
            .ok()?
            .into_inner()
            .txn_id;
        let commit = CommitRequest {
            txn_id: txn_id.clone(),
            wait_for_acks: false,
            work: Vec::new(),
        };
        let outcome = as_orders(i)
            .commit(commit)
            .await
            .ok()?
            .into_inner()
            .outcome();
        (outcome == Outcome::Committed).then_some(txn_id)
    };
    let (leader, txn) = tokio::time::timeout(PATIENCE, async {
        loop {
            for i in 0..3 {
                if let Some(txn) = committed(i).await {
                    return (i, txn);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no leader runs transactions");

    // A read at a follower is forwarded on the caller's behalf and held to its roles there.
    let follower = (leader + 1) % 3;
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = GetTransactionRequest {
                txn_id: txn.clone(),
            };
            match as_orders(follower).get_transaction(request).await {
                // The follower has not heard from the leader yet.
                Err(status) if status.code() == Code::Unavailable => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                answered => return answered,
            }
        }
    })
    .await
    .expect("the follower never learned who leads")
    .expect("forwarded");
    assert_eq!(read.into_inner().transaction.unwrap().txn_id, txn);
    let listed = as_orders(follower)
        .list_transactions(ListTransactionsRequest::default())
        .await;
    expect_status(listed, Code::PermissionDenied, "orders may not call");

    // A certificate of the same CA that is not a node's gets no Raft.
    let mut raft = RaftClient::new(channel(&url(leader), &ca.ca_file(), Some(&orders)));
    let vote = raft
        .vote(RaftMessage {
            payload: Vec::new(),
        })
        .await;
    expect_status(
        vote,
        Code::PermissionDenied,
        "orders may not call /verdict.internal.Raft/Vote: that needs the node role",
    );
    let status = raft.status(StatusRequest { digest: false }).await;
    expect_status(
        status,
        Code::PermissionDenied,
        "needs the node or operator role",
    );
}

#[tokio::test]
async fn a_submit_is_answered_again_only_to_the_application_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let auth = identities(
        dir.path(),
        vec![
            by_token("orders", &["application"], "orders-token"),
            by_token("billing", &["application"], "billing-token"),
            by_token("stock", &["participant"], "stock-token"),
            by_token("ops", &["operator"], "ops-token"),
        ],
    );
    let coordinator = Server::start(&["--auth", &auth]).await;
    let mut client = coordinator.client().await;
    // Its participant is unreachable: the transaction aborts, and is kept for the retention.
    let submission = SubmitRequest {
        request_id: "order-1".into(),
        timeout_ms: 0,
        work: vec![ParticipantWork {
            participant: Some(ParticipantRef {
                name: "stock".into(),
                endpoint: "http://127.0.0.1:1".into(),
            }),
            work: b"take one".to_vec(),
        }],
        wait_for_acks: false,
    };
    let submitted = client
        .submit(bearing("orders-token", submission.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(submitted.outcome(), Outcome::Aborted);

    expect_status(
        client
            .submit(bearing("billing-token", submission.clone()))
            .await,
        Code::PermissionDenied,
        "billing may act only on the transactions it began",
    );
    expect_status(
        client
            .submit(bearing("stock-token", submission.clone()))
            .await,
        Code::PermissionDenied,
        "",
    );
    let retried = client
        .submit(bearing("orders-token", submission))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, submitted);
    assert_eq!(count(&mut client, "ops-token").await.unwrap(), 1);
}
