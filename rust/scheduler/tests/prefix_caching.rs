//! Prefix caching: chained block hashes, verified hits, shared blocks, LRU reuse.

mod common;

use common::{complete, entries, step};
use scheduler::{NewRequest, Policy, Scheduler, SchedulerConfig};

fn caching_scheduler(num_blocks: u32) -> Scheduler {
    Scheduler::new(SchedulerConfig {
        policy: Policy::Sarathi,
        token_budget: 32,
        max_num_seqs: 4,
        max_model_len: 64,
        block_size: 4,
        num_blocks,
        watermark: 0.0,
        enable_prefix_caching: true,
        ..SchedulerConfig::default()
    })
    .unwrap()
}

fn add_tokens(s: &mut Scheduler, id: u64, tokens: Vec<u32>, max_new: u32) {
    s.add(NewRequest {
        id,
        num_prompt_tokens: tokens.len() as u32,
        prompt_token_ids: Some(tokens),
        max_new_tokens: max_new,
        arrival_time: 0.0,
        priority: 0,
    })
    .unwrap();
}

#[test]
fn a_finished_prompt_is_reused_by_the_next_request_with_the_same_prefix() {
    let mut s = caching_scheduler(16);
    add_tokens(&mut s, 1, (1..=10).collect(), 2);
    step(&mut s, 0.0, &[(1, 10, 0, 'p')]);
    step(&mut s, 0.0, &[(1, 1, 10, 'D')]);
    // A's two full blocks (tokens 1-4, 5-8) stay cached after it finished.
    assert_eq!(s.block_manager().num_cached(), 2);

    let mut tokens: Vec<u32> = (1..=8).collect();
    tokens.extend([50, 51, 52]);
    add_tokens(&mut s, 2, tokens, 1);
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(2, 3, 8, 'p')]);
    assert_eq!(batch.new_block_ids(0), [0, 1, 2]);
    assert_eq!(s.block_manager().num_cached(), 0);
    complete(&mut s, &batch);
    s.check_invariants().unwrap();
}

#[test]
fn a_fully_cached_prompt_still_computes_its_last_token() {
    let mut s = caching_scheduler(16);
    add_tokens(&mut s, 1, (1..=8).collect(), 1);
    step(&mut s, 0.0, &[(1, 8, 0, 'p')]);
    add_tokens(&mut s, 2, (1..=8).collect(), 1);
    // Only the first block may hit: the second holds the token whose logits are needed.
    step(&mut s, 0.0, &[(2, 4, 4, 'p')]);
}

#[test]
fn running_requests_share_cached_blocks_by_reference_count() {
    let mut s = caching_scheduler(16);
    add_tokens(&mut s, 1, (1..=9).collect(), 10);
    step(&mut s, 0.0, &[(1, 9, 0, 'p')]);
    add_tokens(&mut s, 2, (1..=9).collect(), 10);
    step(&mut s, 0.0, &[(1, 1, 9, 'D'), (2, 1, 8, 'p')]);
    let table_a = s.block_table(1).unwrap().to_vec();
    let table_b = s.block_table(2).unwrap().to_vec();
    assert_eq!(table_a[..2], table_b[..2]);
    assert_ne!(table_a[2], table_b[2]);
    assert_eq!(s.block_manager().ref_count(table_a[0]), 2);
    s.abort(1).unwrap();
    assert_eq!(s.block_manager().ref_count(table_a[0]), 1);
    s.check_invariants().unwrap();
}

#[test]
fn a_different_token_breaks_the_chain_from_that_block_on() {
    let mut s = caching_scheduler(16);
    add_tokens(&mut s, 1, (1..=12).collect(), 1);
    step(&mut s, 0.0, &[(1, 12, 0, 'p')]);
    let mut tokens: Vec<u32> = (1..=12).collect();
    tokens[5] = 99; // inside the second block
    add_tokens(&mut s, 2, tokens, 1);
    step(&mut s, 0.0, &[(2, 8, 4, 'p')]);
}

