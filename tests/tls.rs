//! TLS and mutual TLS on real processes: a transfer end to end over mutual TLS (application →
//! coordinator → banks → coordinator), on a single node and on a cluster whose Raft traffic is
//! mutual TLS too; plaintext and untrusted callers refused; bad certificates refused at start
//! with the file named; a certificate rotated without a restart (on a change, and on SIGHUP),
//! a server's and a client's;
//! the metrics and console ports over TLS.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use support::certs::{channel, mutual_tls, path, Ca};
use support::{Server, TestCluster, PATIENCE};
use tonic::transport::{Channel, Endpoint};
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::ListTransactionsRequest;

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .output()
        .expect("run verdict")
}

fn https(server: &Server) -> String {
    format!("https://{}", server.addr)
}

/// Asserts that a call never reached the service: its connection failed (`why`, when the
/// client's side can tell; a server refusing a client certificate under TLS 1.3 shows as an
/// alert or as a closed connection, depending on timing).
fn refused(result: Result<(), tonic::Status>, why: Option<&str>) {
    let error = format!("{:?}", result.expect_err("the call was let through"));
    assert!(
        error.contains("tonic::transport::Error"),
        "not refused by the transport: {error}"
    );
    if let Some(why) = why {
        assert!(error.contains(why), "refused, but not for {why:?}: {error}");
    }
}

async fn list(channel: Channel) -> Result<(), tonic::Status> {
    let request = ListTransactionsRequest::default();
    CoordinatorClient::new(channel)
        .list_transactions(request)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_transfer_commits_over_mutual_tls_and_callers_without_a_trusted_certificate_are_refused()
{
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let (cert, key) = ca.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let client = ca.issue("client", ExtendedKeyUsagePurpose::ClientAuth);
    let (both_cert, both_key) = ca.issue_with("node", ExtendedKeyUsagePurpose::ServerAuth, |p| {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth)
    });
    let secured = mutual_tls(
        &ca,
        &both_cert,
        &both_key,
        &(both_cert.clone(), both_key.clone()),
    );
    let secured: Vec<&str> = secured.iter().map(String::as_str).collect();
    let coordinator = Server::start(&secured).await;
    let url = https(&coordinator);
    let bank = |name: &'static str| {
        let mut args = vec!["participant", "kv", "--coordinator", &url, "--name", name];
        args.extend(&secured);
        async move { Server::start_args(&args).await }
    };
    let (a, b) = (bank("bank-a").await, bank("bank-b").await);
    let client_flags = mutual_tls(&ca, &cert, &key, &client);
    let client_flags: Vec<&str> = client_flags[6..].iter().map(String::as_str).collect();
    transfers_through(&url, [&https(&a), &https(&b)], &client_flags);

    let plaintext = Endpoint::from_shared(format!("http://{}", coordinator.addr)).unwrap();
    refused(list(plaintext.connect_lazy()).await, None);
    let other = Ca::new(dir.path(), "other");
    let untrusted = list(channel(&url, &other.ca_file(), Some(&client))).await;
    refused(untrusted, Some("UnknownIssuer"));
    let anonymous = list(channel(&url, &ca.ca_file(), None)).await;
    refused(anonymous, None);
    let (stranger_cert, stranger_key) =
        other.issue("stranger", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = list(channel(
        &url,
        &ca.ca_file(),
        Some(&(stranger_cert, stranger_key)),
    ))
    .await;
    refused(stranger, None);
    list(channel(&url, &ca.ca_file(), Some(&client)))
        .await
        .expect("the trusted client");
}

/// Runs `verdict demo`'s transfers through the coordinator at `coordinator` and `banks`, as a
/// client with `flags`, and checks their outcomes and that money is conserved.
fn transfers_through(coordinator: &str, banks: [&str; 2], flags: &[&str]) {
    let mut demo = vec!["demo", "--coordinator", coordinator];
    demo.extend(banks.iter().flat_map(|bank| ["--bank", bank]));
    demo.extend(flags);
    let out = verdict(&demo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("alice -> bob   30  Committed"), "{stdout}");
    assert!(stdout.contains("voted no: insufficient funds"), "{stdout}");
    assert_eq!(stdout.matches("total  120").count(), 4, "{stdout}");
}

