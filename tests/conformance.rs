//! The conformance kit (`verdict conformance`) run as a user runs it, against real participant
//! processes: the KV bank and the noop participant pass every rule; a participant that breaks
//! the contract on purpose (`examples/broken_participant.rs`) fails the rules it breaks.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::conformance::{
    assert_all_pass, conformance, kit_port, verdicts, Restartable, DECIDE_RULE, PREPARE_STREAM_RULE,
};
use support::Server;
use verdict::process::ChildServer;

/// The broken participant, an example binary cargo builds beside the tests.
struct Broken {
    process: Option<ChildServer>,
    listen: String,
    stage_dir: PathBuf,
}

impl Broken {
    fn exe() -> PathBuf {
        let verdict = Path::new(env!("CARGO_BIN_EXE_verdict"));
        verdict
            .parent()
            .unwrap()
            .join("examples")
            .join("broken_participant")
    }

    async fn start(listen: String, stage_dir: PathBuf) -> Self {
        let args = [listen.clone(), stage_dir.display().to_string()];
        let process = ChildServer::spawn(&Self::exe(), args, Stdio::null())
            .await
            .expect("the broken participant starts (cargo builds it with the tests)");
        Broken {
            process: Some(process),
            listen,
            stage_dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }
}

impl Restartable for Broken {
    async fn restart(&mut self) {
        self.process.take().unwrap().kill().await.unwrap();
        let restarted = Broken::start(self.listen.clone(), self.stage_dir.clone()).await;
        *self = restarted;
    }
}

#[tokio::test]
async fn the_kv_bank_keeps_every_rule() {
    let port = kit_port();
    let kit_url = format!("http://127.0.0.1:{port}");
    let mut bank = Server::start_bank_at(&kit_url, "kv-bank", &["--quiet-period", "300ms"]).await;
    let opened = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["bank", "open", "--bank", &bank.url(), "kit", "0"])
        .output()
        .unwrap();
    assert!(opened.status.success());
    let stage = format!(
        "{} bank apply --bank {} --txn {{txn_id}} --account kit --delta 1",
        env!("CARGO_BIN_EXE_verdict"),
        bank.url()
    );
    let url = bank.url();
    let (report, passed) = conformance(&mut bank, &url, port, Some(stage), "20s").await;
    assert_all_pass(&report, passed);
}

#[tokio::test]
async fn the_noop_participant_keeps_every_rule() {
    let port = kit_port();
    let kit_url = format!("http://127.0.0.1:{port}");
    let args = ["--quiet-period", "300ms"];
    let base = ["participant", "noop", "--coordinator", &kit_url];
    let mut noop = Server::start_args(&[&base[..], &args[..]].concat()).await;
    let url = noop.url();
    let (report, passed) = conformance(&mut noop, &url, port, None, "20s").await;
    assert_all_pass(&report, passed);
}

#[tokio::test]
async fn a_participant_that_breaks_the_contract_fails() {
    let port = kit_port();
    let stage_dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", kit_port());
    let mut broken = Broken::start(listen, stage_dir.path().to_owned()).await;
    let stage = format!("touch {}/{{txn_id}}", stage_dir.path().display());
    let url = broken.url();
    let (report, passed) = conformance(&mut broken, &url, port, Some(stage), "3s").await;
    assert!(!passed, "the kit passed a broken participant: {report}");
    let failed: Vec<String> = verdicts(&report)
        .into_iter()
        .filter(|(_, result, _)| result == "fail")
        .map(|(rule, _, _)| rule)
        .collect();
    for broken_rule in [
        "Commit of a never-prepared transaction fails with FAILED_PRECONDITION",
        "a malformed request fails with INVALID_ARGUMENT and a message",
        "a YES vote survives a restart of the participant",
    ] {
        assert!(
            failed.iter().any(|rule| rule == broken_rule),
            "{broken_rule:?} not failed: {report}"
        );
    }
    assert!(
        failed.iter().any(|rule| rule.contains("asks Resolve")),
        "{report}"
    );
    assert_eq!(report["failed"].as_u64().unwrap() as usize, failed.len());
    // It takes no Decide and no PrepareStream, which are optional: those rules are skipped,
    // not failed.
    for optional in [DECIDE_RULE, PREPARE_STREAM_RULE] {
        let checked = verdicts(&report)
            .into_iter()
            .find(|(rule, _, _)| rule == optional)
            .expect("the optional rule is checked");
        assert_eq!(checked.1, "skip", "{optional}: {report}");
    }
}
