//! Named crash points at protocol steps, for the crash suite. The `storage::` points are in the
//! durable database that the coordinator's log and participants' journals share: mid-checkpoint.
//!
//! With the `failpoints` feature, `crash_point!("coordinator::after_decision_durable")` is a
//! [`fail`] point: arming it with the action `return` (for example
//! `FAILPOINTS="coordinator::after_decision_durable=return"`, read at start) makes the process
//! abort there — as SIGKILL would: no destructors, no flush. Without the feature it compiles to
//! nothing. The `crash_point!` macro is the SDK's (its participant runtime has points too),
//! re-exported at this crate's root.

/// Every crash point, for the crash matrix.
pub const CRASH_POINTS: &[&str] = &[
    "coordinator::after_begin",
    "coordinator::after_enlist",
    "coordinator::before_prepare_send",
    "coordinator::after_prepare_send",
    "coordinator::after_all_votes",
    "coordinator::before_decision_write",
    "coordinator::after_decision_durable",
    "coordinator::before_phase2_send",
    "coordinator::after_phase2_send",
    "coordinator::before_end_record",
    "participant::before_prepared_record",
    "participant::after_prepared_record",
    "participant::before_vote_sent",
    "participant::before_commit_applied",
    "participant::after_commit_applied",
    "participant::before_ack",
    "storage::before_checkpoint_flush",
    "storage::after_redo_restart",
];
