//! Prometheus metrics (`--metrics-listen`) as a scraper sees them: a coordinator and a bank run
//! transactions that commit, abort on a NO vote and abort on an unreachable participant, and the
//! counters, histograms and gauges say so; a cluster node reports its role and term.

mod support;

use std::time::Duration;

use support::{one_cluster_at_a_time, Server, TestCluster, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use verdict::bank::{transfer, AccountAt};
use verdict::client::Client;
use verdict::core::Outcome;
use verdict::proto::bank_client::BankClient;
use verdict::proto::OpenAccountRequest;

/// The metrics page at `addr`, fetched as Prometheus does (a plain HTTP GET).
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page
}

/// The value of the sample `series` (name with its labels, as printed) on `page`.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `addr` until the page satisfies `holds` (gauges are set every second).
async fn await_page(addr: &str, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let reached = tokio::time::timeout(PATIENCE, async {
        loop {
            let page = scrape(addr).await;
            if holds(&page) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    reached.unwrap_or_else(|_| panic!("never {what} at {addr}"))
}

/// Scrapes `addr` until `series` reaches at least `min`.
async fn await_value(addr: &str, series: &str, min: f64) -> String {
    let what = format!("{series} >= {min}");
    await_page(addr, &what, |page| {
        value(page, series).is_some_and(|v| v >= min)
    })
    .await
}

/// `n` loopback addresses free now, all different: taken in one go, since a port freed by one
/// call may be handed out again by the next.
fn metrics_addrs(n: usize) -> Vec<String> {
    let ports = verdict::process::free_local_ports(n).unwrap();
    ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

async fn open(bank: &Server, account: &str, balance: i64) -> AccountAt {
    let mut client: BankClient<Channel> = BankClient::new(bank.channel());
    let request = OpenAccountRequest {
        account: account.into(),
        balance,
    };
    client.open_account(request).await.expect("open");
    AccountAt {
        bank: client,
        account: account.into(),
    }
}

#[tokio::test]
async fn a_coordinator_and_a_bank_count_what_they_did() {
    let [coordinator_metrics, bank_metrics, nowhere]: [String; 3] =
        metrics_addrs(3).try_into().unwrap();
    let coordinator = Server::start(&["--metrics-listen", &coordinator_metrics]).await;
    let a = Server::start_bank(&coordinator, "bank-a", &["--metrics-listen", &bank_metrics]).await;
    let b = Server::start_bank(&coordinator, "bank-b", &[]).await;
    let (alice, bob) = (open(&a, "alice", 100).await, open(&b, "bob", 0).await);
    let client = Client::new(&coordinator.url(), PATIENCE).unwrap();

    let (_, committed, _) = transfer(&client, &alice, &bob, 60).await.unwrap();
    assert_eq!(committed, Outcome::Committed);
    let (_, overdrawn, _) = transfer(&client, &alice, &bob, 60).await.unwrap();
    assert_eq!(overdrawn, Outcome::Aborted);
    // A participant nobody can reach: its Prepare fails.
    let begun = client.begin(None).await.unwrap();
    let nowhere = format!("http://{nowhere}");
    client.enlist(begun.txn_id, "gone", &nowhere).await.unwrap();
    let (unreachable, _) = client.commit(begun.txn_id).await.unwrap();
    assert_eq!(unreachable, Outcome::Aborted);

    let page = await_value(
        &coordinator_metrics,
        "verdict_transactions_begun_total",
        3.0,
    )
    .await;
    let expect = |series: &str, wanted: f64| {
        assert_eq!(value(&page, series), Some(wanted), "{series} in\n{page}");
    };
    expect("verdict_transactions_committed_total", 1.0);
    expect(
        "verdict_transactions_aborted_total{reason=\"vote_no\"}",
        1.0,
    );
    expect(
        "verdict_transactions_aborted_total{reason=\"unreachable\"}",
        1.0,
    );
    expect("verdict_commit_duration_seconds_count", 3.0);
    let prepares = format!(
        "verdict_prepare_duration_seconds_count{{participant=\"{}\"}}",
        a.url()
    );
    expect(&prepares, 2.0);
    assert!(value(&page, "verdict_log_flush_batch_size_count").is_some_and(|n| n >= 1.0));
    assert!(page.contains("# HELP verdict_transactions_aborted_total"));
    // Phase 2 over for the first two, only the abort to the unreachable participant may still
    // be retried: it is the one transaction in flight, and it is in doubt.
    let in_doubt = |page: &str| -> f64 {
        let ages = ["lt_1s", "1s_10s", "10s_1m", "1m_10m", "ge_10m"];
        let series = ages.map(|age| format!("verdict_transactions_in_doubt{{age=\"{age}\"}}"));
        series.iter().filter_map(|s| value(page, s)).sum()
    };
    await_page(&coordinator_metrics, "in flight = in doubt <= 1", |page| {
        let in_flight = value(page, "verdict_transactions_in_flight");
        in_flight.is_some_and(|n| n <= 1.0 && n == in_doubt(page))
    })
    .await;

    let page = await_value(
        &bank_metrics,
        "verdict_participant_votes_total{vote=\"no\"}",
        1.0,
    )
    .await;
    assert_eq!(
        value(&page, "verdict_participant_votes_total{vote=\"yes\"}"),
        Some(1.0)
    );
    await_value(
        &bank_metrics,
        "verdict_participant_decisions_total{decision=\"commit\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn a_cluster_node_reports_its_role_and_term() {
    let _one = one_cluster_at_a_time().await;
    let addrs = metrics_addrs(3);
    let cluster =
        TestCluster::start_each(3, |i| vec!["--metrics-listen".into(), addrs[i].clone()]).await;
    let leader = cluster.leader().await;
    let page = await_value(&addrs[leader], "verdict_cluster_is_leader", 1.0).await;
    assert!(value(&page, "verdict_cluster_term").is_some_and(|t| t >= 1.0));
    for (follower, addr) in addrs.iter().enumerate().filter(|(i, _)| *i != leader) {
        let page = await_value(addr, "verdict_cluster_last_applied_index", 1.0).await;
        assert_eq!(value(&page, "verdict_cluster_is_leader"), Some(0.0));
        let lag = format!(
            "verdict_cluster_replication_lag{{follower=\"{}\"}}",
            follower + 1
        );
        assert!(
            value(&scrape(&addrs[leader]).await, &lag).is_some(),
            "{lag}"
        );
    }
}
