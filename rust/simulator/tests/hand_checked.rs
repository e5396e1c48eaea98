//! Runs small enough to check by hand against the cost model's own predictions.

mod common;

use scheduler::Policy;
use simulator::{simulate, BatchEntry, RouterKind, Workload};

#[test]
fn one_request_on_an_idle_replica_gets_its_predicted_prefill_then_decode_times() {
    let cost = common::cost_model(1);
    let (arrival, prompt, output) = (3.0, 200u32, 5u32);
    let workload = Workload::new(vec![arrival], vec![prompt], vec![output]).unwrap();
    let out = simulate(
        &common::config(1, RouterKind::RoundRobin, 0),
        &common::scheduler_config(Policy::Sarathi),
        &cost,
        &workload,
    )
    .unwrap();

    let prefill = cost
        .predict([BatchEntry {
            num_tokens: prompt,
            num_computed_tokens: 0,
            is_prefill: true,
            produces_token: true,
        }])
        .latency_s();
    let times = &out.requests.token_times;
    assert_eq!(out.requests.num_tokens[0], output);
    assert!((times[0] - (arrival + prefill)).abs() < 1e-12);
    for k in 1..output as usize {
        let decode = cost
            .predict([BatchEntry {
                num_tokens: 1,
                num_computed_tokens: prompt + k as u32 - 1,
                is_prefill: false,
                produces_token: true,
            }])
            .latency_s();
        assert!(
            (times[k] - times[k - 1] - decode).abs() < 1e-12,
            "token {k}"
        );
    }
    assert_eq!(out.requests.finished_s[0], times[output as usize - 1]);
    assert_eq!(out.requests.first_scheduled_s[0], arrival);
    assert_eq!(out.num_iterations, u64::from(output));
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_of_the_token_budget() {
    let cost = common::cost_model(1);
    let workload = Workload::new(vec![0.0], vec![600], vec![2]).unwrap();
    let out = simulate(
        &common::config(1, RouterKind::RoundRobin, 0),
        &common::scheduler_config(Policy::Sarathi),
        &cost,
        &workload,
    )
    .unwrap();
    // 600 tokens under a 256-token budget: chunks of 256, 256 and 88, then one decode.
    assert_eq!(out.iterations.num_prefill_tokens, [256, 256, 88, 0]);
    let chunks = [(256, 0, false), (256, 256, false), (88, 512, true)];
    let expected: f64 = chunks
        .iter()
        .map(|&(num_tokens, num_computed_tokens, produces_token)| {
            cost.predict([BatchEntry {
                num_tokens,
                num_computed_tokens,
                is_prefill: true,
                produces_token,
            }])
            .latency_s()
        })
        .sum();
    assert!((out.requests.token_times[0] - expected).abs() < 1e-12);
}

#[test]
fn pipeline_stages_overlap_successive_batches() {
    // 64 short requests at once under a 256-token budget are admitted 8 per batch into a
    // 4-stage pipeline and then decode in groups that follow each other one stage apart.
    let stages = 4;
    let cost = common::cost_model(stages);
    let n = 64;
    let workload = Workload::new(vec![0.0; n], vec![32; n], vec![50; n]).unwrap();
    let scheduler = common::scheduler_config(Policy::Sarathi);
    let out = simulate(
        &common::config(1, RouterKind::RoundRobin, 0),
        &scheduler,
        &cost,
        &workload,
    )
    .unwrap();
    let ends = &out.iterations.end_s;
    let gaps: Vec<f64> = ends.windows(2).map(|w| w[1] - w[0]).collect();
    let median_gap = {
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let one_pass = cost
        .predict((0..n / stages as usize).map(|_| BatchEntry {
            num_tokens: 1,
            num_computed_tokens: 40,
            is_prefill: false,
            produces_token: true,
        }))
        .latency_s();
    assert!(
        median_gap < one_pass / 2.0,
        "median gap {median_gap} vs pass {one_pass}"
    );
    // At most `stages` batches overlap at any moment.
    for (i, &start) in out.iterations.start_s.iter().enumerate() {
        let overlapping = (0..i).filter(|&j| ends[j] > start).count();
        assert!(overlapping < stages as usize);
    }
    assert_eq!(out.requests.num_finished(), n);
}

#[test]
fn rejected_requests_are_reported_and_the_rest_still_run() {
    let cost = common::cost_model(1);
    let workload = Workload::new(vec![0.0, 0.0], vec![5000, 10], vec![3, 3]).unwrap();
    let out = simulate(
        &common::config(1, RouterKind::RoundRobin, 0),
        &common::scheduler_config(Policy::Sarathi),
        &cost,
        &workload,
    )
    .unwrap();
    assert_eq!(out.requests.rejections.len(), 1);
    assert_eq!(out.requests.rejections[0].0, 0);
    assert!(out.requests.rejections[0].1.contains("max_model_len"));
    assert_eq!(out.requests.finish_reason, [0, 1]);
}

#[test]
fn the_lm_head_runs_only_when_the_batch_samples_a_token() {
    let cost = common::cost_model(1);
    let chunk = |produces_token| {
        cost.predict([BatchEntry {
            num_tokens: 100,
            num_computed_tokens: 0,
            is_prefill: true,
            produces_token,
        }])
    };
    let (silent, sampling) = (chunk(false), chunk(true));
    assert_eq!(silent.last_stage_extra_s, 0.0);
    assert_eq!(sampling.last_stage_extra_s, 5e-4);
}
