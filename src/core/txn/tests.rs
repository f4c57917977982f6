//! Every event in every phase, including duplicates and late arrivals.

use super::*;

const PHASES: [Phase; 7] = [
    Phase::Active,
    Phase::Preparing,
    Phase::Deciding,
    Phase::Committing,
    Phase::Aborting,
    Phase::Committed,
    Phase::Aborted,
];

const POLICY: Policy = Policy {
    max_participants: 3,
    best_effort_attempts: 2,
};

fn enlist(name: &str) -> Event {
    Event::Enlist {
        name: name.into(),
        endpoint: format!("http://{name}:1"),
    }
}

fn vote(participant: usize, vote: Vote) -> Event {
    Event::Voted {
        participant,
        vote: Ok(vote),
    }
}

fn delivered(participant: usize, result: Result<(), &str>) -> Event {
    Event::Delivered {
        participant,
        result: result.map_err(String::from),
    }
}

fn deliver(participant: usize, outcome: Outcome, attempt: u32) -> Action {
    Action::Deliver {
        participant,
        outcome,
        attempt,
    }
}

fn apply(txn: &mut Transaction, event: Event) -> Vec<Action> {
    txn.handle(event).expect("event accepted")
}

/// A transaction with participants "a" and "b", driven into `phase`. In Aborting, "a" voted YES
/// and "b" voted NO, so only "a" awaits the abort.
fn in_phase(phase: Phase) -> Transaction {
    let mut txn = Transaction::new(POLICY);
    apply(&mut txn, enlist("a"));
    apply(&mut txn, enlist("b"));
    let steps: Vec<Event> = match phase {
        Phase::Active => vec![],
        Phase::Preparing => vec![Event::Commit],
        Phase::Deciding => vec![Event::Commit, vote(0, Vote::Yes), vote(1, Vote::Yes)],
        Phase::Committing => vec![
            Event::Commit,
            vote(0, Vote::Yes),
            vote(1, Vote::Yes),
            Event::Persisted,
        ],
        Phase::Committed => vec![
            Event::Commit,
            vote(0, Vote::Yes),
            vote(1, Vote::Yes),
            Event::Persisted,
            delivered(0, Ok(())),
            delivered(1, Ok(())),
        ],
        Phase::Aborting => vec![
            Event::Commit,
            vote(0, Vote::Yes),
            vote(1, Vote::No("broke".into())),
        ],
        Phase::Aborted => vec![
            Event::Commit,
            vote(0, Vote::Yes),
            vote(1, Vote::No("broke".into())),
            delivered(0, Ok(())),
        ],
    };
    for step in steps {
        apply(&mut txn, step);
    }
    assert_eq!(txn.phase(), phase);
    txn
}

/// Feeds `event` in every phase; `expect` gives the expected answer, and where it is `Ok(vec![])`
/// or an error, the transaction must be unchanged (except in the phases `quiet_changes` lists,
/// where the event updates state without asking for anything).
fn check_phases(
    event: Event,
    quiet_changes: &[Phase],
    expect: impl Fn(Phase) -> Result<Vec<Action>, Rejection>,
) {
    for phase in PHASES {
        let mut txn = in_phase(phase);
        let expected = expect(phase);
        let got = txn.handle(event.clone());
        assert_eq!(got, expected, "{event:?} in {phase:?}");
        let asked = matches!(got, Ok(ref actions) if !actions.is_empty());
        if !asked && !quiet_changes.contains(&phase) {
            assert_eq!(
                txn,
                in_phase(phase),
                "{event:?} in {phase:?} changed nothing"
            );
        }
    }
}

fn check_every_phase(event: Event, expect: impl Fn(Phase) -> Result<Vec<Action>, Rejection>) {
    check_phases(event, &[], expect)
}

#[test]
fn enlist_is_accepted_only_while_active() {
    check_every_phase(enlist("c"), |phase| match phase {
        Phase::Active => Ok(vec![Action::Record]),
        other => Err(Rejection::NotActive(other)),
    });
}

#[test]
fn enlisting_again_is_a_no_op_in_active() {
    check_every_phase(enlist("a"), |phase| match phase {
        Phase::Active => Ok(vec![]),
        other => Err(Rejection::NotActive(other)),
    });
}

