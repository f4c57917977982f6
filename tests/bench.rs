//! A smoke run of `verdict bench --json`: it starts its own deployment, and its JSON parses
//! and shows committed transactions (speed is for the benchmark, not the tests); also over
//! mutual TLS with callers authenticated.

mod support;

use std::process::Command;

use rcgen::ExtendedKeyUsagePurpose;
use support::certs::{path, Ca};

fn run_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["bench", "--json", "--duration", "5s", "--warmup", "1s"])
        .args(args)
        .output()
        .expect("run verdict bench")
}

fn bench(args: &[&str]) -> serde_json::Value {
    let output = run_bench(args);
    assert!(
        output.status.success(),
        "verdict bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the output is JSON")
}

#[test]
fn the_noop_benchmark_commits_transactions_and_reports_its_baseline() {
    let plot = tempfile::NamedTempFile::new().unwrap();
    let plot_path = plot.path().to_str().unwrap();
    let report = bench(&["--concurrency", "16", "--plot", plot_path]);
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert_eq!(report["rpcs_per_txn"].as_u64(), Some(6));
    assert!(report["baseline"]["rpc_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["baseline"]["fsync_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(report["commit_latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    // The footprint of the processes it started: a sample a second, warm-up included.
    let tracks = report["footprint"].as_array().unwrap();
    let names: Vec<_> = tracks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["coordinator", "participant p0", "participant p1"]);
    for track in tracks {
        let rss = track["rss_mb"].as_array().unwrap();
        assert!(rss.len() >= 5, "{track}");
        assert!(rss.iter().all(|mb| mb.as_f64().unwrap() > 1.0), "{track}");
        let disk = track["disk_mb"].as_array().unwrap();
        assert!(disk.last().unwrap().as_f64().unwrap() > 0.0, "{track}");
    }
    let svg = std::fs::read_to_string(plot.path()).unwrap();
    assert!(svg.contains("RSS of its processes"), "{svg}");
}

#[test]
fn the_bank_benchmark_counts_overdrafts_as_aborts() {
    let report = bench(&[
        "--workload",
        "bank",
        "--concurrency",
        "8",
        "--overdraft-share",
        "0.5",
    ]);
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
    assert!(report["aborted"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn a_cluster_benchmark_reports_a_single_node_beside_it() {
    let report = bench(&["--cluster", "3", "--concurrency", "16"]);
    assert_eq!(report["coordinator_nodes"].as_u64(), Some(3), "{report}");
    // Not `failed == 0`: on two cores shared with the other smoke runs, leadership may move
    // once, and a transaction in flight then is lost to the client (that is the cluster
    // tests' subject, not this one's).
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
    let single = &report["single_node"];
    assert!(single["committed"].as_u64().unwrap() > 0, "{report}");
    assert!(single["commit_latency_ms"]["p50"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_benchmark_runs_its_deployment_over_mutual_tls_with_callers_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "bench");
    // One certificate for every process, as server and as client.
    let (cert, key) = ca.issue_with("bench", ExtendedKeyUsagePurpose::ServerAuth, |p| {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth)
    });
    let identities = dir.path().join("identities.json");
    let with_roles = |roles: &[&str]| {
        let entry = serde_json::json!({"name": "bench", "roles": roles, "certificate": "bench"});
        let file = serde_json::json!({ "identities": [entry] });
        std::fs::write(&identities, file.to_string()).unwrap();
    };
    let ca_file = ca.ca_file();
    let flags = [
        "--concurrency",
        "8",
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "--tls-client-ca",
        path(&ca_file),
        "--tls-ca",
        path(&ca_file),
        "--tls-client-cert",
        path(&cert),
        "--tls-client-key",
        path(&key),
        "--auth",
        path(&identities),
    ];
    with_roles(&["application", "operator"]);
    let report = bench(&flags);
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");

    // The coordinator it started did hold the bench to its roles.
    with_roles(&["participant"]);
    let refused = bench(&flags);
    assert_eq!(refused["committed"].as_u64(), Some(0), "{refused}");
    assert!(refused["failed"].as_u64().unwrap() > 0, "{refused}");
    let why = refused["first_failure"].as_str().unwrap();
    assert!(why.contains("bench may not call"), "{why}");
}
