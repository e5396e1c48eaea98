//! Inputs at the edges of their types, and the error kind each refusal carries.

mod common;

use scheduler::Policy;
use simulator::{simulate, BatchEntry, RouterKind, SimulatorError, Workload};

#[test]
fn batch_sums_are_wide_enough_for_any_batch() {
    let cost = common::cost_model(1);
    let huge = BatchEntry {
        num_tokens: u32::MAX,
        num_computed_tokens: u32::MAX,
        is_prefill: false,
        produces_token: true,
    };
    let time = cost.predict([huge, huge]);
    let max = u64::from(u32::MAX);
    assert_eq!(time.num_tokens, 2 * max);
    assert_eq!(time.decode_context_tokens, 4 * max);
    assert!(time.latency_s() > cost.predict([huge]).latency_s());
}

#[test]
fn sampling_costs_only_the_sequences_that_produce_a_token() {
    let cost = common::cost_model(1);
    let chunk = BatchEntry {
        num_tokens: 200,
        num_computed_tokens: 0,
        is_prefill: true,
        produces_token: false,
    };
    let decode = BatchEntry {
        num_tokens: 1,
        num_computed_tokens: 300,
        is_prefill: false,
        produces_token: true,
    };
    let time = cost.predict([chunk, decode]);
    // Sample one sequence, process the outputs of both (50 µs + 1 µs per sequence each).
    let expected = (5e-5 + 1e-6) + (5e-5 + 2e-6);
    assert!(
        (time.cpu_after_s - expected).abs() < 1e-15,
        "{}",
        time.cpu_after_s
    );
}

#[test]
fn a_malformed_deployment_is_a_deployment_error() {
    let error = RouterKind::from_name("fastest").unwrap_err();
    assert!(matches!(error, SimulatorError::InvalidDeployment(_)));
    assert_eq!(
        error.to_string(),
        "invalid deployment: unknown router \"fastest\"; expected one of round_robin, least_outstanding, random, prefix_affinity"
    );
    let workload = Workload::new(vec![0.0], vec![10], vec![1]).unwrap();
    let error = simulate(
        &common::config(0, RouterKind::RoundRobin, 0),
        &common::scheduler_config(Policy::Sarathi),
        &common::cost_model(1),
        &workload,
    )
    .unwrap_err();
    assert_eq!(
        error,
        SimulatorError::InvalidDeployment("a deployment needs at least one replica".into())
    );
}
