//! The PostgreSQL participant against a real PostgreSQL server, with the coordinator and the
//! participants as real processes killed at named protocol points.
//!
//! The server is named by `VERDICT_TEST_PG` (a libpq DSN whose user may create databases);
//! each test makes its own databases. One test also needs `VERDICT_TEST_PG_NO_2PC`, a server
//! with `max_prepared_transactions = 0`. `.ci/run` starts both with `.ci/postgres start`.
//! Without them the tests here are reported as ignored, with a line saying how to run them.

mod support;

use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use support::conformance::{assert_all_pass, conformance, kit_port};

use libtest_mimic::{Arguments, Failed, Trial};
use rand::Rng;
use support::PATIENCE;
use tokio_postgres::NoTls;
use tonic::transport::Channel;
use verdict::bank::work;
use verdict::bank::{transfer, transfer_handing, AccountAt, AccountOf};
use verdict::chaos::cluster::Node;
use verdict::client::Client;
use verdict::core::{Outcome, TxnId};
use verdict::proto::bank_client::BankClient;
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::participant_client::ParticipantClient;
use verdict::proto::{
    self, ApplyRequest, GetBalanceRequest, OpenAccountRequest, ParticipantAbortRequest,
    ParticipantCommitRequest, PrepareRequest,
};

type Test = fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |dsn| Box::pin($name(dsn)))),*]
    };
}

/// Tests on the server of `VERDICT_TEST_PG`.
const TESTS: &[(&str, Test)] = tests![
    a_transfer_commits_across_two_databases,
    a_transfer_handed_over_in_commit_commits_across_two_databases,
    an_aborted_transfer_changes_neither_database,
    an_overdraft_fails_its_check_constraint_and_votes_no,
    account_names_with_quotes_and_backslashes_are_data_not_sql,
    an_account_deleted_under_the_bank_votes_no_and_leaves_nothing_prepared,
    killed_after_prepare_before_its_vote_the_adapter_resolves_on_restart,
    killed_after_voting_yes_the_adapter_commits_on_restart,
    a_coordinator_killed_after_its_decision_commits_both_databases_on_restart,
    a_prepared_transaction_nobody_voted_for_is_found_and_rolled_back,
    transfers_between_kv_and_postgres_conserve_the_total,
    a_bad_dsn_an_unreachable_server_or_tls_is_a_clear_error,
    the_postgresql_bank_keeps_every_conformance_rule,
    the_bench_measures_direct_postgresql_in_slices_between_its_own,
    prepares_waiting_for_a_lock_leave_a_connection_for_the_decision_that_frees_it,
];

/// Tests on the server of `VERDICT_TEST_PG_NO_2PC`, which cannot prepare transactions.
const TESTS_WITHOUT_2PC: &[(&str, Test)] =
    tests![a_server_that_cannot_prepare_transactions_is_refused_with_the_fix];

fn main() {
    let arguments = Arguments::from_args();
    let server = std::env::var("VERDICT_TEST_PG").ok();
    if server.is_none() {
        eprintln!(
            "PostgreSQL tests SKIPPED (reported as ignored): VERDICT_TEST_PG is not set. Run them \
             with: eval \"$(.ci/postgres start)\" && cargo test --all-features --test postgres"
        );
    }
    let without_2pc = std::env::var("VERDICT_TEST_PG_NO_2PC").ok();
    let trials = |tests: &[(&'static str, Test)], server: Option<String>| {
        tests
            .iter()
            .map(|&(name, test)| {
                let server = server.clone();
                let missing = server.is_none();
                Trial::test(name, move || run(test, server.unwrap_or_default()))
                    .with_ignored_flag(missing)
            })
            .collect::<Vec<_>>()
    };
    let mut all = trials(TESTS, server);
    all.extend(trials(TESTS_WITHOUT_2PC, without_2pc));
    libtest_mimic::run(&arguments, all).exit();
}

fn run(test: Test, server: String) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    runtime.block_on(test(server));
    Ok(())
}

