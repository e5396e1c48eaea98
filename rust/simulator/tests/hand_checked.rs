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

#[test]
fn async_scheduling_hides_the_engine_time_behind_the_workers() {
    // One request decoding alone: synchronously every token costs the engine's time, the
    // workers' host time and the forward pass in series; with async scheduling the engine
    // schedules the next decode while the current one runs, so only the workers' part remains.
    let cost = common::cost_model(1);
    let (prompt, output) = (100u32, 6u32);
    let workload = Workload::new(vec![0.0], vec![prompt], vec![output]).unwrap();
    let run = |asynchronous: bool| {
        let scheduler = scheduler::SchedulerConfig {
            async_scheduling: asynchronous,
            max_batches_in_flight: if asynchronous { 2 } else { 1 },
            ..common::scheduler_config(Policy::Sarathi)
        };
        simulate(
            &common::config(1, RouterKind::RoundRobin, 0),
            &scheduler,
            &cost,
            &workload,
        )
        .unwrap()
    };
    let decode = |k: u32| {
        cost.predict([BatchEntry {
            num_tokens: 1,
            num_computed_tokens: prompt + k - 1,
            is_prefill: false,
            produces_token: true,
        }])
    };
    let (sync, overlapped) = (run(false), run(true));
    assert_eq!(sync.requests.num_tokens[0], output);
    assert_eq!(overlapped.requests.num_tokens[0], output);
    // The prefill runs on an idle replica either way: every cost in series.
    assert_eq!(
        sync.requests.token_times[0],
        overlapped.requests.token_times[0]
    );
    for k in 2..output {
        let (i, time) = (k as usize, decode(k));
        let sync_gap = sync.requests.token_times[i] - sync.requests.token_times[i - 1];
        assert!((sync_gap - time.latency_s()).abs() < 1e-12, "token {k}");
        // The decode was sent while the one before ran; it starts when that one's last stage
        // ends and comes out after its own stage, the workers' host time and the engine's
        // applying of its outputs.
        let worker_s = time.worker_before_s() + time.forward_s() + time.worker_after_s();
        let gap = overlapped.requests.token_times[i] - overlapped.requests.token_times[i - 1];
        assert!(
            (gap - worker_s).abs() < 1e-12,
            "token {k}: {gap} vs {worker_s}"
        );
    }
    // Async scheduling never runs more steps than the request needs.
    assert_eq!(sync.num_iterations, overlapped.num_iterations);
}

#[test]
fn a_busy_engine_defers_scheduling_until_it_has_applied_the_outputs() {
    // With an engine slower than the workers, async scheduling cannot hide it: the decodes
    // come out one engine round trip (apply, then schedule and send) apart.
    let base = common::cost_model(1);
    let slow = simulator::LinearCost::new(5e-3, 0.0).unwrap();
    let cpu = simulator::CpuOverheads {
        schedule: slow,
        process_outputs: slow,
        ..*base.cpu_overheads()
    };
    let cost = simulator::CostModel::new(
        1,
        base.layers_per_stage(),
        base.operators().to_vec(),
        *base.attention(),
        cpu,
        512,
    )
    .unwrap();
    let workload = Workload::new(vec![0.0], vec![100], vec![6]).unwrap();
    let scheduler = scheduler::SchedulerConfig {
        async_scheduling: true,
        max_batches_in_flight: 2,
        ..common::scheduler_config(Policy::Sarathi)
    };
    let out = simulate(
        &common::config(1, RouterKind::RoundRobin, 0),
        &scheduler,
        &cost,
        &workload,
    )
    .unwrap();
    let times = &out.requests.token_times;
    // Each turn the engine applies one batch (5 ms), then schedules and sends the next (5 ms)
    // while the workers, much faster, wait. The last decode needs no successor: its outputs are
    // applied right after the one before.
    for k in 1..5 {
        let gap = times[k] - times[k - 1];
        assert!((gap - 10e-3).abs() < 1e-12, "token {k}: gap {gap}");
    }
    assert!((times[5] - times[4] - 5e-3).abs() < 1e-12);
    assert_eq!(
        out.iterations.end_s, *times,
        "an iteration ends when its outputs are applied"
    );
}