#[test]
fn a_name_names_one_endpoint() {
    let mut txn = in_phase(Phase::Active);
    let other = Event::Enlist {
        name: "a".into(),
        endpoint: "http://elsewhere:1".into(),
    };
    assert_eq!(
        txn.handle(other),
        Err(Rejection::NameTaken {
            name: "a".into(),
            endpoint: "http://a:1".into()
        })
    );
}

#[test]
fn participants_are_limited() {
    let mut txn = in_phase(Phase::Active);
    apply(&mut txn, enlist("c"));
    assert_eq!(
        txn.handle(enlist("d")),
        Err(Rejection::TooManyParticipants(3))
    );
    assert_eq!(txn.participants().len(), 3);
}

#[test]
fn commit_prepares_every_participant_once() {
    check_every_phase(Event::Commit, |phase| match phase {
        Phase::Active => Ok(vec![
            Action::Prepare { participant: 0 },
            Action::Prepare { participant: 1 },
        ]),
        _ => Ok(vec![]),
    });
}

#[test]
fn commit_after_an_explicit_abort_is_refused() {
    let mut txn = in_phase(Phase::Active);
    apply(
        &mut txn,
        Event::Abort {
            reason: "user".into(),
        },
    );
    assert_eq!(
        txn.handle(Event::Commit),
        Err(Rejection::AbortedBeforeCommit("user".into()))
    );
}

#[test]
fn commit_without_participants_still_forces_the_decision() {
    let mut txn = Transaction::new(POLICY);
    assert_eq!(apply(&mut txn, Event::Commit), vec![Action::Persist]);
    assert_eq!(apply(&mut txn, Event::Persisted), vec![Action::Finish]);
    assert_eq!(txn.phase(), Phase::Committed);
}

#[test]
fn abort_is_accepted_until_the_decision() {
    check_every_phase(Event::Abort { reason: "r".into() }, |phase| match phase {
        Phase::Active | Phase::Preparing => Ok(vec![
            Action::Record,
            deliver(0, Outcome::Aborted, 0),
            deliver(1, Outcome::Aborted, 0),
        ]),
        Phase::Deciding => Err(Rejection::Deciding),
        Phase::Committing | Phase::Committed => Err(Rejection::Committed),
        Phase::Aborting | Phase::Aborted => Ok(vec![]),
    });
}

#[test]
fn deadline_aborts_only_undecided_transactions() {
    check_every_phase(Event::DeadlinePassed, |phase| match phase {
        Phase::Active | Phase::Preparing => Ok(vec![
            Action::Record,
            deliver(0, Outcome::Aborted, 0),
            deliver(1, Outcome::Aborted, 0),
        ]),
        _ => Ok(vec![]),
    });
    let mut txn = in_phase(Phase::Active);
    apply(&mut txn, Event::DeadlinePassed);
    assert!(txn.reason().unwrap().contains("deadline"));
}

#[test]
fn all_yes_or_read_only_asks_to_persist_the_decision() {
    let mut txn = in_phase(Phase::Preparing);
    assert_eq!(apply(&mut txn, vote(0, Vote::ReadOnly)), vec![]);
    assert_eq!(apply(&mut txn, vote(1, Vote::Yes)), vec![Action::Persist]);
    assert_eq!(txn.phase(), Phase::Deciding);
    // Nothing depends on the decision before it is durable.
    assert_eq!(txn.phase().outcome(), None);
}

#[test]
fn a_no_vote_aborts_naming_the_participant() {
    let mut txn = in_phase(Phase::Preparing);
    let actions = apply(&mut txn, vote(1, Vote::No("insufficient funds".into())));
    assert_eq!(
        actions,
        vec![Action::Record, deliver(0, Outcome::Aborted, 0)]
    );
    assert_eq!(
        txn.reason(),
        Some("participant \"b\" voted no: insufficient funds")
    );
}

#[test]
fn a_missing_vote_aborts_naming_the_participant() {
    let mut txn = in_phase(Phase::Preparing);
    apply(&mut txn, vote(0, Vote::Yes));
    let actions = apply(
        &mut txn,
        Event::Voted {
            participant: 1,
            vote: Err("timed out after 5ms".into()),
        },
    );
    assert_eq!(
        actions,
        vec![
            Action::Record,
            deliver(0, Outcome::Aborted, 0),
            deliver(1, Outcome::Aborted, 0)
        ]
    );
    assert_eq!(
        txn.reason(),
        Some("participant \"b\" did not vote: timed out after 5ms")
    );
    assert_eq!(txn.participants()[0].delivery, Delivery::Required);
    assert_eq!(txn.participants()[1].delivery, Delivery::BestEffort);
}