/// A database of its own for one bank, dropped at the end of a passing test (which also proves
/// nothing is left prepared in it: PostgreSQL refuses to drop a database that has).
struct Database {
    server: String,
    name: String,
    dsn: String,
}

impl Database {
    async fn create(server: &str) -> Self {
        let name = format!("verdict_test_{}", uuid::Uuid::now_v7().simple());
        sql(server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        Database {
            server: server.into(),
            dsn: format!("{server} dbname={name}"),
            name,
        }
    }

    async fn drop_it(self) {
        sql(&self.server)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("a database without prepared transactions can be dropped");
    }

    /// The global ids prepared in this database.
    async fn prepared(&self) -> Vec<String> {
        let rows = sql(&self.dsn)
            .await
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                &[],
            )
            .await
            .expect("pg_prepared_xacts");
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// The balance PostgreSQL itself holds for `account`.
    async fn balance(&self, account: &str) -> i64 {
        sql(&self.dsn)
            .await
            .query_one(
                "SELECT balance FROM verdict_accounts WHERE id = $1",
                &[&account],
            )
            .await
            .expect("balance")
            .get(0)
    }

    async fn wait_until_nothing_prepared(&self) {
        until("nothing prepared", || async {
            self.prepared().await.is_empty()
        })
        .await;
    }
}

async fn sql(dsn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
async fn until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "waited {PATIENCE:?} for: {what}");
}

/// A coordinator and banks as processes, in a temporary directory; their logs are shown if
/// the test fails.
struct Deployment {
    coordinator: Node,
    banks: Vec<Node>,
    client: Client,
    dir: tempfile::TempDir,
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verdict"))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

impl Deployment {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut coordinator = Node::new("coordinator", exe(), dir.path(), os(&["serve"]));
        coordinator.start().await.expect("coordinator");
        let client = Client::new(&coordinator.url(), PATIENCE).expect("client");
        Deployment {
            coordinator,
            banks: Vec::new(),
            client,
            dir,
        }
    }

    /// Adds a bank: `verdict participant postgres` on `db`, or `participant kv` if `None`.
    async fn add_bank(&mut self, name: &str, db: Option<&Database>) -> usize {
        self.add_bank_with(name, db, &[]).await
    }

    /// As [`Deployment::add_bank`], with more flags for the bank.
    async fn add_bank_with(&mut self, name: &str, db: Option<&Database>, flags: &[&str]) -> usize {
        let url = self.coordinator.url();
        let mut args = vec!["participant"];
        match db {
            Some(db) => args.extend(["postgres", "--dsn", &db.dsn]),
            None => args.push("kv"),
        }
        args.extend(flags);
        args.extend(["--coordinator", &url, "--name", name]);
        args.extend(["--quiet-period", "1s", "--sweep-every", "200ms"]);
        args.extend(["--log-level", "verdict=debug"]);
        let mut node = Node::new(name, exe(), self.dir.path(), os(&args));
        node.start().await.expect("bank");
        self.banks.push(node);
        self.banks.len() - 1
    }

    fn account(&self, bank: usize, account: &str) -> AccountAt {
        AccountAt {
            bank: BankClient::new(self.banks[bank].channel()),
            account: account.into(),
        }
    }

    async fn open(&self, bank: usize, account: &str, balance: i64) {
        let request = OpenAccountRequest {
            account: account.into(),
            balance,
        };
        let mut client = BankClient::new(self.banks[bank].channel());
        client.open_account(request).await.expect("open account");
    }

    /// A bank's balance and held amount, as it reports them.
    async fn balance(&self, bank: usize, account: &str) -> (i64, i64) {
        let request = GetBalanceRequest {
            account: account.into(),
        };
        let mut client = BankClient::new(self.banks[bank].channel());
        let answer = client.get_balance(request).await.expect("balance");
        let answer = answer.into_inner();
        (answer.balance, answer.held)
    }

