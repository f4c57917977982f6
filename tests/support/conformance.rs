//! Running the conformance kit (`verdict conformance`) against a participant process, and
//! restarting that participant when the kit's restart command asks.

use std::process::Stdio;
use std::time::Duration;

use super::{Server, PATIENCE};
use verdict::chaos::cluster::Node;

/// A participant the kit's restart command can have restarted.
pub trait Restartable {
    async fn restart(&mut self);
}

impl Restartable for Server {
    async fn restart(&mut self) {
        self.kill().await;
        Server::restart(self).await;
    }
}

impl Restartable for Node {
    async fn restart(&mut self) {
        self.kill().await.expect("kill");
        self.start().await.expect("restart");
    }
}

/// Runs `verdict conformance` against `participant` at `url`, the kit serving as the
/// coordinator on `kit_port`; restarts the participant when the kit's restart command asks
/// (it touches a flag file and waits for it to go). Returns the kit's JSON report and whether
/// it exited successfully.
pub async fn conformance(
    participant: &mut impl Restartable,
    url: &str,
    kit_port: u16,
    stage_cmd: Option<String>,
    patience: &str,
) -> (serde_json::Value, bool) {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("restart");
    let restart_cmd = format!(
        "touch {0} && while [ -e {0} ]; do sleep 0.02; done",
        flag.display()
    );
    let mut args = vec![
        "conformance".to_owned(),
        "--participant".into(),
        url.into(),
        "--listen".into(),
        format!("127.0.0.1:{kit_port}"),
        "--restart-cmd".into(),
        restart_cmd,
        "--patience".into(),
        patience.into(),
        "--json".into(),
    ];
    if let Some(stage) = stage_cmd {
        args.extend(["--stage-cmd".into(), stage]);
    }
    let kit = tokio::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = kit.wait_with_output();
    tokio::pin!(output);
    let output = tokio::time::timeout(PATIENCE * 4, async {
        loop {
            tokio::select! {
                output = &mut output => return output.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if flag.exists() {
                        participant.restart().await;
                        std::fs::remove_file(&flag).unwrap();
                    }
                }
            }
        }
    })
    .await
    .expect("the kit finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "the kit printed no JSON report: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

pub fn verdicts(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let rules = report["rules"].as_array().unwrap().iter();
    rules
        .map(|r| {
            let text = |key: &str| r[key].as_str().unwrap().to_owned();
            (text("rule"), text("result"), text("detail"))
        })
        .collect()
}

/// The kit's rule for the optional `Decide`, which it skips where that is not implemented.
pub const DECIDE_RULE: &str = "Decide (optional) answers each decision as Commit or Abort would";
pub const PREPARE_STREAM_RULE: &str =
    "PrepareStream (optional) answers each prepare as Prepare would, under its id";

pub fn assert_all_pass(report: &serde_json::Value, passed: bool) {
    assert_all_pass_but(report, passed, &[]);
}

/// As [`assert_all_pass`], but the optional rules in `skipped` are skipped.
pub fn assert_all_pass_but(report: &serde_json::Value, passed: bool, skipped: &[&str]) {
    for (rule, result, detail) in verdicts(report) {
        let expected = match skipped.contains(&rule.as_str()) {
            true => "skip",
            false => "pass",
        };
        assert_eq!(result, expected, "{rule}: {detail}");
    }
    assert_eq!(report["failed"], 0);
    assert_eq!(report["passed"], 9 - skipped.len(), "{report}");
    assert!(passed, "the kit exited with failure: {report}");
}

/// A free port for the kit to serve on as the coordinator.
pub fn kit_port() -> u16 {
    verdict::process::free_local_ports(1).unwrap()[0]
}
