//! Attention's time per layer on one GPU: three kernels, each a launch cost plus a cost per
//! unit of the work it does (tokens, parallel work items, the longest context, FLOPs, bytes),
//! with coefficients fitted to attention profiles where they exist.

use crate::error::{Result, SimulatorError};
use crate::kernel_cost::{KernelCost, KernelWork};

/// The attention shape one GPU sees (heads already divided by the tensor-parallel degree).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    pub num_q_heads: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub dtype_bytes: u32,
}

/// Per-layer attention time on one GPU: the prefill kernel (all prefill chunks of the batch in
/// one variable-length launch), the decode kernel (all decodes in one launch), and the write
/// of the iteration's new keys and values into the paged cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionModel {
    pub shape: AttentionShape,
    pub prefill: KernelCost,
    pub decode: KernelCost,
    pub kv_save: KernelCost,
}

/// The attention work of one layer of one iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttentionWork {
    pub prefill: KernelWork,
    pub decode: KernelWork,
    pub kv_save: KernelWork,
    pub num_prefills: u32,
    pub num_decodes: u32,
}

impl AttentionWork {
    pub fn flops(&self) -> f64 {
        self.prefill.flops() + self.decode.flops() + self.kv_save.flops()
    }

    pub fn bytes(&self) -> f64 {
        self.prefill.bytes + self.decode.bytes + self.kv_save.bytes
    }
}

impl AttentionModel {
    pub fn new(
        shape: AttentionShape,
        prefill: KernelCost,
        decode: KernelCost,
        kv_save: KernelCost,
    ) -> Result<Self> {
        let AttentionShape {
            num_q_heads,
            num_kv_heads,
            head_dim,
            dtype_bytes,
        } = shape;
        if num_q_heads == 0 || num_kv_heads == 0 || head_dim == 0 || dtype_bytes == 0 {
            return Err(SimulatorError::InvalidCostModel(format!(
                "attention shape needs positive sizes, got {shape:?}"
            )));
        }
        Ok(AttentionModel {
            shape,
            prefill: prefill.validated()?,
            decode: decode.validated()?,
            kv_save: kv_save.validated()?,
        })
    }

    /// A causal prefill chunk of `num_tokens` queries after `num_context` cached tokens:
    /// every query attends to the context and to the chunk's tokens up to itself. Its items are
    /// the chunk's query rows of every query head.
    pub fn prefill_work(&self, num_tokens: u32, num_context: u32) -> KernelWork {
        let s = &self.shape;
        let (chunk, context) = (f64::from(num_tokens), f64::from(num_context));
        let head_dim = f64::from(s.head_dim);
        let (q_heads, kv_heads) = (f64::from(s.num_q_heads), f64::from(s.num_kv_heads));
        // QK^T and PV: two multiply-adds per (query, key) pair per head dimension.
        let flops_per_pair = 4.0 * q_heads * head_dim;
        KernelWork {
            num_tokens: chunk,
            num_items: chunk * q_heads,
            max_context: context + chunk,
            context_flops: flops_per_pair * chunk * context,
            causal_flops: flops_per_pair * chunk * (chunk + 1.0) / 2.0,
            // Queries in, outputs out, every key and value of context and chunk read once.
            bytes: f64::from(s.dtype_bytes)
                * head_dim
                * (2.0 * q_heads * chunk + 2.0 * kv_heads * (context + chunk)),
        }
    }

    /// `num_decodes` single-token queries reading `total_context` cached tokens between them,
    /// the longest `max_context` (each decode's context includes its new token). Its items are
    /// the (sequence, KV head) pairs: a KV head's group of query heads shares its loads.
    pub fn decode_work(
        &self,
        num_decodes: u32,
        total_context: u64,
        max_context: u64,
    ) -> KernelWork {
        let s = &self.shape;
        let (decodes, context) = (f64::from(num_decodes), total_context as f64);
        let head_dim = f64::from(s.head_dim);
        let (q_heads, kv_heads) = (f64::from(s.num_q_heads), f64::from(s.num_kv_heads));
        KernelWork {
            num_tokens: decodes,
            num_items: decodes * kv_heads,
            max_context: max_context as f64,
            context_flops: 4.0 * q_heads * head_dim * context,
            causal_flops: 0.0,
            bytes: f64::from(s.dtype_bytes)
                * head_dim
                * (2.0 * kv_heads * context + 2.0 * q_heads * decodes),
        }
    }

    /// Copies the new tokens' keys and values into their cache blocks (read + write).
    pub fn kv_save_work(&self, num_tokens: u64) -> KernelWork {
        let s = &self.shape;
        let tokens = num_tokens as f64;
        KernelWork {
            num_tokens: tokens,
            bytes: 4.0
                * f64::from(s.num_kv_heads)
                * f64::from(s.head_dim)
                * f64::from(s.dtype_bytes)
                * tokens,
            ..KernelWork::default()
        }
    }