    /// Restarts a bank that a crash point stopped, disarmed, and waits for its recovery.
    async fn restart_crashed_bank(&mut self, bank: usize) {
        let node = &mut self.banks[bank];
        assert!(node.exits_within(PATIENCE).await, "the crash point fired");
        node.disarm();
        node.start().await.expect("restart");
        wait_serving(node.channel()).await;
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in std::iter::once(&self.coordinator).chain(&self.banks) {
                let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                eprintln!("---- {} log ----\n{log}", node.name);
            }
        }
    }
}

/// Restarts `node` with crash point `point` armed.
async fn restart_armed(node: &mut Node, point: &str) {
    node.arm(point);
    node.kill().await.expect("kill");
    node.start().await.expect("armed start");
}

/// Waits until a participant reports SERVING: everything it found prepared is resolved.
async fn wait_serving(channel: Channel) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let health = HealthClient::new(channel);
    until("the participant serving", || {
        let mut health = health.clone();
        async move {
            let request = HealthCheckRequest {
                service: "verdict.v1.Participant".into(),
            };
            let answer = health.check(request).await;
            answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving)
        }
    })
    .await;
}

/// A deployment with two PostgreSQL banks: alice at bank 0 with 100, bob at bank 1 with 0.
async fn two_databases(server: &str) -> (Deployment, [Database; 2]) {
    let dbs = [
        Database::create(server).await,
        Database::create(server).await,
    ];
    let mut deployment = Deployment::start().await;
    deployment.add_bank("pg-a", Some(&dbs[0])).await;
    deployment.add_bank("pg-b", Some(&dbs[1])).await;
    deployment.open(0, "alice", 100).await;
    deployment.open(1, "bob", 0).await;
    (deployment, dbs)
}

async fn alice_to_bob(deployment: &Deployment, amount: i64) -> (Outcome, String) {
    let (alice, bob) = (deployment.account(0, "alice"), deployment.account(1, "bob"));
    let (_, outcome, reason) = transfer(&deployment.client, &alice, &bob, amount)
        .await
        .expect("transfer");
    (outcome, reason)
}

/// Both databases hold `alice` and `bob`, with nothing prepared, and are then dropped.
async fn expect_balances(dbs: [Database; 2], alice: i64, bob: i64) {
    for db in &dbs {
        db.wait_until_nothing_prepared().await;
    }
    assert_eq!(dbs[0].balance("alice").await, alice);
    assert_eq!(dbs[1].balance("bob").await, bob);
    for db in dbs {
        db.drop_it().await;
    }
}

async fn a_transfer_commits_across_two_databases(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    assert_eq!(alice_to_bob(&deployment, 30).await.0, Outcome::Committed);
    dbs[0].wait_until_nothing_prepared().await;
    assert_eq!(deployment.balance(0, "alice").await, (70, 0));
    expect_balances(dbs, 70, 30).await;
}

/// `account` at bank `bank`, as the coordinator reaches the bank (its Describe).
async fn handed(deployment: &Deployment, bank: usize, account: &str) -> AccountOf {
    let client = BankClient::new(deployment.banks[bank].channel());
    AccountOf::at(&client, account.into())
        .await
        .expect("describe")
}

async fn a_transfer_handed_over_in_commit_commits_across_two_databases(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    let client = &deployment.client;
    let (alice, bob) = (
        handed(&deployment, 0, "alice").await,
        handed(&deployment, 1, "bob").await,
    );
    let txn = client.begin(None).await.expect("begin").txn_id;
    let (outcome, _) = transfer_handing(client, txn, &alice, &bob, 30)
        .await
        .expect("commit");
    assert_eq!(outcome, Outcome::Committed);
    // An account the bank does not have votes NO, and nothing stays prepared on either side.
    let carol = AccountOf {
        account: "carol".into(),
        ..bob.clone()
    };
    let txn = client.begin(None).await.expect("begin").txn_id;
    let (outcome, reason) = transfer_handing(client, txn, &alice, &carol, 30)
        .await
        .expect("commit");
    assert_eq!(outcome, Outcome::Aborted);
    assert!(
        reason.contains("\"pg-b\" voted no") && reason.contains("\"carol\" does not exist"),
        "{reason}"
    );
    expect_balances(dbs, 70, 30).await;
}

