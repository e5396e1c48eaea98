//! Attention is absent from the public operator profiles, so its time comes from a roofline of
//! each kernel's FLOPs and bytes, with rates calibrated where attention profiles exist.

use crate::error::{Result, SimulatorError};
use crate::roofline::{Roofline, Work};

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
    pub prefill: Roofline,
    pub decode: Roofline,
    pub kv_save: Roofline,
}

/// The attention work of one layer of one iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttentionWork {
    pub prefill: Work,
    pub decode: Work,
    pub kv_save: Work,
    pub num_prefills: u32,
    pub num_decodes: u32,
}

impl AttentionWork {
    pub fn total(&self) -> Work {
        let mut total = self.prefill;
        total += self.decode;
        total += self.kv_save;
        total
    }
}

impl AttentionModel {
    pub fn new(
        shape: AttentionShape,
        prefill: Roofline,
        decode: Roofline,
        kv_save: Roofline,
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
            prefill,
            decode,
            kv_save,
        })
    }

    /// A causal prefill chunk of `num_tokens` queries after `num_context` cached tokens:
    /// every query attends to the context and to the chunk's tokens up to itself.
    pub fn prefill_work(&self, num_tokens: u32, num_context: u32) -> Work {
        let s = &self.shape;
        let (chunk, context) = (f64::from(num_tokens), f64::from(num_context));
        let pairs = chunk * context + chunk * (chunk + 1.0) / 2.0;
        let head_dim = f64::from(s.head_dim);
        let (q_heads, kv_heads) = (f64::from(s.num_q_heads), f64::from(s.num_kv_heads));
        Work {
            // QK^T and PV: two multiply-adds per (query, key) pair per head dimension.
            flops: 4.0 * q_heads * head_dim * pairs,
            // Queries in, outputs out, every key and value of context and chunk read once.
            bytes: f64::from(s.dtype_bytes)
                * head_dim
                * (2.0 * q_heads * chunk + 2.0 * kv_heads * (context + chunk)),
        }
    }

    /// `num_decodes` single-token queries reading `total_context` cached tokens between them
    /// (each decode's context includes its new token).
    pub fn decode_work(&self, num_decodes: u32, total_context: u64) -> Work {
        let s = &self.shape;
        let (decodes, context) = (f64::from(num_decodes), total_context as f64);
        let head_dim = f64::from(s.head_dim);
        let (q_heads, kv_heads) = (f64::from(s.num_q_heads), f64::from(s.num_kv_heads));
        Work {
            flops: 4.0 * q_heads * head_dim * context,
            bytes: f64::from(s.dtype_bytes)
                * head_dim
                * (2.0 * kv_heads * context + 2.0 * q_heads * decodes),
        }
    }

    /// Copies the new tokens' keys and values into their cache blocks (read + write).
    pub fn kv_save_work(&self, num_tokens: u64) -> Work {
        let s = &self.shape;
        Work {
            flops: 0.0,
            bytes: 4.0
                * f64::from(s.num_kv_heads)
                * f64::from(s.head_dim)
                * f64::from(s.dtype_bytes)
                * num_tokens as f64,
        }
    }

    /// One layer's attention time for the given work; kernels with nothing to do cost nothing.
    pub fn layer_time(&self, work: &AttentionWork) -> f64 {
        let mut time = 0.0;
        if work.num_prefills > 0 {
            time += self.prefill.time(work.prefill);
        }
        if work.num_decodes > 0 {
            time += self.decode.time(work.decode);
        }
        if work.num_prefills + work.num_decodes > 0 {
            time += self.kv_save.time(work.kv_save);
        }
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> AttentionModel {
        let rate = Roofline::new(1e12, 1e9, 1e-6).unwrap();
        AttentionModel::new(
            AttentionShape {
                num_q_heads: 4,
                num_kv_heads: 2,
                head_dim: 8,
                dtype_bytes: 2,
            },
            rate,
            rate,
            rate,
        )
        .unwrap()
    }

    #[test]
    fn prefill_work_is_quadratic_in_the_chunk_and_linear_in_context() {
        let m = model();
        // 3 queries, no context: 1 + 2 + 3 = 6 pairs.
        assert_eq!(m.prefill_work(3, 0).flops, 4.0 * 4.0 * 8.0 * 6.0);
        // 2 queries after 10 cached tokens: 2 * 10 + 3 pairs.
        assert_eq!(m.prefill_work(2, 10).flops, 4.0 * 4.0 * 8.0 * 23.0);
        assert_eq!(
            m.prefill_work(2, 10).bytes,
            2.0 * 8.0 * (2.0 * 4.0 * 2.0 + 2.0 * 2.0 * 12.0)
        );
    }

    #[test]
    fn decode_reads_every_cached_key_and_value() {
        let m = model();
        let work = m.decode_work(2, 100);
        assert_eq!(
            work.bytes,
            2.0 * 8.0 * (2.0 * 2.0 * 100.0 + 2.0 * 4.0 * 2.0)
        );
        assert_eq!(work.flops, 4.0 * 4.0 * 8.0 * 100.0);
    }

    #[test]
    fn an_empty_layer_costs_nothing() {
        assert_eq!(model().layer_time(&AttentionWork::default()), 0.0);
    }
}
