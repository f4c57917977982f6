//! The Python participant (`examples/python-participant/`) as a real process: the conformance
//! kit passes it, SIGKILLs included, and it takes part in transfers with the KV bank through a
//! real coordinator, the books checked after.
//!
//! It needs a Python with the example's pinned requirements and generated stubs, named by
//! `VERDICT_TEST_PYTHON`; `examples/python-participant/setup.sh` makes one and prints the line
//! (`.ci/run` does this). Without it the tests here are reported as ignored, with a line saying
//! how to run them.

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use libtest_mimic::{Arguments, Failed, Trial};
use support::conformance::{
    assert_all_pass_but, conformance, kit_port, Restartable, PREPARE_STREAM_RULE,
};
use support::{Server, PATIENCE};
use verdict::process::ChildServer;

type Test = fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

const TESTS: &[(&str, Test)] = &[
    ("the_python_participant_keeps_every_rule", |python| {
        Box::pin(the_python_participant_keeps_every_rule(python))
    }),
    (
        "the_python_participant_moves_money_with_the_kv_bank",
        |python| Box::pin(the_python_participant_moves_money_with_the_kv_bank(python)),
    ),
    (
        "the_python_bank_describes_itself_and_takes_part_when_named_at_begin",
        |python| {
            Box::pin(the_python_bank_describes_itself_and_takes_part_when_named_at_begin(python))
        },
    ),
];

fn main() {
    let arguments = Arguments::from_args();
    let python = std::env::var("VERDICT_TEST_PYTHON").ok();
    if python.is_none() {
        eprintln!(
            "Python participant tests SKIPPED (reported as ignored): VERDICT_TEST_PYTHON is not \
             set. Run them with: eval \"$(examples/python-participant/setup.sh)\" && cargo test \
             --test python_participant"
        );
    }
    let trials = TESTS
        .iter()
        .map(|&(name, test)| {
            let python = python.clone();
            let missing = python.is_none();
            Trial::test(name, move || run(test, python.unwrap_or_default()))
                .with_ignored_flag(missing)
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}

fn run(test: Test, python: String) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    runtime.block_on(test(python));
    Ok(())
}

/// The Python participant, on a fixed port and SQLite file so a restart finds both.
struct Python {
    process: Option<ChildServer>,
    python: String,
    args: Vec<String>,
    listen: String,
    dir: tempfile::TempDir,
}

impl Python {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-participant/participant.py")
    }

    async fn start(python: &str, coordinator: &str, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = verdict::process::free_local_ports(1).unwrap()[0];
        let listen = format!("127.0.0.1:{port}");
        let args = vec![
            Self::script().display().to_string(),
            "--listen".into(),
            listen.clone(),
            "--db".into(),
            dir.path().join("state.sqlite3").display().to_string(),
            "--coordinator".into(),
            coordinator.into(),
            "--name".into(),
            name.into(),
            "--quiet-period".into(),
            "0.3".into(),
        ];
        let mut started = Python {
            process: None,
            python: python.into(),
            args,
            listen,
            dir,
        };
        started.spawn().await;
        started
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let process = ChildServer::spawn(Path::new(&self.python), &self.args, Stdio::from(log))
            .await
            .expect("the Python participant starts");
        self.process = Some(process);
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("participant.log")
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            eprintln!("---- the Python participant's log ----\n{log}");
        }
    }
}

impl Restartable for Python {
    async fn restart(&mut self) {
        self.process.take().unwrap().kill().await.expect("SIGKILL");
        self.spawn().await;
    }
}

fn verdict(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .output()
        .expect("verdict ran")
}

fn succeeded(output: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verdict failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn the_python_participant_keeps_every_rule(python: String) {
    let port = kit_port();
    let kit_url = format!("http://127.0.0.1:{port}");
    let mut participant = Python::start(&python, &kit_url, "python").await;
    let url = participant.url();
    succeeded(verdict(&["bank", "open", "--bank", &url, "kit", "0"]));
    let stage = format!(
        "{} bank apply --bank {url} --txn {{txn_id}} --account kit --delta 1",
        env!("CARGO_BIN_EXE_verdict")
    );
    let (report, passed) = conformance(&mut participant, &url, port, Some(stage), "20s").await;
    // It takes prepares one call each, as PrepareStream is optional.
    assert_all_pass_but(&report, passed, &[PREPARE_STREAM_RULE]);
}

async fn the_python_participant_moves_money_with_the_kv_bank(python: String) {
    let coordinator = Server::start(&[]).await;
    let kv = Server::start_bank(&coordinator, "kv-bank", &["--quiet-period", "300ms"]).await;
    let participant = Python::start(&python, &coordinator.url(), "python-bank").await;
    let out = succeeded(verdict(&[
        "bank",
        "exercise",
        "--coordinator",
        &coordinator.url(),
        "--bank",
        &kv.url(),
        "--bank",
        &participant.url(),
        "--duration",
        "3s",
        "--patience",
        &format!("{}s", PATIENCE.as_secs()),
    ]));
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.contains(" violations 0 "), "{out}");
    assert!(!summary.contains(" committed 0 "), "{out}");
}

async fn the_python_bank_describes_itself_and_takes_part_when_named_at_begin(python: String) {
    // The bench's bank workload asks each bank which participant it is (Describe) and names
    // both at Begin; with `--staging apply` it tells them so in Apply.
    let coordinator = Server::start(&[]).await;
    let kv = Server::start_bank(&coordinator, "kv-bank", &[]).await;
    let participant = Python::start(&python, &coordinator.url(), "python-bank").await;
    let bench = |staging: &str| {
        let (coordinator, kv, python) = (coordinator.url(), kv.url(), participant.url());
        let args = [
            "bench",
            "--workload",
            "bank",
            "--overdraft-share",
            "0",
            "--staging",
            staging,
            "--coordinator",
            &coordinator,
            "--participant",
            &kv,
            "--participant",
            &python,
            "--concurrency",
            "2",
            "--transactions",
            "50",
            "--warmup",
            "0s",
            "--json",
        ];
        let out = succeeded(verdict(&args));
        let report: serde_json::Value = serde_json::from_str(&out).expect("the bench's JSON");
        (report, out)
    };
    let (report, out) = bench("apply");
    // Workers already under way when the count is reached finish theirs.
    assert!(report["committed"].as_u64() >= Some(50), "{out}");
    assert_eq!(
        (&report["aborted"], &report["failed"]),
        (&0.into(), &0.into()),
        "{out}"
    );
    // The Python bank does not read PrepareRequest.work: handed its change in Commit, it finds
    // nothing staged and votes NO (a YES would not set `took_work`, and count as NO) — every
    // transfer aborts, none commits with a half missing.
    let (report, out) = bench("commit");
    assert_eq!(report["committed"], 0, "{out}");
    assert!(report["aborted"].as_u64() >= Some(50), "{out}");
}