/// Starts `verdict serve` with `args` and returns its stderr once it exits (it must).
fn refused_at_start(args: &[&str]) -> String {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir"];
    let dir = tempfile::tempdir().unwrap();
    all.push(path(dir.path()));
    all.extend(args);
    let out = verdict(&all);
    assert!(!out.status.success(), "it started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificates_are_refused_at_start_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let (expired, expired_key) =
        ca.issue_with("expired", ExtendedKeyUsagePurpose::ServerAuth, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
    let stderr = refused_at_start(&[
        "--tls-cert",
        path(&expired),
        "--tls-key",
        path(&expired_key),
    ]);
    assert!(
        stderr.contains(&format!("--tls-cert {}", expired.display())),
        "{stderr}"
    );
    assert!(stderr.contains("expired on"), "{stderr}");

    let (cert, _) = ca.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = ca.issue("other", ExtendedKeyUsagePurpose::ServerAuth);
    let stderr = refused_at_start(&["--tls-cert", path(&cert), "--tls-key", path(&other_key)]);
    assert!(
        stderr.contains(&format!("--tls-key {}", other_key.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not the key of the certificate"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.pem");
    let stderr = refused_at_start(&["--tls-cert", path(&missing), "--tls-key", path(&other_key)]);
    assert!(stderr.contains("cannot read it"), "{stderr}");
    let stderr = refused_at_start(&[
        "--tls-cert",
        path(&other_key),
        "--tls-key",
        path(&other_key),
    ]);
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
    let stderr = refused_at_start(&["--tls-cert", path(&cert)]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new(dir.path(), "first");
    let (cert, key) = first.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let coordinator = Server::start(&["--tls-cert", path(&cert), "--tls-key", path(&key)]).await;
    let url = https(&coordinator);
    let open = channel(&url, &first.ca_file(), None);
    list(open.clone())
        .await
        .expect("the first certificate is served");

    let second = Ca::new(dir.path(), "second");
    let (new_cert, new_key) = second.issue("rotated", ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let rotated = async {
        while list(channel(&url, &second.ca_file(), None)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, rotated)
        .await
        .expect("the new certificate is never served");
    assert!(
        list(channel(&url, &first.ca_file(), None)).await.is_err(),
        "a new connection still gets the old certificate"
    );
    list(open)
        .await
        .expect("the connection opened before the rotation was dropped");
}

/// `GET path` over HTTPS trusting `ca_file`: the response's head and body.
/// A client's certificate rotated in its files is presented on its next connections without a
/// restart: here the coordinator's, towards a participant that takes only the new CA's.
#[tokio::test]
async fn a_rotated_client_certificate_is_presented_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let (old, new) = (Ca::new(dir.path(), "old"), Ca::new(dir.path(), "new"));
    let (p_cert, p_key) = ca.issue("participant", ExtendedKeyUsagePurpose::ServerAuth);
    let participant = Server::start_args(&[
        "participant",
        "noop",
        "--name",
        "p",
        "--tls-cert",
        path(&p_cert),
        "--tls-key",
        path(&p_key),
        "--tls-client-ca",
        path(&new.ca_file()),
    ])
    .await;
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    let present = |(issued_cert, issued_key): (std::path::PathBuf, std::path::PathBuf)| {
        // The key first: a reload between the two writes finds a mismatched pair and keeps
        // the certificate in use.
        std::fs::copy(issued_key, &key).unwrap();
        std::fs::copy(issued_cert, &cert).unwrap();
    };
    present(old.issue("coordinator-old", ExtendedKeyUsagePurpose::ClientAuth));
    let coordinator = Server::start(&[
        "--prepare-timeout",
        "1s",
        "--tls-ca",
        path(&ca.ca_file()),
        "--tls-client-cert",
        path(&cert),
        "--tls-client-key",
        path(&key),
    ])
    .await;
    let client = coordinator.client().await;
    let endpoint = https(&participant);
    let transaction = || {
        let mut client = client.clone();
        let endpoint = endpoint.clone();
        async move {
            let txn = support::begin(&mut client, &[("p", endpoint)]).await;
            support::commit(&mut client, &txn).await.outcome()
        }
    };
    assert_eq!(
        transaction().await,
        verdict::proto::Outcome::Aborted,
        "the participant refuses the old CA's certificate"
    );

    present(new.issue("coordinator-new", ExtendedKeyUsagePurpose::ClientAuth));
    let committed = tokio::time::timeout(PATIENCE, async {
        while transaction().await != verdict::proto::Outcome::Committed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    committed
        .await
        .expect("the new certificate was never presented");
}

async fn https_get(addr: &str, ca_file: &Path, path: &str) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca_file)?;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// `GET /` in plaintext: what comes back, if anything.
async fn http_get(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn the_metrics_and_console_ports_serve_tls_only_with_the_grpc_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let (cert, key) = ca.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let ports = verdict::process::free_local_ports(2).unwrap();
    let (metrics, console) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let ca_file = ca.ca_file();
    let args = [
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        // The console calls its coordinator's gRPC port, over TLS now.
        "--tls-ca",
        path(&ca_file),
        "--metrics-listen",
        &metrics,
        "--console-listen",
        &console,
    ];
    let _coordinator = Server::start(&args).await;
    // The in-flight gauges are first set a moment after the start.
    let scraped = async {
        loop {
            let scraped = https_get(&metrics, &ca_file, "/metrics").await.unwrap();
            assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
            if scraped.contains("verdict_transactions_in_flight") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, scraped)
        .await
        .expect("the metrics never showed the in-flight gauge");
    let overview = https_get(&console, &ca_file, "/api/overview")
        .await
        .unwrap();
    assert!(overview.starts_with("HTTP/1.1 200"), "{overview}");
    assert!(overview.contains("\"committed\""), "{overview}");
    for port in [&metrics, &console] {
        let plaintext = http_get(port).await;
        assert!(
            !plaintext.starts_with("HTTP/"),
            "{port} answered plaintext: {plaintext}"
        );
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_even_when_the_files_look_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new(dir.path(), "first");
    let (cert, key) = first.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let coordinator = Server::start(&["--tls-cert", path(&cert), "--tls-key", path(&key)]).await;
    let url = https(&coordinator);
    list(channel(&url, &first.ca_file(), None))
        .await
        .expect("the first certificate");

    // New contents under the old modification times: the periodic look sees nothing new.
    let second = Ca::new(dir.path(), "second");
    let (new_cert, new_key) = second.issue("rotated", ExtendedKeyUsagePurpose::ServerAuth);
    for (from, to) in [(&new_key, &key), (&new_cert, &cert)] {
        let stamp = std::fs::metadata(to).unwrap().modified().unwrap();
        std::fs::copy(from, to).unwrap();
        let file = std::fs::File::options().write(true).open(to).unwrap();
        file.set_modified(stamp).unwrap();
    }
    coordinator.signal(libc::SIGHUP);
    let reloaded = async {
        while list(channel(&url, &second.ca_file(), None)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, reloaded)
        .await
        .expect("SIGHUP did not reload the certificate");
}

#[tokio::test]
async fn a_cluster_replicates_over_mutual_tls_and_banks_follow_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "verdict");
    let (cert, key) = ca.issue_with("node", ExtendedKeyUsagePurpose::ServerAuth, |p| {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth)
    });
    let secured = mutual_tls(&ca, &cert, &key, &(cert.clone(), key.clone()));
    let cluster = TestCluster::start_at_scheme(3, "https", |_| secured.clone()).await;
    let nodes: Vec<String> = cluster.nodes.iter().map(https).collect();
    let nodes = nodes.join(",");
    let secured: Vec<&str> = secured.iter().map(String::as_str).collect();
    let bank = |name: &'static str| {
        let mut args = vec!["participant", "kv", "--coordinator", &nodes, "--name", name];
        args.extend(&secured);
        async move { Server::start_args(&args).await }
    };
    let (a, b) = (bank("bank-a").await, bank("bank-b").await);
    // The demo's first call waits for the nodes to elect a leader among themselves, over TLS.
    transfers_through(&nodes, [&https(&a), &https(&b)], &secured[6..]);
}
