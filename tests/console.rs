//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver).
//! A KV bank votes YES and is killed at a crash point before it applies the commit, so the
//! transaction is stuck committing; the test finds it on the console's page, resolves it by
//! hand through the page's dialog and its confirmation step, restarts the bank, and sees the
//! bank receive the decision and apply it. It saves screenshots along the way. And on a
//! coordinator that authenticates callers, an operator signs in to the console with their own
//! token (a wrong one, or one without the operator role, refused with the reason), and signs out.
//!
//! It needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`; `.ci/run`
//! installs them). Without them it is reported as ignored, with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use tonic::transport::Channel;
use verdict::chaos::cluster::Node;
use verdict::client::Client;
use verdict::proto::bank_client::BankClient;
use verdict::proto::{ApplyRequest, GetBalanceRequest, OpenAccountRequest};

const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let arguments = Arguments::from_args();
    let driver = which("chromedriver");
    let missing = match (&driver, which("chromium")) {
        (None, _) => Some("chromedriver is not installed (apt-get install chromium-driver)"),
        (_, None) => Some("chromium is not installed (apt-get install chromium)"),
        _ => None,
    };
    if let Some(why) = missing {
        eprintln!("the console's browser test SKIPPED (reported as ignored): {why}");
    }
    let driver = driver.unwrap_or_default();
    let trial = |name: &'static str, test: fn(&Path) -> Test| {
        let driver = driver.clone();
        Trial::test(name, move || run(test(&driver))).with_ignored_flag(missing.is_some())
    };
    let trials = vec![
        trial(
            "the_console_finds_a_stuck_transaction_and_resolves_it_through_the_page",
            |driver| {
                Box::pin(stuck_transaction_resolved_through_the_page(
                    driver.to_owned(),
                ))
            },
        ),
        trial(
            "an_operator_signs_in_to_the_console_of_a_coordinator_that_authenticates_callers",
            |driver| Box::pin(operators_sign_in(driver.to_owned())),
        ),
    ];
    libtest_mimic::run(&arguments, trials).exit();
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

type Test = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn run(test: Test) -> Result<(), Failed> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(test);
    Ok(())
}

fn free_addr() -> SocketAddr {
    let port = verdict::process::free_local_ports(1).unwrap()[0];
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// chromedriver on a free port, and a headless Chromium session through it. Dropped, it kills
/// chromedriver's whole process group: the browsers it started go too, even when a test fails.
struct Driver {
    process: tokio::process::Child,
    browser: Browser,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.process.id() {
            // SAFETY: killpg(2) on the process group this test made for chromedriver.
            unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Driver {
    async fn start(driver: &Path) -> Self {
        let addr = free_addr();
        let process = tokio::process::Command::new(driver)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://{addr}");
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,1100"],
            }
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let browser = until("chromedriver to take a session", || async {
            ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
                .ok()
        })
        .await;
        Driver { process, browser }
    }

    /// A browser with the console at `console` open.
    async fn open(driver: &Path, console: SocketAddr) -> Self {
        let driver = Driver::start(driver).await;
        driver
            .browser
            .goto(&format!("http://{console}/"))
            .await
            .expect("the console's page loads");
        driver
    }
}

/// Polls `condition` every 100 ms until it gives a value, up to [`PATIENCE`].
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> T {
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(value) = condition().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("waited {PATIENCE:?} for {what}"))
}

async fn text(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn click(browser: &Browser, css: &str) {
    let element = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css));
    element.await.expect(css).click().await.expect(css);
}

async fn type_into(browser: &Browser, css: &str, words: &str) {
    let element = browser.find(Locator::Css(css)).await.expect(css);
    element.send_keys(words).await.expect(css);
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).expect("the screenshot is saved");
    println!("screenshot: {}", path.display());
}

async fn balance(mut bank: BankClient<Channel>, account: &str) -> Option<i64> {
    let request = GetBalanceRequest {
        account: account.into(),
    };
    Some(bank.get_balance(request).await.ok()?.into_inner().balance)
}

