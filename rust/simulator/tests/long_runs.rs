//! Conservation, Little's law and determinism on long runs, and properties over random ones.

mod common;

use proptest::prelude::*;
use scheduler::{Policy, SchedulerConfig};
use simulator::{simulate, RouterKind, SimulationOutput, Workload};

fn run(
    policy: Policy,
    replicas: u32,
    router: RouterKind,
    seed: u64,
    w: &Workload,
) -> SimulationOutput {
    let scheduler = SchedulerConfig {
        enable_prefix_caching: router == RouterKind::PrefixAffinity,
        ..common::scheduler_config(policy)
    };
    simulate(
        &common::config(replicas, router, seed),
        &scheduler,
        &common::cost_model(1),
        w,
    )
    .unwrap()
}

fn check_conservation(w: &Workload, out: &SimulationOutput) {
    let r = &out.requests;
    assert!(r.rejections.is_empty());
    assert_eq!(r.num_finished(), w.len(), "every request finishes");
    let produced: u64 = r.num_tokens.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(
        produced,
        w.total_output_tokens(),
        "tokens out = tokens asked for"
    );
    for i in 0..w.len() {
        let start = r.token_offsets[i] as usize;
        let times = &r.token_times[start..start + r.num_tokens[i] as usize];
        assert!(times[0] > w.arrival_times[i]);
        assert!(
            times.windows(2).all(|p| p[0] < p[1]),
            "token times increase"
        );
        assert_eq!(r.finished_s[i], *times.last().unwrap());
    }
}

#[test]
fn every_request_finishes_and_littles_law_holds() {
    let w = common::workload(3000, 8.0, 11);
    let out = run(Policy::Sarathi, 1, RouterKind::RoundRobin, 0, &w);
    check_conservation(&w, &out);
    // Little's law: the time-average number in the system (from the scheduler's own queue
    // counts, weighted by iteration length) equals arrival rate times mean time in system.
    let it = &out.iterations;
    let span = out.requests.finished_s.iter().cloned().fold(0.0, f64::max);
    let mut area = 0.0;
    for i in 0..it.len() {
        let in_system = f64::from(it.num_waiting[i] + it.num_running[i]);
        area += in_system * (it.end_s[i] - it.start_s[i]);
    }
    let mean_in_system = area / span;
    let mean_sojourn: f64 = (0..w.len())
        .map(|i| out.requests.finished_s[i] - w.arrival_times[i])
        .sum::<f64>()
        / w.len() as f64;
    let arrival_rate = w.len() as f64 / span;
    let predicted = arrival_rate * mean_sojourn;
    let error = (mean_in_system - predicted).abs() / predicted;
    assert!(error < 0.05, "L = {mean_in_system}, lambda W = {predicted}");
}

#[test]
fn the_same_seed_gives_bit_identical_results() {
    let w = common::workload(800, 30.0, 5);
    let a = run(Policy::Sarathi, 3, RouterKind::Random, 42, &w);
    let b = run(Policy::Sarathi, 3, RouterKind::Random, 42, &w);
    assert_eq!(a, b);
    let c = run(Policy::Sarathi, 3, RouterKind::Random, 43, &w);
    assert_ne!(a.requests.replica, c.requests.replica);
}

#[test]
fn routers_spread_requests_over_replicas() {
    let w = common::workload(900, 30.0, 3);
    for router in RouterKind::ALL {
        let out = run(Policy::Sarathi, 3, router, 1, &w);
        check_conservation(&w, &out);
        for replica in 0..3 {
            let count = out
                .requests
                .replica
                .iter()
                .filter(|&&r| r == replica)
                .count();
            assert!(
                count > 200,
                "{router:?} gave replica {replica} only {count}"
            );
        }
    }
    let out = run(Policy::Sarathi, 3, RouterKind::RoundRobin, 1, &w);
    assert!(out
        .requests
        .replica
        .iter()
        .enumerate()
        .all(|(i, &r)| r == (i % 3) as u32));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_policy_conserves_requests_and_tokens(
        policy_index in 0usize..5,
        num_requests in 1usize..150,
        rate in 1.0f64..200.0,
        seed in 0u64..1000,
        replicas in 1u32..4,
    ) {
        let w = common::workload(num_requests, rate, seed);
        let out = run(Policy::ALL[policy_index], replicas, RouterKind::LeastOutstanding, seed, &w);
        check_conservation(&w, &out);
    }
}