async fn an_aborted_transfer_changes_neither_database(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    let client = &deployment.client;
    let txn = client.begin(None).await.expect("begin").txn_id;
    for (bank, account, delta) in [(0, "alice", -30), (1, "bob", 30)] {
        let request = ApplyRequest {
            txn_id: txn.to_string(),
            account: account.into(),
            delta,
            deadline_unix_ms: 0,
        };
        let mut bank = BankClient::new(deployment.banks[bank].channel());
        bank.apply(request).await.expect("apply");
    }
    client
        .abort(txn, "the customer cancelled")
        .await
        .expect("abort");
    let mut coordinator = CoordinatorClient::new(deployment.coordinator.channel());
    let outcome = support::resolve(&mut coordinator, &txn.to_string()).await;
    assert_eq!(outcome, proto::Outcome::Aborted);
    expect_balances(dbs, 100, 0).await;
}

async fn an_overdraft_fails_its_check_constraint_and_votes_no(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    let (outcome, reason) = alice_to_bob(&deployment, 130).await;
    assert_eq!(outcome, Outcome::Aborted);
    assert!(
        reason.contains("\"pg-a\" voted no")
            && reason.contains("violates check constraint")
            && reason.contains("SQLSTATE 23514"),
        "{reason}"
    );
    // bob's bank prepared its credit and then rolled it back.
    expect_balances(dbs, 100, 0).await;
}

async fn account_names_with_quotes_and_backslashes_are_data_not_sql(server: String) {
    // The work's statements carry account names as SQL literals.
    let (deployment, dbs) = two_databases(&server).await;
    let odd = r"o'brien\'; DROP TABLE verdict_accounts; --";
    deployment.open(0, odd, 100).await;
    let (from, to) = (deployment.account(0, odd), deployment.account(1, "bob"));
    let (_, outcome, _) = transfer(&deployment.client, &from, &to, 30)
        .await
        .expect("transfer");
    assert_eq!(outcome, Outcome::Committed);
    dbs[0].wait_until_nothing_prepared().await;
    assert_eq!(dbs[0].balance(odd).await, 70);
    expect_balances(dbs, 100, 30).await;
}

async fn an_account_deleted_under_the_bank_votes_no_and_leaves_nothing_prepared(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    // The bank saw alice exist; a hand in the database removes her row afterwards.
    sql(&dbs[0].dsn)
        .await
        .batch_execute("DELETE FROM verdict_accounts WHERE id = 'alice'")
        .await
        .expect("delete by hand");
    let (outcome, reason) = alice_to_bob(&deployment, 30).await;
    assert_eq!(outcome, Outcome::Aborted);
    assert!(
        reason.contains("\"pg-a\" voted no: account \"alice\" does not exist"),
        "{reason}"
    );
    for db in &dbs {
        db.wait_until_nothing_prepared().await;
    }
    assert_eq!(dbs[1].balance("bob").await, 0);
    for db in dbs {
        db.drop_it().await;
    }
}

async fn killed_after_prepare_before_its_vote_the_adapter_resolves_on_restart(server: String) {
    let (mut deployment, dbs) = two_databases(&server).await;
    restart_armed(
        &mut deployment.banks[0],
        "participant::before_prepared_record",
    )
    .await;
    let (outcome, _) = alice_to_bob(&deployment, 30).await;
    assert_eq!(outcome, Outcome::Aborted, "its vote never arrived");
    assert!(deployment.banks[0].exits_within(PATIENCE).await);
    let left = dbs[0].prepared().await;
    assert_eq!(
        left.len(),
        1,
        "PREPARE TRANSACTION ran before the crash: {left:?}"
    );
    assert!(left[0].starts_with("verdict:pg-a:"), "{left:?}");
    deployment.restart_crashed_bank(0).await;
    expect_balances(dbs, 100, 0).await;
}

