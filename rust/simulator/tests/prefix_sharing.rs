//! Shared prefixes and sessions: closed-loop turns, cached prompt tokens, the prefill charged
//! only for what the cache lacks, and the prefix-affinity router, checked by hand.

mod common;

use scheduler::{Policy, SchedulerConfig};
use simulator::{simulate, BatchEntry, RouterKind, SimulationOutput, Workload, NO_PREDECESSOR};

const NONE: u32 = NO_PREDECESSOR;

fn caching() -> SchedulerConfig {
    SchedulerConfig {
        enable_prefix_caching: true,
        ..common::scheduler_config(Policy::Sarathi)
    }
}

fn run(
    replicas: u32,
    router: RouterKind,
    scheduler: &SchedulerConfig,
    w: &Workload,
) -> SimulationOutput {
    simulate(
        &common::config(replicas, router, 0),
        scheduler,
        &common::cost_model(1),
        w,
    )
    .unwrap()
}

fn first_token_s(out: &SimulationOutput, request: usize) -> f64 {
    out.requests.token_times[out.requests.token_offsets[request] as usize]
}

#[test]
fn a_later_turn_is_sent_its_think_time_after_the_turn_before_ended() {
    // One session of three turns (40 + 8 out, then +8 +10 out, then +10 +4 out) and an
    // unrelated request; the listed arrival of a later turn is only its earliest.
    let w = Workload::new(
        vec![0.0, 0.0, 0.5, 1.0],
        vec![40, 30, 56, 76],
        vec![8, 5, 10, 4],
    )
    .unwrap()
    .with_prefix_sharing(0, vec![NONE, NONE, 0, 2], vec![0.0, 0.0, 0.25, 0.25])
    .unwrap();
    for scheduler in [common::scheduler_config(Policy::Sarathi), caching()] {
        let out = run(1, RouterKind::RoundRobin, &scheduler, &w);
        let r = &out.requests;
        assert_eq!(r.num_finished(), 4);
        assert_eq!(r.arrival_s[..2], [0.0, 0.0]);
        assert_eq!(r.arrival_s[2], r.finished_s[0] + 0.25);
        assert_eq!(r.arrival_s[3], r.finished_s[2] + 0.25);
        assert!(first_token_s(&out, 2) > r.arrival_s[2]);
    }
}

#[test]
fn turns_find_their_conversation_cached_and_skip_its_prefill() {
    // Turn 1: 40 prompt tokens, 8 out, so 47 computed: 2 full blocks of 16 are cached when it
    // ends. Turn 2 (40 + 8 + 20 = 68 tokens) finds those 32; the lone request 2 arrives later
    // and finds the shared 24-token prefix's one full block (16).
    let w = Workload::new(vec![0.0, 0.0, 5.0], vec![40, 68, 50], vec![8, 3, 2])
        .unwrap()
        .with_prefix_sharing(24, vec![NONE, 0, NONE], vec![0.0, 0.0, 0.0])
        .unwrap();
    let out = run(1, RouterKind::RoundRobin, &caching(), &w);
    assert_eq!(out.requests.num_cached_tokens, [0, 32, 16]);
    let uncached = run(
        1,
        RouterKind::RoundRobin,
        &common::scheduler_config(Policy::Sarathi),
        &w,
    );
    assert_eq!(uncached.requests.num_cached_tokens, [0, 0, 0]);

    // The turn runs alone: its first token comes one predicted prefill of its 36 uncached
    // tokens after 32 cached ones after it arrives (36 <= the 256-token budget: one chunk).
    let cost = common::cost_model(1);
    let prefill = |num_tokens, num_computed_tokens| {
        cost.predict([BatchEntry {
            num_tokens,
            num_computed_tokens,
            is_prefill: true,
            produces_token: true,
        }])
        .latency_s()
    };
    let ttft = first_token_s(&out, 1) - out.requests.arrival_s[1];
    assert!((ttft - prefill(36, 32)).abs() < 1e-12, "{ttft}");
    let ttft = first_token_s(&uncached, 1) - uncached.requests.arrival_s[1];
    assert!((ttft - prefill(68, 0)).abs() < 1e-12, "{ttft}");
    assert!(prefill(36, 32) < prefill(68, 0));
}

#[test]
fn prefix_affinity_sends_a_turn_to_the_replica_holding_its_conversation() {
    // A (0) and B (1) are short; F, G, H (2-4) long and a moment later; A's next turn (5)
    // follows A. On two replicas A, F, H land on replica 0 and B, G on replica 1 (least
    // outstanding, lowest id on ties: no prompt is cached anywhere yet). When turn 5 comes, B
    // has ended, so replica 1 has 1 request outstanding and replica 0 has 2, but only replica 0
    // holds A's first 64 prompt tokens (A computed 64 + 1).
    let w = Workload::new(
        vec![0.0, 0.0, 1e-3, 1e-3, 1e-3, 1e-3],
        vec![64, 64, 64, 64, 64, 86],
        vec![2, 2, 100, 100, 100, 2],
    )
    .unwrap()
    .with_prefix_sharing(
        0,
        vec![NONE, NONE, NONE, NONE, NONE, 0],
        vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.05],
    )
    .unwrap();
    let affinity = run(2, RouterKind::PrefixAffinity, &caching(), &w);
    assert_eq!(affinity.requests.replica, [0, 1, 0, 1, 0, 0]);
    assert_eq!(affinity.requests.num_cached_tokens[5], 64);
    let least = run(2, RouterKind::LeastOutstanding, &caching(), &w);
    assert_eq!(least.requests.replica, [0, 1, 0, 1, 0, 1]);
    assert_eq!(least.requests.num_cached_tokens[5], 0);
    assert!(least.requests.finished_s[1] < affinity.requests.arrival_s[5]);
}

#[test]
fn prefix_affinity_needs_prefix_caching() {
    let w = Workload::new(vec![0.0], vec![10], vec![1]).unwrap();
    let error = simulate(
        &common::config(2, RouterKind::PrefixAffinity, 0),
        &common::scheduler_config(Policy::Sarathi),
        &common::cost_model(1),
        &w,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("needs the scheduler's enable_prefix_caching"),
        "{error}"
    );
}
