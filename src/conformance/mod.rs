//! The conformance kit (`verdict conformance`): drives any participant, in any language,
//! through the written participant contract (`proto/verdict/v1/participant.proto`) and says,
//! rule by rule, whether it keeps it — before production finds out.
//!
//! The kit plays both other roles. As the application it stages work for a transaction by
//! running the user's `--stage-cmd`; as the coordinator it sends `Prepare`, `Commit` and `Abort`
//! itself, and stands in for the coordinator the participant enlists with and asks `Resolve`
//! ([`stand_in`]), so the participant must be pointed at the kit's address.

pub mod stand_in;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::core::TxnId;
use crate::proto::participant_client::ParticipantClient;
use crate::proto::{
    DecideRequest, Decision, Outcome, ParticipantAbortRequest, ParticipantCommitRequest,
    PrepareRequest, StreamedPrepare, StreamedVote, Vote,
};
use crate::{net, tls};
use stand_in::StandIn;

/// How a restart of the participant happens.
#[derive(Clone, Debug)]
pub enum Restart {
    /// Run this shell command; it returns once the participant has been restarted (or is
    /// restarting).
    Command(String),
    /// Ask the person at the terminal to restart it and press Enter.
    AskOnTerminal,
    /// Neither is possible: the rule is skipped.
    Unavailable,
}

/// What to check and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The participant's `verdict.v1.Participant` endpoint.
    pub participant: String,
    /// Where the kit serves as the coordinator; the participant must use it as its coordinator.
    pub listen: SocketAddr,
    /// A shell command template that stages work the participant can commit, for the
    /// transaction `{txn_id}`, enlisting with the coordinator at `{coordinator}`. None: the
    /// participant votes YES without staged work.
    pub stage_cmd: Option<String>,
    pub restart: Restart,
    /// How long to wait for the participant: to come back after a restart, or to ask Resolve.
    pub patience: Duration,
}

/// A rule's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// One rule checked.
#[derive(Clone, Debug)]
pub struct Finding {
    pub rule: &'static str,
    pub verdict: Verdict,
}

/// Every rule's finding, in the order checked.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn count(&self, wanted: fn(&Verdict) -> bool) -> usize {
        self.findings.iter().filter(|f| wanted(&f.verdict)).count()
    }

    pub fn passed(&self) -> usize {
        self.count(|v| *v == Verdict::Pass)
    }

    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Fail(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Skip(_)))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let (result, detail) = match &f.verdict {
                    Verdict::Pass => ("pass", ""),
                    Verdict::Fail(why) => ("fail", why.as_str()),
                    Verdict::Skip(why) => ("skip", why.as_str()),
                };
                serde_json::json!({ "rule": f.rule, "result": result, "detail": detail })
            })
            .collect();
        serde_json::json!({
            "rules": rules,
            "passed": self.passed(),
            "failed": self.failed(),
            "skipped": self.skipped(),
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for finding in &self.findings {
            match &finding.verdict {
                Verdict::Pass => writeln!(f, "PASS  {}", finding.rule)?,
                Verdict::Fail(why) => writeln!(f, "FAIL  {}\n      {why}", finding.rule)?,
                Verdict::Skip(why) => writeln!(f, "SKIP  {}\n      {why}", finding.rule)?,
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())?;
        match self.skipped() {
            0 => Ok(()),
            n => write!(f, ", {n} skipped"),
        }
    }
}

/// The rules, in the order checked: the restart last, since it takes the participant away.
#[derive(Clone, Copy, Debug)]
enum Rule {
    RepeatedPrepare,
    RepeatedCommit,
    AbortUnknown,
    CommitUnprepared,
    ErrorsAreStatuses,
    DecidesAsCommitAndAbort,
    StreamsPrepares,
    ResolvesInDoubt,
    YesSurvivesRestart,
}

const RULES: [Rule; 9] = [
    Rule::RepeatedPrepare,
    Rule::RepeatedCommit,
    Rule::AbortUnknown,
    Rule::CommitUnprepared,
    Rule::ErrorsAreStatuses,
    Rule::DecidesAsCommitAndAbort,
    Rule::StreamsPrepares,
    Rule::ResolvesInDoubt,
    Rule::YesSurvivesRestart,
];

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::RepeatedPrepare => "a second Prepare returns the first vote",
            Rule::RepeatedCommit => "Commit after Commit succeeds",
            Rule::AbortUnknown => {
                "Abort of an unknown transaction succeeds, and a later Prepare of it votes NO"
            }
            Rule::CommitUnprepared => {
                "Commit of a never-prepared transaction fails with FAILED_PRECONDITION"
            }
            Rule::ErrorsAreStatuses => {
                "a malformed request fails with INVALID_ARGUMENT and a message"
            }
            Rule::DecidesAsCommitAndAbort => {
                "Decide (optional) answers each decision as Commit or Abort would"
            }
            Rule::StreamsPrepares => {
                "PrepareStream (optional) answers each prepare as Prepare would, under its id"
            }
            Rule::ResolvesInDoubt => {
                "left prepared without a decision, it asks Resolve at the endpoint given, asks \
                 again after PENDING, and stops once told COMMITTED"
            }
            Rule::YesSurvivesRestart => "a YES vote survives a restart of the participant",
        }
    }

    async fn check(self, kit: &Kit<'_>) -> Verdict {
        let result = match self {
            Rule::RepeatedPrepare => kit.repeated_prepare().await,
            Rule::RepeatedCommit => kit.repeated_commit().await,
            Rule::AbortUnknown => kit.abort_unknown().await,
            Rule::CommitUnprepared => kit.commit_unprepared().await,
            Rule::ErrorsAreStatuses => kit.errors_are_statuses().await,
            Rule::DecidesAsCommitAndAbort => return kit.decides().await,
            Rule::StreamsPrepares => return kit.streams_prepares().await,
            Rule::ResolvesInDoubt => kit.resolves_in_doubt().await,
            Rule::YesSurvivesRestart => return kit.yes_survives_restart().await,
        };
        match result {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        }
    }
}