#[test]
fn votes_outside_preparing_change_no_phase() {
    for phase in PHASES {
        for event in [
            vote(0, Vote::Yes),
            vote(1, Vote::No("late".into())),
            vote(7, Vote::Yes),
        ] {
            let mut txn = in_phase(phase);
            let actions = apply(&mut txn, event.clone());
            if phase != Phase::Preparing {
                assert_eq!(actions, vec![], "{event:?} in {phase:?}");
                assert_eq!(txn.phase(), phase);
            }
        }
    }
}

#[test]
fn a_duplicate_vote_is_ignored() {
    let mut txn = in_phase(Phase::Preparing);
    apply(&mut txn, vote(0, Vote::Yes));
    let before = txn.clone();
    assert_eq!(
        apply(&mut txn, vote(0, Vote::No("changed mind".into()))),
        vec![]
    );
    assert_eq!(txn, before);
}

#[test]
fn persisted_starts_phase_two_only_in_deciding() {
    check_every_phase(Event::Persisted, |phase| match phase {
        Phase::Deciding => Ok(vec![
            deliver(0, Outcome::Committed, 0),
            deliver(1, Outcome::Committed, 0),
        ]),
        _ => Ok(vec![]),
    });
}

#[test]
fn read_only_voters_take_no_part_in_phase_two() {
    let mut txn = in_phase(Phase::Preparing);
    apply(&mut txn, vote(0, Vote::ReadOnly));
    apply(&mut txn, vote(1, Vote::ReadOnly));
    assert_eq!(apply(&mut txn, Event::Persisted), vec![Action::Finish]);
    assert_eq!(txn.phase(), Phase::Committed);
}

#[test]
fn acknowledgements_finish_phase_two() {
    check_phases(
        delivered(0, Ok(())),
        &[Phase::Committing],
        |phase| match phase {
            Phase::Aborting => Ok(vec![Action::Finish]),
            _ => Ok(vec![]),
        },
    );
    let mut txn = in_phase(Phase::Committing);
    assert_eq!(apply(&mut txn, delivered(0, Ok(()))), vec![]);
    assert_eq!(
        apply(&mut txn, delivered(0, Ok(()))),
        vec![],
        "duplicate ack"
    );
    assert_eq!(apply(&mut txn, delivered(1, Ok(()))), vec![Action::Finish]);
    assert_eq!(txn.phase(), Phase::Committed);
}

#[test]
fn a_failed_commit_delivery_is_retried_forever() {
    let mut txn = in_phase(Phase::Committing);
    for attempt in 1..=50 {
        assert_eq!(
            apply(&mut txn, delivered(1, Err("connection refused"))),
            vec![deliver(1, Outcome::Committed, attempt)]
        );
    }
    let b = &txn.participants()[1];
    assert_eq!(
        (b.attempts, b.last_error.as_deref()),
        (50, Some("connection refused"))
    );
    apply(&mut txn, delivered(0, Ok(())));
    assert_eq!(apply(&mut txn, delivered(1, Ok(()))), vec![Action::Finish]);
}

#[test]
fn best_effort_aborts_give_up_after_their_attempts() {
    let mut txn = in_phase(Phase::Active);
    apply(&mut txn, Event::Abort { reason: "r".into() });
    apply(&mut txn, delivered(0, Ok(())));
    assert_eq!(
        apply(&mut txn, delivered(1, Err("down"))),
        vec![deliver(1, Outcome::Aborted, 1)]
    );
    assert_eq!(
        apply(&mut txn, delivered(1, Err("down"))),
        vec![Action::Finish]
    );
    assert_eq!(txn.participants()[1].delivery, Delivery::GaveUp);
    assert_eq!(txn.phase(), Phase::Aborted);
}

#[test]
fn required_aborts_are_retried_forever() {
    let mut txn = in_phase(Phase::Aborting);
    for attempt in 1..=10 {
        assert_eq!(
            apply(&mut txn, delivered(0, Err("down"))),
            vec![deliver(0, Outcome::Aborted, attempt)]
        );
    }
}

#[test]
fn recovery_redelivers_a_durable_commit() {
    let mut yes = Participant::new("a", "http://a:1");
    yes.vote = Some(Vote::Yes);
    let mut read_only = Participant::new("b", "http://b:1");
    read_only.vote = Some(Vote::ReadOnly);
    let (txn, actions) = Transaction::recover(
        vec![yes, read_only],
        Some(Outcome::Committed),
        None,
        true,
        POLICY,
    );
    assert_eq!(actions, vec![deliver(0, Outcome::Committed, 0)]);
    assert_eq!(txn.phase(), Phase::Committing);
}