async fn stuck_transaction_resolved_through_the_page(driver: PathBuf) {
    let exe = Path::new(env!("CARGO_BIN_EXE_verdict"));
    let dir = tempfile::tempdir().unwrap();
    let console = free_addr();
    // Phase 2 is retried only after an hour: without the operator, the transaction stays stuck.
    let serve = [
        "serve",
        "--retry-initial",
        "1h",
        "--retry-max",
        "1h",
        "--console-listen",
    ];
    let mut serve: Vec<std::ffi::OsString> = serve.iter().map(Into::into).collect();
    serve.push(console.to_string().into());
    let mut coordinator = Node::new("coordinator", exe, dir.path(), serve);
    coordinator.start().await.unwrap();
    let participant = ["participant", "kv", "--name", "bank", "--coordinator"];
    let mut args: Vec<std::ffi::OsString> = participant.iter().map(Into::into).collect();
    args.push(coordinator.url().into());
    let mut bank_node = Node::new("bank", exe, dir.path(), args);
    bank_node.arm("participant::before_commit_applied");
    bank_node.start().await.unwrap();
    let mut bank = BankClient::new(bank_node.channel());
    let open = OpenAccountRequest {
        account: "alice".into(),
        balance: 100,
    };
    bank.open_account(open).await.unwrap();

    // A deposit the bank votes YES to, and dies before applying.
    let client = Client::new(&coordinator.url(), Duration::from_secs(10)).unwrap();
    let txn = client.begin(None).await.unwrap().txn_id;
    let deposit = ApplyRequest {
        txn_id: txn.to_string(),
        account: "alice".into(),
        delta: 10,
        deadline_unix_ms: 0,
    };
    bank.apply(deposit).await.unwrap();
    let (outcome, _) = client.commit(txn).await.unwrap();
    assert_eq!(outcome, verdict::core::Outcome::Committed);
    assert!(
        bank_node.exits_within(PATIENCE).await,
        "the bank dies at its crash point"
    );

    let driver = Driver::open(&driver, console).await;
    let browser = &driver.browser;
    let row = format!("tr[data-txn='{txn}']");
    until("the stuck transaction on the page", || async {
        let listed = text(browser, &row).await;
        listed.contains("committing").then_some(())
    })
    .await;
    click(browser, &row).await;
    until("its detail", || async {
        let state = text(browser, "#detail-state").await;
        (state == "committing").then_some(())
    })
    .await;
    let participants = text(browser, "#participants").await;
    assert!(
        participants.contains("bank") && participants.contains("yes"),
        "{participants}"
    );
    screenshot(browser, "console-stuck.png").await;

    click(browser, "#resolve").await;
    click(browser, "input[name=outcome][value=commit]").await;
    type_into(browser, "#operator", "alice@ops-1").await;
    type_into(
        browser,
        "#reason",
        "the bank's disk was replaced; it will ask",
    )
    .await;
    click(browser, "#resolve-next").await;
    let summary = text(browser, "#resolve-summary").await;
    assert!(
        summary.contains("as COMMIT"),
        "the page asks first: {summary}"
    );
    screenshot(browser, "console-confirm.png").await;
    click(browser, "#resolve-confirm").await;
    until("the resolution on the page", || async {
        let refused = text(browser, "#resolve-error").await;
        assert!(refused.is_empty(), "the page shows a refusal: {refused}");
        let shown = text(browser, "#detail-resolution").await;
        shown
            .contains("resolved by hand as commit by alice@ops-1 (console, browser at 127.0.0.1:")
            .then_some(())
    })
    .await;
    assert_eq!(text(browser, "#detail-state").await, "committed");
    screenshot(browser, "console-resolved.png").await;
    browser.clone().close().await.expect("the browser closes");
    drop(driver);

    // The bank comes back: it asks about the transaction it voted YES to, and applies it.
    bank_node.disarm();
    bank_node.start().await.unwrap();
    let bank = BankClient::new(bank_node.channel());
    until("the bank to apply the decision", || async {
        (balance(bank.clone(), "alice").await == Some(110)).then_some(())
    })
    .await;
    bank_node.stop().await.unwrap();
    coordinator.stop().await.unwrap();
}

/// The hex SHA-256 of `token`, as the identities file holds it.
fn sha256(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The status line of a GET of `path` from the console at `addr`, sent with no cookie.
async fn status_line(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Waits until the element at `css` shows `words`.
async fn shows(browser: &Browser, css: &str, words: &str) {
    until(&format!("{words:?} in {css}"), || async {
        text(browser, css).await.contains(words).then_some(())
    })
    .await;
}

async fn sign_in_as(browser: &Browser, token: &str) {
    let field = browser.find(Locator::Css("#token")).await.expect("#token");
    field.clear().await.expect("#token");
    field.send_keys(token).await.expect("#token");
    click(browser, "#sign-in-button").await;
}

async fn operators_sign_in(driver: PathBuf) {
    let exe = Path::new(env!("CARGO_BIN_EXE_verdict"));
    let dir = tempfile::tempdir().unwrap();
    let identities = dir.path().join("identities.json");
    let listed = |name: &str, role: &str, token: &str| json!({"name": name, "roles": [role], "token_sha256": sha256(token)});
    let file = json!({"identities": [
        listed("ops", "operator", "ops-token"),
        listed("orders", "application", "orders-token"),
    ]});
    std::fs::write(&identities, file.to_string()).unwrap();
    let console = free_addr();
    let serve: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--auth".into(),
        identities.into(),
        "--console-listen".into(),
        console.to_string().into(),
    ];
    let mut coordinator = Node::new("coordinator", exe, dir.path(), serve);
    coordinator.start().await.unwrap();
    assert!(
        status_line(console, "/api/overview").await.contains("401"),
        "the API answers no one who has not signed in"
    );

    let driver = Driver::open(&driver, console).await;
    let browser = &driver.browser;
    shows(browser, "#sign-in", "Sign in").await;
    sign_in_as(browser, "guess").await;
    shows(browser, "#sign-in-error", "not one this coordinator knows").await;
    sign_in_as(browser, "orders-token").await;
    shows(browser, "#sign-in-error", "orders may not call").await;
    screenshot(browser, "console-sign-in-refused.png").await;

    sign_in_as(browser, "ops-token").await;
    until("the console as ops", || async {
        let signed_in = text(browser, "#sign-in").await.is_empty();
        let counts = text(browser, "#in-flight").await == "0";
        let sign_out = text(browser, "#sign-out").await == "Sign out";
        (signed_in && counts && sign_out).then_some(())
    })
    .await;
    screenshot(browser, "console-signed-in.png").await;

    click(browser, "#sign-out").await;
    shows(browser, "#sign-in", "Sign in").await;
    browser.clone().close().await.expect("the browser closes");
    drop(driver);
    coordinator.stop().await.unwrap();
}
