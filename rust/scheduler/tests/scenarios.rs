//! Short traces per policy whose batches were worked out by hand.

mod common;

use common::{add, complete, config, entries, step};
use scheduler::FinishReason::Length;
use scheduler::{Policy, Scheduler};

#[test]
fn sarathi_piggybacks_prefill_chunks_on_decodes() {
    // budget 8, 4-token blocks. A: prompt 10, 3 new; B: prompt 6, 2 new; C arrives at t=1.
    let mut s = Scheduler::new(config(Policy::Sarathi, 8, 100)).unwrap();
    add(&mut s, 1, 10, 3, 0.0);
    add(&mut s, 2, 6, 2, 0.0);
    add(&mut s, 3, 4, 1, 1.0);

    // A's first chunk fills the budget; all 3 of its prompt blocks are reserved at once.
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(1, 8, 0, 'P')]);
    assert_eq!(batch.new_block_ids(0), [0, 1, 2]);
    complete(&mut s, &batch);

    // A finishes its prompt (2 tokens) and B's whole prompt rides along (6 tokens).
    // C has not arrived at t=0.5, so it is not admitted even though the budget is full anyway.
    let batch = s.schedule(0.5).unwrap();
    assert_eq!(entries(&batch), [(1, 2, 8, 'p'), (2, 6, 0, 'p')]);
    assert_eq!(batch.new_block_ids(1), [3, 4]);
    complete(&mut s, &batch);

    // Both decode first; C arrives and its whole prompt fits in what is left of the budget.
    assert_eq!(
        step(
            &mut s,
            1.0,
            &[(1, 1, 10, 'D'), (2, 1, 6, 'D'), (3, 4, 0, 'p')]
        ),
        [(2, Length), (3, Length)]
    );
    // A's 12th token needs no new block (3 blocks hold 12); it finishes on its 3rd token.
    assert_eq!(step(&mut s, 2.0, &[(1, 1, 11, 'D')]), [(1, Length)]);
    assert_eq!(s.block_manager().num_free(), 100);
}

#[test]
fn sarathi_keeps_every_decode_when_the_budget_is_tight() {
    // budget 4 = max_num_seqs: three decodes leave one token for the long prompt's chunk.
    let mut s = Scheduler::new(config(Policy::Sarathi, 4, 100)).unwrap();
    for id in 1..=3 {
        add(&mut s, id, 1, 5, 0.0);
    }
    add(&mut s, 4, 9, 1, 0.0);
    step(
        &mut s,
        0.0,
        &[
            (1, 1, 0, 'p'),
            (2, 1, 0, 'p'),
            (3, 1, 0, 'p'),
            (4, 1, 0, 'P'),
        ],
    );
    step(
        &mut s,
        0.0,
        &[
            (1, 1, 1, 'D'),
            (2, 1, 1, 'D'),
            (3, 1, 1, 'D'),
            (4, 1, 1, 'P'),
        ],
    );
    step(
        &mut s,
        0.0,
        &[
            (1, 1, 2, 'D'),
            (2, 1, 2, 'D'),
            (3, 1, 2, 'D'),
            (4, 1, 2, 'P'),
        ],
    );
}

#[test]
fn sarathi_dynamic_chunks_shrink_as_the_prompt_progresses() {
    let mut cfg = config(Policy::Sarathi, 64, 100);
    cfg.max_model_len = 256;
    cfg.dynamic_chunking = Some(scheduler::DynamicChunking {
        min_chunk_size: 16,
        max_context: 128,
        num_stages: 4,
    });
    // Stages of 32 context tokens: chunks 64, 48, 32, 16 (linear, rounded to 16).
    let mut s = Scheduler::new(cfg).unwrap();
    add(&mut s, 1, 200, 1, 0.0);
    step(&mut s, 0.0, &[(1, 64, 0, 'P')]); // stage 2 starts at 64 context: 32
    step(&mut s, 0.0, &[(1, 32, 64, 'P')]); // 96 context: stage 3, 16
    step(&mut s, 0.0, &[(1, 16, 96, 'P')]);
    step(&mut s, 0.0, &[(1, 16, 112, 'P')]);
    step(&mut s, 0.0, &[(1, 16, 128, 'P')]);
}

#[test]
fn sarathi_preempts_the_newest_request_when_blocks_run_out() {
    // 4 blocks of 4 tokens. A and B each hold 2 blocks after 5-token prompts.
    let mut s = Scheduler::new(config(Policy::Sarathi, 16, 4)).unwrap();
    add(&mut s, 1, 5, 8, 0.0);
    add(&mut s, 2, 5, 8, 0.0);
    step(&mut s, 0.0, &[(1, 5, 0, 'p'), (2, 5, 0, 'p')]);
    // 6 tokens each still fit in 2 blocks ... up to 8.
    step(&mut s, 0.0, &[(1, 1, 5, 'D'), (2, 1, 5, 'D')]);
    step(&mut s, 0.0, &[(1, 1, 6, 'D'), (2, 1, 6, 'D')]);
    step(&mut s, 0.0, &[(1, 1, 7, 'D'), (2, 1, 7, 'D')]);
    // A's 9th token needs a third block and none is free: B (newest) is preempted and A takes
    // one of B's blocks; B cannot come back yet (it needs 3 blocks for 9 tokens, 1 is free).
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(1, 1, 8, 'D')]);
    assert_eq!(batch.preempted_ids(), [2]);
    assert_eq!(batch.new_block_ids(0), [2]);
    complete(&mut s, &batch);
    assert_eq!(s.num_waiting(), 1);
    s.check_invariants().unwrap();
}