#[test]
fn recovery_aborts_an_undecided_transaction_and_tells_everyone() {
    let participants = vec![
        Participant::new("a", "http://a:1"),
        Participant::new("b", "http://b:1"),
    ];
    let (txn, actions) = Transaction::recover(participants, None, None, false, POLICY);
    assert_eq!(
        actions,
        vec![
            Action::Record,
            deliver(0, Outcome::Aborted, 0),
            deliver(1, Outcome::Aborted, 0)
        ]
    );
    assert_eq!(txn.phase(), Phase::Aborting);
    assert!(txn.reason().unwrap().contains("restarted"));
}

#[test]
fn a_commit_retried_after_recovery_aborted_it_hears_the_abort() {
    let participants = vec![Participant::new("a", "http://a:1")];
    let (mut txn, _) = Transaction::recover(participants, None, None, false, POLICY);
    assert_eq!(txn.handle(Event::Commit), Ok(vec![]));
    assert_eq!(txn.phase().outcome(), Some(Outcome::Aborted));
    assert!(
        txn.commit_requested(),
        "its record must answer a later Commit too"
    );
}

#[test]
fn recovery_of_an_undecided_transaction_without_participants_finishes_it() {
    let (txn, actions) = Transaction::recover(vec![], None, None, false, POLICY);
    assert_eq!(actions, vec![Action::Record, Action::Finish]);
    assert_eq!(txn.phase(), Phase::Aborted);
}

fn settle(outcome: Outcome) -> Event {
    Event::SettleByHand {
        outcome,
        reason: "the stock service is gone".into(),
    }
}

#[test]
fn settling_by_hand_never_contradicts_a_decision() {
    for phase in PHASES {
        for outcome in [Outcome::Committed, Outcome::Aborted] {
            let mut txn = in_phase(phase);
            let decided = phase.outcome();
            let result = txn.handle(settle(outcome));
            if decided.is_some_and(|d| d != outcome) {
                assert!(result.is_err(), "{phase:?} settled as {outcome:?}");
                assert_eq!(txn, in_phase(phase), "a refusal changes nothing");
            }
            if result.is_ok() {
                assert!(
                    txn.phase().outcome().is_none_or(|now| now == outcome),
                    "{phase:?} settled as {outcome:?} ended {:?}",
                    txn.phase()
                );
            }
        }
    }
}

#[test]
fn a_commit_by_hand_needs_every_participants_yes() {
    let mut txn = in_phase(Phase::Preparing);
    apply(&mut txn, vote(0, Vote::Yes));
    assert_eq!(
        txn.handle(settle(Outcome::Committed)),
        Err(Rejection::NotAllYes(vec!["b".into()]))
    );
    assert_eq!(txn.phase(), Phase::Preparing);
}

#[test]
fn an_undecided_transaction_settled_as_abort_is_aborted_and_delivered() {
    let mut txn = in_phase(Phase::Preparing);
    apply(&mut txn, vote(0, Vote::Yes));
    let actions = apply(&mut txn, settle(Outcome::Aborted));
    assert_eq!(txn.phase(), Phase::Aborting);
    assert!(txn.reason().unwrap().starts_with("settled by hand: "));
    assert!(
        actions.contains(&deliver(0, Outcome::Aborted, 0)),
        "{actions:?}"
    );
}

#[test]
fn a_decided_transaction_settled_by_hand_stops_delivering_and_finishes() {
    let mut txn = in_phase(Phase::Committing);
    apply(&mut txn, delivered(0, Ok(())));
    apply(&mut txn, delivered(1, Err("gone")));
    assert_eq!(
        apply(&mut txn, settle(Outcome::Committed)),
        vec![Action::Finish]
    );
    assert_eq!(txn.phase(), Phase::Committed);
    let deliveries: Vec<Delivery> = txn.participants().iter().map(|p| p.delivery).collect();
    assert_eq!(deliveries, [Delivery::Acked, Delivery::SettledByHand]);
    assert_eq!(
        apply(&mut txn, delivered(1, Ok(()))),
        vec![],
        "a late ack changes nothing"
    );
    assert_eq!(txn.participants()[1].delivery, Delivery::SettledByHand);
}
