//! Each bad input is refused with its own error, and the scheduler keeps working afterwards.

mod common;

use common::{add, complete, config, step};
use scheduler::{BatchOutputs, NewRequest, Policy, Scheduler, SchedulerConfig, SchedulerError};

fn invalid_config(change: impl FnOnce(&mut SchedulerConfig)) -> String {
    let mut cfg = config(Policy::Sarathi, 8, 10);
    change(&mut cfg);
    match Scheduler::new(cfg) {
        Err(SchedulerError::InvalidConfig(reason)) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_configs_name_the_bad_knob() {
    assert!(invalid_config(|c| c.token_budget = 2)
        .contains("token_budget (2) must be at least max_num_seqs (4)"));
    assert!(invalid_config(|c| c.num_blocks = 0).contains("num_blocks"));
    assert!(invalid_config(|c| c.block_size = 0).contains("block_size"));
    assert!(invalid_config(|c| c.watermark = 1.5).contains("watermark"));
    assert!(invalid_config(|c| c.policy = Policy::Vllm).contains("does not chunk prefills"));
    assert!(
        invalid_config(|c| c.dynamic_chunking = Some(scheduler::DynamicChunking {
            min_chunk_size: 64,
            max_context: 100,
            num_stages: 2
        }))
        .contains("min_chunk_size")
    );
}

fn rejection(s: &mut Scheduler, request: NewRequest) -> SchedulerError {
    s.add(request).expect_err("request should be rejected")
}

#[test]
fn bad_requests_are_rejected_and_the_scheduler_keeps_serving() {
    // 10 blocks of 4 = 40 tokens of cache; max_model_len 16.
    let mut s = Scheduler::new(config(Policy::Sarathi, 8, 10)).unwrap();
    add(&mut s, 1, 4, 2, 0.0);
    assert_eq!(
        rejection(&mut s, NewRequest::with_lengths(1, 4, 2)),
        SchedulerError::DuplicateRequest(1)
    );
    let too_long = rejection(&mut s, NewRequest::with_lengths(2, 17, 2)).to_string();
    assert!(
        too_long.contains("17 tokens, more than max_model_len (16)"),
        "{too_long}"
    );
    let empty = rejection(&mut s, NewRequest::with_lengths(3, 0, 2)).to_string();
    assert!(empty.contains("empty"), "{empty}");
    let no_output = rejection(&mut s, NewRequest::with_lengths(4, 3, 0)).to_string();
    assert!(no_output.contains("max_new_tokens"), "{no_output}");
    let mismatch = rejection(
        &mut s,
        NewRequest {
            prompt_token_ids: Some(vec![1, 2]),
            ..NewRequest::with_lengths(5, 3, 1)
        },
    )
    .to_string();
    assert!(
        mismatch.contains("2 tokens but the prompt length is 3"),
        "{mismatch}"
    );
    assert_eq!(s.abort(77), Err(SchedulerError::UnknownRequest(77)));
    step(&mut s, 0.0, &[(1, 4, 0, 'p')]);
    s.check_invariants().unwrap();
}

#[test]
fn a_prompt_bigger_than_the_whole_cache_is_rejected() {
    let mut cfg = config(Policy::Sarathi, 8, 3);
    cfg.max_model_len = 64;
    let mut s = Scheduler::new(cfg).unwrap();
    let err = rejection(&mut s, NewRequest::with_lengths(1, 13, 1)).to_string();
    assert!(
        err.contains("needs 4 KV blocks but the cache admits at most 3"),
        "{err}"
    );
}

#[test]
fn outputs_that_do_not_match_the_batch_are_refused_without_side_effects() {
    let mut s = Scheduler::new(config(Policy::Sarathi, 8, 10)).unwrap();
    add(&mut s, 1, 4, 3, 0.0);
    let batch = s.schedule(0.0).unwrap();
    let wrong_count = s.update(
        &batch,
        BatchOutputs {
            sampled_token_ids: &[1, 2],
            ..BatchOutputs::default()
        },
    );
    assert!(matches!(
        wrong_count,
        Err(SchedulerError::InvalidOutputs(_))
    ));
    let unknown = s.update(
        &batch,
        BatchOutputs {
            sampled_token_ids: &[1],
            finished_ids: &[9],
            ..BatchOutputs::default()
        },
    );
    assert_eq!(unknown, Err(SchedulerError::UnknownRequest(9)));
    // A second schedule while the batch awaits outputs is refused too.
    assert_eq!(
        s.schedule(0.0).unwrap_err(),
        SchedulerError::TooManyBatchesInFlight { limit: 1 }
    );
    complete(&mut s, &batch);
    let replay = s.update(
        &batch,
        BatchOutputs {
            sampled_token_ids: &[1],
            ..BatchOutputs::default()
        },
    );
    assert!(matches!(replay, Err(SchedulerError::InvalidOutputs(m)) if m.contains("not awaiting")));
    let other = Scheduler::new(config(Policy::Sarathi, 8, 10)).unwrap();
    let mut other = other;
    assert!(other.update(&batch, BatchOutputs::default()).is_err());
    step(&mut s, 0.0, &[(1, 1, 4, 'D')]);
    s.check_invariants().unwrap();
}

#[test]
fn aborting_a_scheduled_request_before_its_update_is_harmless() {
    let mut s = Scheduler::new(config(Policy::Sarathi, 8, 10)).unwrap();
    add(&mut s, 1, 4, 3, 0.0);
    add(&mut s, 2, 4, 3, 0.0);
    let batch = s.schedule(0.0).unwrap();
    s.abort(1).unwrap();
    // Reusing the id at once must not let the stale batch entry touch the new request.
    add(&mut s, 1, 4, 3, 0.0);
    let finished = complete(&mut s, &batch);
    assert!(finished.is_empty());
    assert_eq!(s.request_view(1).unwrap().num_computed_tokens, 0);
    assert_eq!(s.request_view(2).unwrap().num_output_tokens, 1);
    s.check_invariants().unwrap();
}

#[test]
fn knobs_take_the_defaults_and_the_policy_sets_the_budget() {
    use scheduler::{SchedulerKnobs, DEFAULT_CHUNK_SIZE};
    let sarathi = SchedulerConfig::from_knobs(SchedulerKnobs::default()).unwrap();
    assert_eq!(sarathi, SchedulerConfig::default());
    assert_eq!(sarathi.token_budget, DEFAULT_CHUNK_SIZE);
    let many_seqs = SchedulerConfig::from_knobs(SchedulerKnobs {
        max_num_seqs: Some(1024),
        ..SchedulerKnobs::default()
    })
    .unwrap();
    assert_eq!(many_seqs.token_budget, 1024);
    let vllm = SchedulerConfig::from_knobs(SchedulerKnobs {
        policy: Some(Policy::Vllm),
        max_model_len: Some(1000),
        ..SchedulerKnobs::default()
    })
    .unwrap();
    assert_eq!(vllm.token_budget, 1000);
    let too_small = SchedulerConfig::from_knobs(SchedulerKnobs {
        policy: Some(Policy::Vllm),
        token_budget: Some(512),
        max_model_len: Some(1000),
        ..SchedulerKnobs::default()
    });
    assert!(too_small
        .unwrap_err()
        .to_string()
        .contains("does not chunk prefills"));
}
