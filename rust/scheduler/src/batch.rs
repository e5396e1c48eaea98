use crate::request::{BlockId, RequestId};

/// One request's share of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledRequest {
    pub id: RequestId,
    /// Tokens processed this iteration: a prefill chunk, or 1 for a decode.
    pub num_tokens: u32,
    /// Tokens already in the KV cache before this iteration (the chunk's first position).
    pub num_computed_tokens: u32,
    pub is_prefill: bool,
    /// Whether this iteration samples a token for the request (a decode, or a prefill's last chunk).
    pub produces_token: bool,
    pub(crate) slot: u32,
    /// End of this request's range in `Batch::new_block_ids` (it starts where the previous ends).
    pub(crate) new_blocks_end: u32,
    pub(crate) seq: u64,
}

/// What runs in one iteration. Plain data: the caller may keep it, but must hand it back to
/// `update` exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: u64,
    pub requests: Vec<ScheduledRequest>,
    /// Requests that lost their KV blocks this iteration; they will be prefilled again.
    pub preempted_ids: Vec<RequestId>,
    pub(crate) scheduler_id: u64,
    new_block_ids: Vec<BlockId>,
    num_producing: u32,
}

impl Batch {
    pub(crate) fn new(id: u64, scheduler_id: u64, capacity: usize) -> Batch {
        Batch {
            id,
            requests: Vec::with_capacity(capacity),
            preempted_ids: Vec::new(),
            scheduler_id,
            new_block_ids: Vec::new(),
            num_producing: 0,
        }
    }

    /// Stages a block for the next request pushed.
    #[inline]
    pub(crate) fn add_new_block(&mut self, block: BlockId) {
        self.new_block_ids.push(block);
    }

    /// Drops blocks staged for a request that was preempted before it was pushed.
    pub(crate) fn discard_staged_blocks(&mut self) {
        let end = self.requests.last().map_or(0, |r| r.new_blocks_end);
        self.new_block_ids.truncate(end as usize);
    }

    /// Appends a request, which takes the blocks staged since the previous one.
    #[inline(always)]
    pub(crate) fn push(&mut self, mut request: ScheduledRequest) {
        self.num_producing += u32::from(request.produces_token);
        request.new_blocks_end = self.new_block_ids.len() as u32;
        self.requests.push(request);
    }

    /// Blocks appended to the block table of the `index`-th request this iteration, in order.
    /// A request's table is the concatenation of these since it was last (re)admitted.
    pub fn new_block_ids(&self, index: usize) -> &[BlockId] {
        let start = match index {
            0 => 0,
            _ => self.requests[index - 1].new_blocks_end as usize,
        };
        &self.new_block_ids[start..self.requests[index].new_blocks_end as usize]
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn num_tokens(&self) -> u32 {
        self.requests.iter().map(|r| r.num_tokens).sum()
    }

    pub fn num_prefill_tokens(&self) -> u32 {
        self.requests
            .iter()
            .filter(|r| r.is_prefill)
            .map(|r| r.num_tokens)
            .sum()
    }

    pub fn num_decodes(&self) -> usize {
        self.requests.iter().filter(|r| !r.is_prefill).count()
    }

    /// How many sampled tokens `update` expects: one per request that `produces_token`.
    pub fn num_producing(&self) -> u32 {
        self.num_producing
    }
}
