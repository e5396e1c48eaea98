use crate::request::{BlockId, RequestId};

impl ScheduledRequest {
    /// End of this request's range in `Batch::all_new_block_ids`.
    pub fn new_blocks_end(&self) -> u32 {
        self.new_blocks_end
    }
}

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
    /// The first batch that holds the request: the caller learns of it here.
    pub is_new: bool,
    /// A small integer no other live request has (reused once this one leaves), so a caller
    /// may keep per-request state in arrays indexed by it.
    pub slot: u32,
    /// End of this request's range in `Batch::new_block_ids` (it starts where the previous ends).
    pub(crate) new_blocks_end: u32,
    pub(crate) seq: u64,
    /// The request's preemption count when scheduled: an entry of an older epoch is stale.
    pub(crate) epoch: u32,
}

/// A request preempted this iteration: its KV blocks are gone, its tokens kept up to
/// `num_tokens` (those sampled by batches still in flight are dropped; it is prefilled again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preempted {
    pub id: RequestId,
    pub num_tokens: u32,
}

/// What runs in one iteration. Plain data: the caller may keep it, but must hand it back to
/// `update` exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: u64,
    pub requests: Vec<ScheduledRequest>,
    /// Requests that lost their KV blocks this iteration; they will be prefilled again.
    pub preempted: Vec<Preempted>,
    /// Requests an earlier batch held that have left the scheduler (finished, stopped,
    /// aborted) since the previous batch that held any request: the caller may forget them.
    pub finished_ids: Vec<RequestId>,
    pub(crate) scheduler_id: u64,
    new_block_ids: Vec<BlockId>,
    num_producing: u32,
}

impl Batch {
    pub(crate) fn new(id: u64, scheduler_id: u64, capacity: usize) -> Batch {
        Batch {
            id,
            requests: Vec::with_capacity(capacity),
            preempted: Vec::new(),
            finished_ids: Vec::new(),
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

    /// Every request's new blocks, one after another (`new_blocks_end` ends each one's).
    pub fn all_new_block_ids(&self) -> &[BlockId] {
        &self.new_block_ids
    }

    pub fn preempted_ids(&self) -> Vec<RequestId> {
        self.preempted.iter().map(|p| p.id).collect()
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
