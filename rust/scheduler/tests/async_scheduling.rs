//! Async scheduling by hand: the next batch is scheduled while the current one runs.

mod common;

use common::{add, complete, config, entries};
use scheduler::{BatchOutputs, FinishReason, Policy, Preempted, Scheduler, SchedulerConfig};

fn async_config(num_blocks: u32) -> SchedulerConfig {
    SchedulerConfig {
        async_scheduling: true,
        max_batches_in_flight: 2,
        ..config(Policy::Sarathi, 8, num_blocks)
    }
}

#[test]
fn a_request_runs_in_the_next_batch_before_the_current_one_is_updated() {
    let mut s = Scheduler::new(async_config(16)).unwrap();
    add(&mut s, 1, 4, 3, 0.0);
    let first = s.schedule(0.0).unwrap();
    assert_eq!(entries(&first), [(1, 4, 0, 'p')]);
    assert!(first.requests[0].is_new);
    // Scheduled as if `first` had produced its token.
    let second = s.schedule(0.0).unwrap();
    assert_eq!(entries(&second), [(1, 1, 4, 'D')]);
    assert!(!second.requests[0].is_new);
    complete(&mut s, &first);
    let third = s.schedule(0.0).unwrap();
    assert_eq!(entries(&third), [(1, 1, 5, 'D')]); // its third and last token
    complete(&mut s, &second);
    // Its last token is in flight: nothing more to schedule for it.
    let idle = s.schedule(0.0).unwrap();
    assert!(idle.is_empty());
    let finished = complete(&mut s, &third);
    complete(&mut s, &idle);
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].reason, FinishReason::Length);
    assert_eq!(finished[0].num_output_tokens, 3);
    s.check_invariants().unwrap();
}

#[test]
fn a_stop_found_one_batch_late_drops_the_extra_entry_and_reports_the_request() {
    let mut s = Scheduler::new(async_config(16)).unwrap();
    add(&mut s, 1, 4, 10, 0.0);
    add(&mut s, 2, 4, 10, 0.0);
    let first = s.schedule(0.0).unwrap();
    let second = s.schedule(0.0).unwrap();
    assert_eq!(entries(&second), [(1, 1, 4, 'D'), (2, 1, 4, 'D')]);
    // The caller finds request 1's first token is its EOS.
    let finished = s
        .update(
            &first,
            BatchOutputs {
                sampled_token_ids: &[5, 6],
                finished_ids: &[1],
                aborted_ids: &[],
            },
        )
        .unwrap();
    assert_eq!(finished[0].id, 1);
    let third = s.schedule(0.0).unwrap();
    assert_eq!(entries(&third), [(2, 1, 5, 'D')]);
    assert_eq!(third.finished_ids, [1]);
    // `second` still holds request 1: its token there is dropped.
    let done = complete(&mut s, &second);
    assert!(done.is_empty());
    assert_eq!(s.request_view(2).unwrap().num_output_tokens, 2);
    s.check_invariants().unwrap();
}

#[test]
fn a_request_preempted_in_flight_keeps_only_its_committed_tokens() {
    // 5 blocks of 4 tokens: two 8-token prompts take 4; their decodes need a fifth, then a sixth.
    let mut s = Scheduler::new(SchedulerConfig {
        token_budget: 16,
        ..async_config(5)
    })
    .unwrap();
    add(&mut s, 1, 8, 10, 0.0);
    add(&mut s, 2, 8, 10, 0.0);
    let first = s.schedule(0.0).unwrap();
    assert_eq!(entries(&first), [(1, 8, 0, 'p'), (2, 8, 0, 'p')]);
    // Decodes at position 8 need a block each and one is free: request 2 is preempted while
    // `first` still computes it, and admitted again at once on its freed blocks.
    let second = s.schedule(0.0).unwrap();
    assert_eq!(entries(&second), [(1, 1, 8, 'D'), (2, 8, 0, 'p')]);
    assert_eq!(
        second.preempted,
        [Preempted {
            id: 2,
            num_tokens: 8
        }]
    );
    complete(&mut s, &first);
    complete(&mut s, &second);
    // Request 2's token from `first` was dropped with its blocks; `second` gave it one again.
    assert_eq!(s.request_view(2).unwrap().num_output_tokens, 1);
    assert_eq!(s.request_view(1).unwrap().num_output_tokens, 2);
    s.check_invariants().unwrap();
}
