//! Model checking of the protocol: the production core ([`verdict::core::Transaction`]) with
//! participants that keep the participant contract, a network that loses, duplicates, delays
//! and reorders, and crashes of any process at any point — explored exhaustively for a budget
//! of faults, once as a single node and once as a cluster whose leader changes.
//!
//! `cargo test --release --test model` runs CI's size; `-- --ignored` the deeper runs. Each
//! prints the states it explored. See README "How Verdict is verified".

mod participant;
mod properties;
mod system;
mod trace;

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model};

use properties::SAFETY;
use system::{Bug, System, Topology};

/// What one exhaustive run found.
struct Run {
    states: usize,
    depth: usize,
    took: Duration,
    /// Whether every reachable state was explored (else the run stopped at its state bound).
    complete: bool,
    /// Each safety property broken, with its counterexample.
    broken: Vec<(&'static str, String)>,
    /// The reachability checks that found their state.
    reached: Vec<&'static str>,
}

/// Explores `system` breadth first, up to `bound` states; stops at the first broken property.
fn explore(system: &System, bound: usize) -> Run {
    let started = Instant::now();
    let checker = system
        .clone()
        .checker()
        .threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .target_state_count(bound)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let discoveries = checker.discoveries();
    let broken = SAFETY
        .iter()
        .filter_map(|&name| {
            let path = discoveries.get(name)?.clone().into_vec();
            Some((name, trace::render(system, path)))
        })
        .collect();
    let reached = system
        .properties()
        .iter()
        .map(|p| p.name)
        .filter(|name| !SAFETY.contains(name) && discoveries.contains_key(name))
        .collect();
    Run {
        states: checker.unique_state_count(),
        depth: checker.max_depth(),
        took: started.elapsed(),
        complete: checker.state_count() < bound,
        broken,
        reached,
    }
}

/// Checks `system` to `bound` states: every safety property holds, and the model reaches
/// what it should (so that it is not vacuous).
fn verify(name: &str, system: System, bound: usize) {
    let run = explore(&system, bound);
    println!(
        "{name}: {} states, depth {}, {} in {:.1?} ({} participants, {} faults)",
        run.states,
        run.depth,
        if run.complete { "complete" } else { "bounded" },
        run.took,
        system.participants,
        system.faults,
    );
    for (property, trace) in &run.broken {
        println!("  broken: {property}\n{trace}");
    }
    assert!(run.broken.is_empty(), "{name}: a property is broken");
    for expected in [
        "committed everywhere",
        "aborted everywhere",
        "a new process re-drives a commit",
    ] {
        assert!(
            run.reached.contains(&expected),
            "{name}: the model never reached {expected:?}: it may be vacuous"
        );
    }
}

/// Checks that `bug` breaks a safety property, and prints the counterexample.
fn catch(system: System, bug: Bug, bound: usize) {
    let run = explore(&system.with_bug(bug), bound);
    let Some((property, trace)) = run.broken.first() else {
        panic!(
            "seeded bug {bug:?} not caught in {} states ({})",
            run.states,
            if run.complete { "complete" } else { "bounded" }
        );
    };
    println!(
        "seeded bug {bug:?}: caught after {} states in {:.1?}: {property}\n{trace}",
        run.states, run.took
    );
}

/// More than CI's runs explore (they are complete below it): a guard, should the model grow.
const CI_STATES: usize = 10_000_000;

/// One fault, anywhere: a crash at every point of every process, each message lost,
/// duplicated or overtaken, each timer firing early.
#[test]
fn a_single_node_keeps_every_property_through_any_one_fault() {
    verify(
        "single node",
        System::new(Topology::SingleNode, 3, 1),
        CI_STATES,
    );
}

#[test]
fn a_cluster_keeps_every_property_through_a_leader_change_anywhere() {
    verify("cluster", System::new(Topology::Cluster, 3, 1), CI_STATES);
}

#[test]
fn the_checker_catches_every_seeded_bug() {
    for bug in Bug::ALL {
        let topology = match bug {
            Bug::ResolveBeforeFirstEntry => Topology::Cluster,
            _ => Topology::SingleNode,
        };
        catch(System::new(topology, 3, 1), bug, CI_STATES);
    }
}

#[test]
#[ignore = "the deeper run: minutes; see README \"How Verdict is verified\""]
fn deeper_a_single_node_through_two_faults() {
    verify(
        "single node, deeper",
        System::new(Topology::SingleNode, 3, 2),
        usize::MAX,
    );
}

#[test]
#[ignore = "the deeper run: minutes; see README \"How Verdict is verified\""]
fn deeper_a_cluster_through_two_faults() {
    verify(
        "cluster, deeper",
        System::new(Topology::Cluster, 3, 2),
        usize::MAX,
    );
}