#[test]
fn freed_cached_blocks_are_evicted_least_recently_freed_first() {
    // 4 blocks. A caches [1..4], then B caches [11..14]; C needs 3 fresh blocks, so the
    // two plain free blocks go first and then A's older cached block is evicted, not B's.
    let mut s = caching_scheduler(4);
    add_tokens(&mut s, 1, vec![1, 2, 3, 4, 5], 1);
    step(&mut s, 0.0, &[(1, 5, 0, 'p')]);
    add_tokens(&mut s, 2, vec![11, 12, 13, 14, 15], 1);
    step(&mut s, 0.0, &[(2, 5, 0, 'p')]);
    assert_eq!(s.block_manager().num_cached(), 2);
    add_tokens(&mut s, 3, (21..=32).collect(), 1);
    step(&mut s, 0.0, &[(3, 12, 0, 'p')]);
    add_tokens(&mut s, 4, vec![11, 12, 13, 14, 16], 1);
    step(&mut s, 0.0, &[(4, 1, 4, 'p')]);
    add_tokens(&mut s, 5, vec![1, 2, 3, 4, 5], 1);
    step(&mut s, 0.0, &[(5, 5, 0, 'p')]);
}

#[test]
fn a_preempted_request_recomputes_from_its_own_cached_prefix() {
    // 5 blocks. After both 8-token prompts, each needs a third block for its first decode:
    // A takes the last free one and B (the newest) is preempted; its two full blocks stay cached.
    let mut s = caching_scheduler(5);
    add_tokens(&mut s, 1, (1..=8).collect(), 4);
    add_tokens(&mut s, 2, (101..=108).collect(), 4);
    step(&mut s, 0.0, &[(1, 8, 0, 'p'), (2, 8, 0, 'p')]);
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(1, 1, 8, 'D')]);
    assert_eq!(batch.preempted_ids(), [2]);
    complete(&mut s, &batch);
    assert_eq!(s.block_manager().num_cached(), 2);
    // B (9 tokens: prompt + 1 output) needs 3 blocks; only its 2 cached ones are available.
    step(&mut s, 0.0, &[(1, 1, 9, 'D')]);
    step(&mut s, 0.0, &[(1, 1, 10, 'D')]);
    // A has finished; B hits both cached blocks, so only its output token is left to process,
    // which is exactly a decode step.
    step(&mut s, 0.0, &[(2, 1, 8, 'D')]);
    assert_eq!(s.request_view(2).unwrap().num_preemptions, 1);
}

#[test]
fn admissions_count_queried_and_hit_tokens_and_requests_report_their_hits() {
    let mut s = caching_scheduler(16);
    add_tokens(&mut s, 1, (1..=10).collect(), 1);
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(complete(&mut s, &batch)[0].num_cached_tokens, 0);
    let stats = s.prefix_cache_stats();
    assert_eq!((stats.num_queried_tokens, stats.num_hit_tokens), (10, 0));

    let mut tokens: Vec<u32> = (1..=8).collect();
    tokens.extend([50, 51, 52]);
    add_tokens(&mut s, 2, tokens, 1);
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(2, 3, 8, 'p')]);
    assert_eq!(complete(&mut s, &batch)[0].num_cached_tokens, 8);
    let stats = s.prefix_cache_stats();
    assert_eq!((stats.num_queried_tokens, stats.num_hit_tokens), (21, 8));
}

#[test]
fn without_token_ids_nothing_is_queried() {
    let mut s = caching_scheduler(16);
    s.add(NewRequest::with_lengths(1, 10, 1)).unwrap();
    step(&mut s, 0.0, &[(1, 10, 0, 'p')]);
    assert_eq!(s.prefix_cache_stats(), Default::default());
}

#[test]
fn the_cached_prefix_of_a_prompt_is_counted_without_admitting_it() {
    let mut s = caching_scheduler(16);
    assert_eq!(s.num_cached_prefix_tokens(&[1, 2, 3, 4, 5]), 0);
    add_tokens(&mut s, 1, (1..=10).collect(), 1);
    step(&mut s, 0.0, &[(1, 10, 0, 'p')]);
    // Blocks [1..4] and [5..8] are cached; a prompt that diverges in the second block finds one.
    assert_eq!(s.num_cached_prefix_tokens(&(1..=12).collect::<Vec<_>>()), 8);
    assert_eq!(s.num_cached_prefix_tokens(&[1, 2, 3, 4, 5, 6, 0, 8, 9]), 4);
    // The last token's block is never a hit, as at admission.
    assert_eq!(s.num_cached_prefix_tokens(&(1..=8).collect::<Vec<_>>()), 4);
    assert_eq!(s.num_cached_prefix_tokens(&[]), 0);
    assert_eq!(s.block_manager().num_cached(), 2);
    s.check_invariants().unwrap();
}