async fn killed_after_voting_yes_the_adapter_commits_on_restart(server: String) {
    let (mut deployment, dbs) = two_databases(&server).await;
    restart_armed(
        &mut deployment.banks[0],
        "participant::before_commit_applied",
    )
    .await;
    let (outcome, _) = alice_to_bob(&deployment, 30).await;
    assert_eq!(outcome, Outcome::Committed);
    assert!(deployment.banks[0].exits_within(PATIENCE).await);
    assert_eq!(
        dbs[0].prepared().await.len(),
        1,
        "alice's debit waits, prepared"
    );
    deployment.restart_crashed_bank(0).await;
    expect_balances(dbs, 70, 30).await;
}

async fn a_coordinator_killed_after_its_decision_commits_both_databases_on_restart(server: String) {
    let (mut deployment, dbs) = two_databases(&server).await;
    restart_armed(
        &mut deployment.coordinator,
        "coordinator::after_decision_durable",
    )
    .await;
    let (alice, bob) = (deployment.account(0, "alice"), deployment.account(1, "bob"));
    let answer = transfer(&deployment.client, &alice, &bob, 30).await;
    assert!(answer.is_err(), "the coordinator died before answering");
    assert!(deployment.coordinator.exits_within(PATIENCE).await);
    assert_eq!(dbs[0].prepared().await.len(), 1);
    assert_eq!(dbs[1].prepared().await.len(), 1);
    deployment.coordinator.disarm();
    deployment.coordinator.start().await.expect("restart");
    expect_balances(dbs, 70, 30).await;
}

async fn a_prepared_transaction_nobody_voted_for_is_found_and_rolled_back(server: String) {
    // As if a PREPARE succeeded but its answer never came back: prepared in PostgreSQL under
    // the adapter's prefix, with no vote anywhere. The coordinator never heard of it.
    let (deployment, dbs) = two_databases(&server).await;
    let orphan = uuid::Uuid::now_v7();
    sql(&dbs[0].dsn)
        .await
        .batch_execute(&format!(
            "BEGIN; UPDATE verdict_accounts SET balance = balance - 40 WHERE id = 'alice'; \
             PREPARE TRANSACTION 'verdict:pg-a:{orphan}'"
        ))
        .await
        .expect("prepare by hand");
    assert_eq!(dbs[0].prepared().await.len(), 1);
    // The running adapter's periodic sweep resolves it: presumed abort.
    dbs[0].wait_until_nothing_prepared().await;
    assert_eq!(deployment.balance(0, "alice").await, (100, 0));
    expect_balances(dbs, 100, 0).await;
}

async fn transfers_between_kv_and_postgres_conserve_the_total(server: String) {
    const ACCOUNTS: usize = 4;
    const OPENING: i64 = 100;
    let db = Database::create(&server).await;
    let mut deployment = Deployment::start().await;
    deployment.add_bank("kv", None).await;
    deployment.add_bank("pg", Some(&db)).await;
    let accounts: Vec<AccountAt> = (0..2)
        .flat_map(|bank| (0..ACCOUNTS).map(move |i| (bank, format!("acct-{i}"))))
        .map(|(bank, name)| deployment.account(bank, &name))
        .collect();
    for bank in 0..2 {
        for i in 0..ACCOUNTS {
            deployment.open(bank, &format!("acct-{i}"), OPENING).await;
        }
    }
    let workers = (0..8).map(|_| {
        let (client, accounts) = (deployment.client.clone(), accounts.clone());
        tokio::spawn(async move {
            let mut committed = 0;
            for _ in 0..25 {
                // Always across the two banks; amounts up to more than an opening balance.
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    let from = rng.random_range(0..accounts.len());
                    let to = (from + ACCOUNTS + rng.random_range(0..ACCOUNTS)) % accounts.len();
                    (from, to, rng.random_range(1..=OPENING * 3 / 2))
                };
                let (_, outcome, _) = transfer(&client, &accounts[from], &accounts[to], amount)
                    .await
                    .expect("transfer");
                committed += usize::from(outcome == Outcome::Committed);
            }
            committed
        })
    });
    let mut committed = 0;
    for worker in workers.collect::<Vec<_>>() {
        committed += worker.await.expect("worker");
    }
    assert!(committed > 0, "some transfers committed");
    db.wait_until_nothing_prepared().await;
    let mut totals = [0; 2];
    for (bank, total) in totals.iter_mut().enumerate() {
        for i in 0..ACCOUNTS {
            let account = format!("acct-{i}");
            let (balance, held) = deployment.balance(bank, &account).await;
            assert!(balance >= 0, "{account} at bank {bank}: {balance}");
            assert_eq!(held, 0, "{account} at bank {bank} still holds money");
            *total += balance;
        }
    }
    let opened = 2 * ACCOUNTS as i64 * OPENING;
    assert_eq!(totals[0] + totals[1], opened, "money was created or lost");
    let in_table: i64 = sql(&db.dsn)
        .await
        .query_one("SELECT sum(balance)::bigint FROM verdict_accounts", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(in_table, totals[1], "the bank reports what its table holds");
    db.drop_it().await;
}