#[test]
fn vllm_stalls_decodes_while_prompts_prefill() {
    let mut s = Scheduler::new(config(Policy::Vllm, 16, 100)).unwrap();
    add(&mut s, 1, 10, 3, 0.0);
    add(&mut s, 2, 6, 2, 0.0);
    add(&mut s, 3, 8, 2, 0.0);
    // Prefill-only: A and B fill 16 tokens; C would exceed the budget.
    step(&mut s, 0.0, &[(1, 10, 0, 'p'), (2, 6, 0, 'p')]);
    // C's prompt fits, so the decodes of A and B wait another iteration.
    step(&mut s, 0.0, &[(3, 8, 0, 'p')]);
    assert_eq!(
        step(
            &mut s,
            0.0,
            &[(1, 1, 10, 'D'), (2, 1, 6, 'D'), (3, 1, 8, 'D')]
        ),
        [(2, Length), (3, Length)]
    );
    assert_eq!(step(&mut s, 0.0, &[(1, 1, 11, 'D')]), [(1, Length)]);
}

#[test]
fn orca_reserves_max_length_and_mixes_whole_prefills_with_decodes() {
    // 10 blocks. A reserves min(10+6, 16) = 16 tokens (4 blocks), B 12 (3), C 8 (2): 9 blocks.
    let mut s = Scheduler::new(config(Policy::Orca, 16, 10)).unwrap();
    add(&mut s, 1, 10, 6, 0.0);
    add(&mut s, 2, 6, 6, 0.0);
    add(&mut s, 3, 4, 4, 0.0);
    add(&mut s, 4, 4, 4, 0.0);
    let batch = s.schedule(0.0).unwrap();
    assert_eq!(entries(&batch), [(1, 10, 0, 'p'), (2, 6, 0, 'p')]);
    assert_eq!(batch.new_block_ids(0), [0, 1, 2, 3]);
    assert_eq!(batch.new_block_ids(1), [4, 5, 6]);
    complete(&mut s, &batch);
    // Decodes plus C's whole prompt; D's 2 blocks do not fit in the 1 left.
    step(
        &mut s,
        0.0,
        &[(1, 1, 10, 'D'), (2, 1, 6, 'D'), (3, 4, 0, 'p')],
    );
    assert_eq!(s.num_waiting(), 1);
}

#[test]
fn faster_transformer_admits_only_when_the_batch_has_drained() {
    let mut cfg = config(Policy::FasterTransformer, 16, 100);
    cfg.max_num_seqs = 2;
    let mut s = Scheduler::new(cfg).unwrap();
    add(&mut s, 1, 4, 2, 0.0);
    add(&mut s, 2, 4, 3, 0.0);
    add(&mut s, 3, 4, 1, 0.0);
    step(&mut s, 0.0, &[(1, 4, 0, 'p'), (2, 4, 0, 'p')]);
    assert_eq!(
        step(&mut s, 0.0, &[(1, 1, 4, 'D'), (2, 1, 4, 'D')]),
        [(1, Length)]
    );
    // A slot is free but C must wait for B.
    assert_eq!(step(&mut s, 0.0, &[(2, 1, 5, 'D')]), [(2, Length)]);
    assert_eq!(step(&mut s, 0.0, &[(3, 4, 0, 'p')]), [(3, Length)]);
}

#[test]
fn lightllm_admits_only_what_the_projected_peak_allows() {
    // 8 blocks of 4 = 32 tokens. A and B (8 + 8 each) peak at 2 * ceil(15 / 4) = 8 blocks.
    // C (4 + 8) would hold ceil(11 / 4) = 3 more at that step, so it waits although only
    // 4 blocks are in use now.
    let mut cfg = config(Policy::LightLlm, 32, 8);
    cfg.max_model_len = 32;
    cfg.max_decode_iters_between_prefills = 2;
    let mut s = Scheduler::new(cfg).unwrap();
    add(&mut s, 1, 8, 8, 0.0);
    add(&mut s, 2, 8, 8, 0.0);
    add(&mut s, 3, 4, 8, 0.0);
    step(&mut s, 0.0, &[(1, 8, 0, 'p'), (2, 8, 0, 'p')]);
    assert_eq!(s.block_manager().num_used(), 4);
    // Decode-only iterations; each prefill attempt is refused by the projection.
    for computed in 8..14 {
        step(&mut s, 0.0, &[(1, 1, computed, 'D'), (2, 1, computed, 'D')]);
        assert_eq!(s.num_waiting(), 1);
    }
    assert_eq!(
        step(&mut s, 0.0, &[(1, 1, 14, 'D'), (2, 1, 14, 'D')]),
        [(1, Length), (2, Length)]
    );
    step(&mut s, 0.0, &[(3, 4, 0, 'p')]);
}

#[test]
fn lightllm_interrupts_decoding_for_prefills_every_few_iterations() {
    let mut cfg = config(Policy::LightLlm, 16, 100);
    cfg.max_decode_iters_between_prefills = 2;
    let mut s = Scheduler::new(cfg).unwrap();
    add(&mut s, 1, 4, 8, 0.0);
    step(&mut s, 0.0, &[(1, 4, 0, 'p')]);
    add(&mut s, 2, 4, 8, 0.0);
    step(&mut s, 0.0, &[(1, 1, 4, 'D')]);
    step(&mut s, 0.0, &[(1, 1, 5, 'D')]);
    step(&mut s, 0.0, &[(2, 4, 0, 'p')]);
    step(&mut s, 0.0, &[(1, 1, 6, 'D'), (2, 1, 4, 'D')]);
}
