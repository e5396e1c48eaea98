//! Inputs at the edges of their types.

mod common;

use simulator::BatchEntry;

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