/// Checks every rule against the participant in `options`.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    crate::coordinator::validate::url("--participant", &options.participant)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} as the coordinator ({e}): is a coordinator running there? \
                 Stop it, or give the kit another --listen address and the participant that \
                 address as its coordinator",
                options.listen
            )
        })?;
    let stand_in = StandIn::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(stand_in.clone().into_server());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stopped.await;
    }));
    let kit = Kit::new(options, stand_in)?;
    let mut report = Report::default();
    for rule in RULES {
        let verdict = rule.check(&kit).await;
        report.findings.push(Finding {
            rule: rule.name(),
            verdict,
        });
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(report)
}

/// Why the `Decide` rule is skipped for a participant without it.
const NO_DECIDE: &str =
    "it does not implement Decide; the coordinator sends it decisions one by one";

/// Why the `PrepareStream` rule is skipped for a participant without it.
const NO_PREPARE_STREAM: &str =
    "it does not implement PrepareStream; the coordinator sends it one Prepare call each";

/// How long one call to the participant may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The kit at work: a client of the participant and the stand-in coordinator.
struct Kit<'a> {
    options: &'a Options,
    participant: ParticipantClient<Channel>,
    coordinator: String,
    stand_in: StandIn,
}

fn said(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl<'a> Kit<'a> {
    fn new(options: &'a Options, stand_in: StandIn) -> anyhow::Result<Self> {
        let channel = net::channel(
            tls::endpoint(&options.participant)?
                .connect_timeout(CALL_TIMEOUT)
                .timeout(CALL_TIMEOUT),
        );
        Ok(Kit {
            options,
            participant: ParticipantClient::new(channel),
            coordinator: format!("http://{}", options.listen),
            stand_in,
        })
    }

    fn fresh() -> TxnId {
        TxnId::from_uuid(uuid::Uuid::now_v7())
    }

    /// Runs the stage command for `txn`.
    async fn stage(&self, txn: TxnId) -> Result<(), String> {
        let Some(template) = &self.options.stage_cmd else {
            return Ok(());
        };
        let command = template
            .replace("{txn_id}", &txn.to_string())
            .replace("{coordinator}", &self.coordinator);
        let output = tokio::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .await
            .map_err(|e| format!("cannot run the stage command {command:?}: {e}"))?;
        match output.status.success() {
            true => Ok(()),
            false => Err(format!(
                "the stage command {command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }

    async fn prepare_id(&self, txn_id: String) -> Result<(Vote, String), Status> {
        let request = PrepareRequest {
            txn_id,
            coordinator_endpoint: self.coordinator.clone(),
            timeout_ms: CALL_TIMEOUT.as_millis() as u64,
            coordinator_endpoints: vec![self.coordinator.clone()],
            work: Vec::new(),
        };
        let answer = self
            .participant
            .clone()
            .prepare(request)
            .await?
            .into_inner();
        let vote = Vote::try_from(answer.vote).unwrap_or(Vote::Unspecified);
        Ok((vote, answer.reason))
    }

    async fn prepare(&self, txn: TxnId) -> Result<(Vote, String), String> {
        self.prepare_id(txn.to_string())
            .await
            .map_err(|s| format!("Prepare failed: {}", said(&s)))
    }

    async fn commit(&self, txn: TxnId) -> Result<(), Status> {
        let request = ParticipantCommitRequest {
            txn_id: txn.to_string(),
        };
        self.participant.clone().commit(request).await.map(drop)
    }

    async fn abort(&self, txn: TxnId) -> Result<(), Status> {
        let request = ParticipantAbortRequest {
            txn_id: txn.to_string(),
        };
        self.participant.clone().abort(request).await.map(drop)
    }

    /// Stages work for a fresh transaction and has the participant vote YES on it.
    async fn prepared_yes(&self) -> Result<TxnId, String> {
        let txn = Self::fresh();
        self.stage(txn).await?;
        match self.prepare(txn).await? {
            (Vote::Yes, _) => Ok(txn),
            (vote, reason) => Err(format!(
                "it voted {} ({reason:?}) on staged work; the kit needs a YES to check this \
                 rule: does --stage-cmd stage work the participant can commit?",
                vote.as_str_name()
            )),
        }
    }

    async fn committed(&self, txn: TxnId, which: &str) -> Result<(), String> {
        self.commit(txn)
            .await
            .map_err(|s| format!("the {which} Commit failed: {}", said(&s)))
    }

    async fn repeated_prepare(&self) -> Result<(), String> {
        let txn = self.prepared_yes().await?;
        match self.prepare(txn).await? {
            (Vote::Yes, _) => self.committed(txn, "closing").await,
            (vote, reason) => Err(format!(
                "the second Prepare voted {} ({reason:?}) after a YES",
                vote.as_str_name()
            )),
        }
    }

    async fn repeated_commit(&self) -> Result<(), String> {
        let txn = self.prepared_yes().await?;
        self.committed(txn, "first").await?;
        self.committed(txn, "second").await
    }

    async fn abort_unknown(&self) -> Result<(), String> {
        let txn = Self::fresh();
        self.abort(txn)
            .await
            .map_err(|s| format!("Abort of a transaction it never saw failed: {}", said(&s)))?;
        // Work staged after the abort must not revive it; refusing to stage it is fine too.
        let _ = self.stage(txn).await;
        match self.prepare(txn).await? {
            (Vote::No, _) => Ok(()),
            (vote, _) => Err(format!(
                "after the Abort, Prepare voted {}: an aborted transaction must never prepare",
                vote.as_str_name()
            )),
        }
    }

    async fn commit_unprepared(&self) -> Result<(), String> {
        match self.commit(Self::fresh()).await {
            Ok(()) => Err("Commit of a transaction it never prepared succeeded".into()),
            Err(s) if s.code() == Code::FailedPrecondition && !s.message().is_empty() => Ok(()),
            Err(s) => Err(format!(
                "it failed with {}, not FAILED_PRECONDITION with a message",
                said(&s)
            )),
        }
    }

    async fn errors_are_statuses(&self) -> Result<(), String> {
        for bad in ["", "not a transaction id"] {
            match self.prepare_id(bad.into()).await {
                Err(s) if s.code() == Code::InvalidArgument && !s.message().is_empty() => {}
                Err(s) => {
                    return Err(format!(
                        "Prepare of txn_id {bad:?} failed with {}, not INVALID_ARGUMENT with a \
                         message",
                        said(&s)
                    ))
                }
                Ok((vote, _)) => {
                    return Err(format!(
                        "Prepare of txn_id {bad:?} answered {}",
                        vote.as_str_name()
                    ))
                }
            }
        }
        Ok(())
    }

    /// One `Decide` with a commit of a prepared transaction, an abort of an unknown one and a
    /// commit of one never prepared: OK, OK, FAILED_PRECONDITION. Skipped where `Decide` is not
    /// implemented: the coordinator then sends decisions one by one.
    async fn decides(&self) -> Verdict {
        let prepared = match self.prepared_yes().await {
            Ok(txn) => txn,
            Err(why) => return Verdict::Fail(why),
        };
        let decisions = [
            (prepared, true),
            (Self::fresh(), false),
            (Self::fresh(), true),
        ];
        let request = DecideRequest {
            decisions: decisions
                .iter()
                .map(|&(txn, commit)| Decision {
                    txn_id: txn.to_string(),
                    commit,
                })
                .collect(),
        };
        let results = match self.participant.clone().decide(request).await {
            Ok(answer) => answer.into_inner().results,
            Err(s) if s.code() == Code::Unimplemented => return Verdict::Skip(NO_DECIDE.into()),
            Err(s) => return Verdict::Fail(format!("Decide failed: {}", said(&s))),
        };
        let codes: Vec<Code> = results.iter().map(|r| Code::from(r.code)).collect();
        let expected = [Code::Ok, Code::Ok, Code::FailedPrecondition];
        if codes != expected {
            return Verdict::Fail(format!(
                "Decide of [commit of a prepared transaction, abort of an unknown one, commit of \
                 one never prepared] answered {codes:?}, not {expected:?}"
            ));
        }
        if results[2].message.is_empty() {
            return Verdict::Fail("the FAILED_PRECONDITION result carries no message".into());
        }
        match self.committed(prepared, "closing").await {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        }
    }

    /// One `PrepareStream` call with a prepare of staged work (id 7) and one of a malformed id
    /// (id 3): a YES under id 7 and INVALID_ARGUMENT with a message under id 3, in either
    /// order. Skipped where `PrepareStream` is not implemented: the coordinator then sends
    /// Prepare calls.
    async fn streams_prepares(&self) -> Verdict {
        let txn = Self::fresh();
        if let Err(why) = self.stage(txn).await {
            return Verdict::Fail(why);
        }
        let streamed = |id, txn_id: String| StreamedPrepare {
            id,
            request: Some(PrepareRequest {
                txn_id,
                coordinator_endpoint: self.coordinator.clone(),
                timeout_ms: CALL_TIMEOUT.as_millis() as u64,
                ..Default::default()
            }),
        };
        let prepares = [
            streamed(7, txn.to_string()),
            streamed(3, "malformed".into()),
        ];
        let votes = match self.stream_prepares(prepares.to_vec()).await {
            Ok(votes) => votes,
            Err(s) if s.code() == Code::Unimplemented => {
                return Verdict::Skip(NO_PREPARE_STREAM.into())
            }
            Err(s) => return Verdict::Fail(format!("PrepareStream failed: {}", said(&s))),
        };
        let (yes, malformed) = (votes.get(&7), votes.get(&3));
        let voted_yes = yes.is_some_and(|v| {
            v.code == 0 && v.response.as_ref().is_some_and(|r| r.vote() == Vote::Yes)
        });
        if !voted_yes {
            return Verdict::Fail(format!(
                "the prepare of staged work (id 7) was answered {yes:?}, not a YES"
            ));
        }
        let refused = malformed
            .is_some_and(|v| Code::from(v.code) == Code::InvalidArgument && !v.message.is_empty());
        if !refused {
            return Verdict::Fail(format!(
                "the prepare of txn_id \"malformed\" (id 3) was answered {malformed:?}, not \
                 INVALID_ARGUMENT with a message"
            ));
        }
        match self.committed(txn, "closing").await {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        }
    }

    /// Sends `prepares` on one `PrepareStream` call, keeps it open until each is answered (or
    /// the call times out), and returns the answers by id.
    async fn stream_prepares(
        &self,
        prepares: Vec<StreamedPrepare>,
    ) -> Result<std::collections::HashMap<u64, StreamedVote>, Status> {
        let expected = prepares.len();
        let (send, outgoing) = tokio::sync::mpsc::unbounded_channel();
        for prepare in prepares {
            let _ = send.send(prepare);
        }
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(outgoing);
        let mut votes = self
            .participant
            .clone()
            .prepare_stream(stream)
            .await?
            .into_inner();
        let mut answers = std::collections::HashMap::new();
        while answers.len() < expected {
            match tokio::time::timeout(CALL_TIMEOUT, votes.message()).await {
                Ok(Ok(Some(vote))) => answers.insert(vote.id, vote),
                Ok(Ok(None)) => break,
                Ok(Err(status)) => return Err(status),
                Err(_) => break,
            };
        }
        drop(send);
        Ok(answers)
    }

    async fn resolves_in_doubt(&self) -> Result<(), String> {
        let txn = self.prepared_yes().await?;
        let patience = self.options.patience;
        let asked = self
            .stand_in
            .await_asked(txn, 1, Instant::now() + patience)
            .await;
        match asked.len() {
            0 => {
                return Err(format!(
                    "it never asked Resolve within {patience:?} of voting YES with no decision"
                ))
            }
            1 => {
                return Err(format!(
                    "after PENDING it did not ask again within {patience:?}"
                ))
            }
            _ => {}
        }
        // It asks every `interval` or so (perhaps backing off): once told COMMITTED, the next
        // ask gets that answer and there must be none after it.
        let interval = asked[1] - asked[0];
        self.stand_in.answer(txn, Outcome::Committed);
        let told = self
            .stand_in
            .await_asked(txn, asked.len(), Instant::now() + patience)
            .await;
        let quiet = Instant::now() + interval * 3 + Duration::from_secs(1);
        let after = self.stand_in.await_asked(txn, told.len(), quiet).await;
        if after.len() > told.len() {
            return Err(format!(
                "it asked Resolve {} more time(s) after being told COMMITTED: it did not act on \
                 the answer",
                after.len() - told.len()
            ));
        }
        self.committed(txn, "kit's own").await
    }

    async fn yes_survives_restart(&self) -> Verdict {
        let txn = match self.prepared_yes().await {
            Ok(txn) => txn,
            Err(why) => return Verdict::Fail(why),
        };
        if let Err(why) = self.restart().await {
            return why;
        }
        let after = match self.await_back(txn).await {
            Ok(after) => after,
            Err(why) => return Verdict::Fail(why),
        };
        let result = match after {
            (Vote::Yes, _) => self.committed(txn, "closing").await,
            (vote, reason) => Err(format!(
                "after the restart it voted {} ({reason:?}) on a transaction it had voted YES on: \
                 the YES was not durable",
                vote.as_str_name()
            )),
        };
        match result {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        }
    }

    /// Has the participant restarted; a Skip or Fail verdict if it cannot be.
    async fn restart(&self) -> Result<(), Verdict> {
        match &self.options.restart {
            Restart::Command(command) => {
                let status = tokio::process::Command::new("sh")
                    .args(["-c", command])
                    .status()
                    .await
                    .map_err(|e| Verdict::Fail(format!("cannot run {command:?}: {e}")))?;
                match status.success() {
                    true => Ok(()),
                    false => Err(Verdict::Fail(format!(
                        "the restart command {command:?} failed ({status})"
                    ))),
                }
            }
            Restart::AskOnTerminal => {
                eprintln!(
                    "conformance: restart the participant at {} now (kill it, start it again), \
                     then press Enter",
                    self.options.participant
                );
                let mut line = String::new();
                tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
                    .await
                    .map_err(|e| Verdict::Fail(e.to_string()))?
                    .map_err(|e| Verdict::Fail(format!("cannot read the terminal: {e}")))?;
                Ok(())
            }
            Restart::Unavailable => Err(Verdict::Skip(
                "no --restart-cmd given and no terminal to ask on".into(),
            )),
        }
    }

    /// Asks Prepare of `txn` until the restarted participant answers it (it may refuse as
    /// UNAVAILABLE while it recovers).
    async fn await_back(&self, txn: TxnId) -> Result<(Vote, String), String> {
        let until = Instant::now() + self.options.patience;
        loop {
            let status = match self.prepare_id(txn.to_string()).await {
                Ok(answer) => return Ok(answer),
                Err(status) => status,
            };
            let away = matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown
            );
            if !away || Instant::now() >= until {
                return Err(format!(
                    "after the restart, Prepare of the transaction it had voted YES on failed: {}",
                    said(&status)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