/// Starts `verdict participant postgres` on `dsn`, expecting it to refuse: its stderr.
fn refused_start(dsn: &str) -> String {
    let data = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(exe())
        .args(["participant", "postgres", "--listen", "127.0.0.1:0"])
        .args(["--dsn", dsn, "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

async fn a_bad_dsn_an_unreachable_server_or_tls_is_a_clear_error(_server: String) {
    let unreachable = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        format!("host=127.0.0.1 port={port} user=verdict dbname=none")
    };
    for (dsn, says) in [
        ("not a dsn", "the PostgreSQL DSN is not valid"),
        (unreachable.as_str(), "cannot connect to PostgreSQL"),
        ("host=127.0.0.1 sslmode=require", "does not speak TLS"),
    ] {
        let stderr = refused_start(dsn);
        assert!(stderr.contains(says), "{dsn:?}: {stderr}");
    }
}

async fn a_server_that_cannot_prepare_transactions_is_refused_with_the_fix(server: String) {
    let stderr = refused_start(&server);
    assert!(
        stderr.contains("max_prepared_transactions = 0")
            && stderr.contains("set max_prepared_transactions in postgresql.conf"),
        "{stderr}"
    );
}

/// The conformance kit against the PostgreSQL bank, the kit standing in for its coordinator;
/// the restart is a SIGKILL.
async fn the_postgresql_bank_keeps_every_conformance_rule(server: String) {
    let db = Database::create(&server).await;
    let port = kit_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let kit_url = format!("http://127.0.0.1:{port}");
    let args = [
        "participant",
        "postgres",
        "--dsn",
        &db.dsn,
        "--coordinator",
        &kit_url,
    ];
    let args = [&args[..], &["--name", "pg-kit", "--quiet-period", "300ms"]].concat();
    let mut bank = Node::new("pg-bank", exe(), dir.path(), os(&args));
    bank.start().await.expect("bank");
    let request = OpenAccountRequest {
        account: "kit".into(),
        balance: 0,
    };
    let mut client = BankClient::new(bank.channel());
    client.open_account(request).await.expect("open account");
    let stage = format!(
        "{} bank apply --bank {} --txn {{txn_id}} --account kit --delta 1",
        exe().display(),
        bank.url()
    );
    let url = bank.url();
    let (report, passed) = conformance(&mut bank, &url, port, Some(stage), "20s").await;
    assert_all_pass(&report, passed);
    bank.kill().await.expect("kill");
    db.drop_it().await;
}

/// `verdict bench --pg-direct` against two PostgreSQL banks: both halves commit transfers, and
/// the ratio printed is the one of their throughputs.
async fn the_bench_measures_direct_postgresql_in_slices_between_its_own(server: String) {
    let (deployment, dbs) = two_databases(&server).await;
    let (coordinator, bank_a, bank_b) = (
        deployment.coordinator.url(),
        deployment.banks[0].url(),
        deployment.banks[1].url(),
    );
    let args = [
        "bench",
        "--workload",
        "bank",
        "--overdraft-share",
        "0",
        "--concurrency",
        "2",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--json",
        "--coordinator",
        &coordinator,
        "--participant",
        &bank_a,
        "--participant",
        &bank_b,
        "--pg-direct",
        &dbs[0].dsn,
        &dbs[1].dsn,
    ];
    let output = tokio::process::Command::new(exe())
        .args(args)
        .output()
        .await
        .expect("bench ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let direct = &report["pg_direct"];
    assert!(report["committed"].as_u64().unwrap() > 0, "{report}");
    assert!(direct["committed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // Five slices of each, the Verdict ones measured apart from the direct ones.
    let measured = report["duration_secs"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&measured), "{report}");
    for db in dbs {
        db.wait_until_nothing_prepared().await;
        db.drop_it().await;
    }
}

/// Prepares waiting for row locks never take every connection: the `COMMIT PREPARED`s that
/// free the rows still find one. (Were they to take them all, both would wait out the lock
/// timeout, here ten minutes.)
async fn prepares_waiting_for_a_lock_leave_a_connection_for_the_decision_that_frees_it(
    server: String,
) {
    let db = Database::create(&server).await;
    let mut deployment = Deployment::start().await;
    let flags = ["--pool-size", "4", "--lock-timeout", "10m"];
    deployment.add_bank_with("pg-a", Some(&db), &flags).await;
    let accounts = ["a0", "a1", "a2", "a3"];
    for account in accounts {
        deployment.open(0, account, 100).await;
    }
    let bank = ParticipantClient::new(deployment.banks[0].channel());
    // As a coordinator that cannot be reached: nothing is resolved behind the test's back.
    let prepare = |txn: TxnId, account: &str| {
        let mut bank = bank.clone();
        let request = PrepareRequest {
            txn_id: txn.to_string(),
            coordinator_endpoint: "http://127.0.0.1:1".into(),
            coordinator_endpoints: Vec::new(),
            timeout_ms: 600_000,
            work: work::encode([(account, -1)]),
        };
        async move { bank.prepare(request).await.map(|r| r.into_inner().vote()) }
    };
    let new_txn = || TxnId::from_uuid(verdict::world::uuid_v7());
    let decide = |txn: TxnId, commit: bool| {
        let mut bank = bank.clone();
        async move {
            let txn_id = txn.to_string();
            match commit {
                true => bank
                    .commit(ParticipantCommitRequest { txn_id })
                    .await
                    .map(drop),
                false => bank
                    .abort(ParticipantAbortRequest { txn_id })
                    .await
                    .map(drop),
            }
        }
    };

    // Each account's row held by a prepared transaction.
    let holders: Vec<TxnId> = accounts.iter().map(|_| new_txn()).collect();
    for (&txn, account) in holders.iter().zip(accounts) {
        assert_eq!(prepare(txn, account).await.unwrap(), proto::Vote::Yes);
    }
    // As many prepares as the pool has connections, each for a held row.
    let waiting: Vec<TxnId> = accounts.iter().map(|_| new_txn()).collect();
    let votes: Vec<_> = waiting
        .iter()
        .zip(accounts)
        .map(|(&txn, account)| tokio::spawn(prepare(txn, account)))
        .collect();
    let observer = sql(&db.dsn).await;
    until("three prepares or more waiting for a row", || {
        let observer = &observer;
        async move {
            let query = "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let row = observer
                .query_one(query, &[])
                .await
                .expect("pg_stat_activity");
            row.get::<_, i64>(0) >= 3
        }
    })
    .await;

    for &txn in &holders {
        let committed = tokio::time::timeout(PATIENCE, decide(txn, true)).await;
        committed
            .expect("the decision found a connection")
            .expect("committed");
    }
    for vote in votes {
        assert_eq!(vote.await.unwrap().unwrap(), proto::Vote::Yes);
    }
    for txn in waiting {
        decide(txn, false).await.expect("aborted");
    }
    db.wait_until_nothing_prepared().await;
    for account in accounts {
        assert_eq!(db.balance(account).await, 99);
    }
    db.drop_it().await;
}