    /// One layer's attention time for the given work; kernels with nothing to do cost nothing.
    pub fn layer_time(&self, work: &AttentionWork) -> f64 {
        let mut time = 0.0;
        if work.num_prefills > 0 {
            time += self.prefill.time(&work.prefill);
        }
        if work.num_decodes > 0 {
            time += self.decode.time(&work.decode);
        }
        if work.num_prefills + work.num_decodes > 0 {
            time += self.kv_save.time(&work.kv_save);
        }
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: AttentionShape = AttentionShape {
        num_q_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        dtype_bytes: 2,
    };

    fn model(prefill: KernelCost, decode: KernelCost, kv_save: KernelCost) -> AttentionModel {
        AttentionModel::new(SHAPE, prefill, decode, kv_save).unwrap()
    }

    fn free() -> AttentionModel {
        model(KernelCost::FREE, KernelCost::FREE, KernelCost::FREE)
    }

    #[test]
    fn prefill_work_is_quadratic_in_the_chunk_and_linear_in_context() {
        let m = free();
        // 3 queries, no context: 1 + 2 + 3 = 6 causal pairs.
        let work = m.prefill_work(3, 0);
        assert_eq!(work.causal_flops, 4.0 * 4.0 * 8.0 * 6.0);
        assert_eq!(work.context_flops, 0.0);
        // 2 queries after 10 cached tokens: 2 * 10 context pairs and 3 causal ones.
        let work = m.prefill_work(2, 10);
        assert_eq!(work.context_flops, 4.0 * 4.0 * 8.0 * 20.0);
        assert_eq!(work.causal_flops, 4.0 * 4.0 * 8.0 * 3.0);
        assert_eq!(work.bytes, 2.0 * 8.0 * (2.0 * 4.0 * 2.0 + 2.0 * 2.0 * 12.0));
        // Two query rows for each of the 4 query heads; the last query sees 12 keys.
        assert_eq!(
            (work.num_tokens, work.num_items, work.max_context),
            (2.0, 8.0, 12.0)
        );
    }

    #[test]
    fn decode_reads_every_cached_key_and_value() {
        let work = free().decode_work(2, 100, 70);
        assert_eq!(
            work.bytes,
            2.0 * 8.0 * (2.0 * 2.0 * 100.0 + 2.0 * 4.0 * 2.0)
        );
        assert_eq!(work.flops(), 4.0 * 4.0 * 8.0 * 100.0);
        // Two sequences of 2 KV heads each.
        assert_eq!(
            (work.num_tokens, work.num_items, work.max_context),
            (2.0, 4.0, 70.0)
        );
    }

    #[test]
    fn each_kernel_is_its_launch_plus_its_work_at_its_coefficients() {
        let prefill = KernelCost {
            launch_s: 10e-6,
            per_token_s: 20e-9,
            per_item_s: 3e-9,
            per_context_flop_s: 1e-14,
            per_causal_flop_s: 2e-14,
            per_byte_s: 1e-12,
            ..KernelCost::FREE
        };
        let decode = KernelCost {
            launch_s: 8e-6,
            per_token_s: 10e-9,
            per_item_s: 25e-9,
            per_context_token_s: 4e-9,
            per_byte_s: 5e-13,
            ..KernelCost::FREE
        };
        let kv_save = KernelCost {
            launch_s: 2e-6,
            per_byte_s: 1e-12,
            ..KernelCost::FREE
        };
        let m = model(prefill, decode, kv_save);
        // A 100-token chunk after 50 cached tokens: 400 query rows, 128 * 100 * 50 = 640,000
        // context FLOPs and 128 * 5050 = 646,400 causal ones, 16 * (800 + 600) = 22,400 bytes.
        let chunk = m.prefill_work(100, 50);
        let expected = 10e-6
            + 100.0 * 20e-9
            + 400.0 * 3e-9
            + 640_000.0 * 1e-14
            + 646_400.0 * 2e-14
            + 22_400.0 * 1e-12;
        assert!((m.prefill.time(&chunk) - expected).abs() < 1e-18);
        // 3 decodes over 300 context tokens, the longest 120: 6 items, 16 * (1200 + 24) bytes.
        let decodes = m.decode_work(3, 300, 120);
        let expected = 8e-6 + 3.0 * 10e-9 + 6.0 * 25e-9 + 120.0 * 4e-9 + 19_584.0 * 5e-13;
        assert!((m.decode.time(&decodes) - expected).abs() < 1e-18);
        // The layer adds the KV save of all 103 tokens: 4 * 2 * 8 * 2 = 128 bytes each.
        let work = AttentionWork {
            prefill: chunk,
            decode: decodes,
            kv_save: m.kv_save_work(103),
            num_prefills: 1,
            num_decodes: 3,
        };
        let save = 2e-6 + 103.0 * 128.0 * 1e-12;
        let layer = m.prefill.time(&chunk) + m.decode.time(&decodes) + save;
        assert!((m.layer_time(&work) - layer).abs() < 1e-18);
    }

    #[test]
    fn an_empty_layer_costs_nothing() {
        let launch = KernelCost {
            launch_s: 1e-6,
            ..KernelCost::FREE
        };
        let m = model(launch, launch, launch);
        assert_eq!(m.layer_time(&AttentionWork::default()), 0.0);
    }

    #[test]
    fn an_invalid_kernel_cost_is_refused() {
        let negative = KernelCost {
            per_item_s: -1e-9,
            ..KernelCost::FREE
        };
        assert!(AttentionModel::new(SHAPE, KernelCost::FREE, negative, KernelCost::FREE).is_err());
    }
}
