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
fn a_malformed_deployment_is_a_deployment_error() {
    let error = RouterKind::from_name("fastest").unwrap_err();
    assert!(matches!(error, SimulatorError::InvalidDeployment(_)));
    assert_eq!(
        error.to_string(),
        "invalid deployment: unknown router \"fastest\"; expected one of round_robin, least_outstanding, random"
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
