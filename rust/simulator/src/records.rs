//! What a simulation records, as columns (cheap to hand to Python as flat buffers).

use scheduler::FinishReason;

use crate::cost_model::IterationTime;
use crate::workload::Workload;

/// Per request: where it ran, when every output token arrived, how it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecords {
    /// Replica the router chose.
    pub replica: Vec<u32>,
    /// Request `i`'s token times are `token_times[token_offsets[i]..][..num_tokens[i]]`.
    pub token_offsets: Vec<u64>,
    pub num_tokens: Vec<u32>,
    /// Absolute time of every output token, the first one included; when the run streams them
    /// to disk (`TokenTimesSpill`), only those from `token_times_base` on not yet written.
    pub token_times: Vec<f64>,
    pub token_times_base: u64,
    /// When the scheduler first admitted it; NaN if never.
    pub first_scheduled_s: Vec<f64>,
    /// When it left the scheduler; NaN if it never did.
    pub finished_s: Vec<f64>,
    /// 0 = did not finish, 1 = length (its output length or a cap), 2 = stop, 3 = aborted.
    pub finish_reason: Vec<u8>,
    pub num_preemptions: Vec<u32>,
    /// Requests the replica refused, with the reason.
    pub rejections: Vec<(u32, String)>,
    /// When it was sent (a session's later turn: its think time after the turn before ended);
    /// NaN if never.
    pub arrival_s: Vec<f64>,
    /// Prompt tokens the prefix cache held at its first admission.
    pub num_cached_tokens: Vec<u32>,
}

impl RequestRecords {
    pub fn new(workload: &Workload) -> Self {
        let n = workload.len();
        let mut token_offsets = Vec::with_capacity(n + 1);
        let mut offset = 0u64;
        token_offsets.push(0);
        for &count in &workload.num_output_tokens {
            offset += u64::from(count);
            token_offsets.push(offset);
        }
        RequestRecords {
            replica: vec![u32::MAX; n],
            token_offsets,
            num_tokens: vec![0; n],
            token_times: vec![f64::NAN; offset as usize],
            token_times_base: 0,
            first_scheduled_s: vec![f64::NAN; n],
            finished_s: vec![f64::NAN; n],
            finish_reason: vec![0; n],
            num_preemptions: vec![0; n],
            rejections: Vec::new(),
            arrival_s: vec![f64::NAN; n],
            num_cached_tokens: vec![0; n],
        }
    }

    /// Records that hold no token time until one comes (for a run that streams them to disk).
    pub fn new_windowed(workload: &Workload) -> Self {
        let mut records = RequestRecords::new(workload);
        records.token_times = Vec::new();
        records
    }

    #[inline]
    pub fn record_token(&mut self, request: usize, time: f64) {
        let index = self.token_offsets[request] + u64::from(self.num_tokens[request]);
        // A request can only produce as many tokens as it asked for.
        if index < self.token_offsets[request + 1] {
            let held = (index - self.token_times_base) as usize;
            if held >= self.token_times.len() {
                self.token_times.resize(held + 1, f64::NAN);
            }
            self.token_times[held] = time;
            self.num_tokens[request] += 1;
        }
    }

    pub fn record_finish(&mut self, finished: &scheduler::FinishedRequest, time: f64) {
        let request = finished.id as usize;
        self.finished_s[request] = time;
        self.first_scheduled_s[request] = finished.first_scheduled_at.unwrap_or(f64::NAN);
        self.num_preemptions[request] = finished.num_preemptions;
        self.num_cached_tokens[request] = finished.num_cached_tokens;
        self.finish_reason[request] = match finished.reason {
            FinishReason::Length => 1,
            FinishReason::Stop => 2,
            FinishReason::Aborted => 3,
        };
    }

    pub fn num_finished(&self) -> usize {
        self.finish_reason.iter().filter(|&&r| r != 0).count()
    }
}

/// Calls `$callback!` with every per-iteration column as `name: type => ColumnValues variant`,
/// in the order they are documented and written: the one list every walk over them uses.
macro_rules! with_iteration_columns {
    ($callback:ident) => {
        $callback!(
            replica: u32 => U32,
            start_s: f64 => F64,
            end_s: f64 => F64,
            num_seqs: u32 => U32,
            num_prefill_seqs: u32 => U32,
            num_prefill_tokens: u64 => U64,
            num_decode_tokens: u32 => U32,
            num_sampled: u32 => U32,
            decode_context_tokens: u64 => U64,
            num_preempted: u32 => U32,
            num_blocks_used: u32 => U32,
            num_waiting: u32 => U32,
            num_running: u32 => U32,
            forward_s: f32 => F32,
            attention_s: f32 => F32,
            communication_s: f32 => F32,
            cpu_s: f32 => F32,
            attention_flops: f32 => F32,
            attention_bytes: f32 => F32
        )
    };
}
pub(crate) use with_iteration_columns;

/// Per iteration (one scheduled batch on one replica).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationRecords {
    pub replica: Vec<u32>,
    /// When the batch was scheduled.
    pub start_s: Vec<f64>,
    /// When its last stage and output processing finished (its tokens' time).
    pub end_s: Vec<f64>,
    pub num_seqs: Vec<u32>,
    pub num_prefill_seqs: Vec<u32>,
    pub num_prefill_tokens: Vec<u64>,
    pub num_decode_tokens: Vec<u32>,
    /// Tokens sampled (requests that produce a token this iteration).
    pub num_sampled: Vec<u32>,
    /// Sum over the batch's decodes of their context length.
    pub decode_context_tokens: Vec<u64>,
    pub num_preempted: Vec<u32>,
    /// KV blocks held after scheduling.
    pub num_blocks_used: Vec<u32>,
    /// Requests waiting and running on the replica right after scheduling.
    pub num_waiting: Vec<u32>,
    pub num_running: Vec<u32>,
    /// GPU time of all stages back to back.
    pub forward_s: Vec<f32>,
    pub attention_s: Vec<f32>,
    pub communication_s: Vec<f32>,
    pub cpu_s: Vec<f32>,
    /// One layer's attention work on one GPU.
    pub attention_flops: Vec<f32>,
    pub attention_bytes: Vec<f32>,
}

/// One per-iteration column, borrowed with its element type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnValues<'a> {
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl ColumnValues<'_> {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::U32(values) => values.len(),
            ColumnValues::U64(values) => values.len(),
            ColumnValues::F32(values) => values.len(),
            ColumnValues::F64(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A replica's state when a batch was scheduled.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaSnapshot {
    pub replica: u32,
    pub num_blocks_used: u32,
    pub num_waiting: u32,
    pub num_running: u32,
    pub num_preempted: u32,
}

impl IterationRecords {
    pub fn len(&self) -> usize {
        self.start_s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start_s.is_empty()
    }

    /// Every column by name, in the order the records are documented and written.
    pub fn columns(&self) -> [(&'static str, ColumnValues<'_>); 19] {
        macro_rules! listed {
            ($($column:ident: $type:ty => $kind:ident),+) => {
                [$((stringify!($column), ColumnValues::$kind(&self.$column))),+]
            };
        }
        with_iteration_columns!(listed)
    }

    /// Hands every column to `each`, in `columns()` order, freeing it once `each` returns: a
    /// copy made of the records never sits beside all of them.
    pub fn into_each_column<E>(
        self,
        mut each: impl FnMut(&'static str, ColumnValues<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        macro_rules! hand_over {
            ($($column:ident: $type:ty => $kind:ident),+) => {
                let IterationRecords { $($column),+ } = self;
                $(each(stringify!($column), ColumnValues::$kind(&$column))?; drop($column);)+
            };
        }
        with_iteration_columns!(hand_over);
        Ok(())
    }

    pub fn push(&mut self, at: ReplicaSnapshot, start: f64, end: f64, time: &IterationTime) {
        self.replica.push(at.replica);
        self.start_s.push(start);
        self.end_s.push(end);
        self.num_seqs.push(time.num_seqs);
        self.num_prefill_seqs.push(time.attention_work.num_prefills);
        let num_decodes = time.attention_work.num_decodes;
        self.num_prefill_tokens
            .push(time.num_tokens - u64::from(num_decodes));
        self.num_decode_tokens.push(num_decodes);
        self.num_sampled.push(time.num_sampled);
        self.decode_context_tokens.push(time.decode_context_tokens);
        self.num_preempted.push(at.num_preempted);
        self.num_blocks_used.push(at.num_blocks_used);
        self.num_waiting.push(at.num_waiting);
        self.num_running.push(at.num_running);
        self.forward_s.push(time.forward_s() as f32);
        self.attention_s.push(time.attention_s as f32);
        self.communication_s.push(time.communication_s as f32);
        self.cpu_s.push(time.cpu_s() as f32);
        let work = &time.attention_work;
        self.attention_flops.push(work.flops() as f32);
        self.attention_bytes.push(work.bytes() as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_handed_over_as_they_are_listed() {
        let mut records = IterationRecords::default();
        for (index, column) in records.columns().iter().enumerate() {
            assert!(column.1.is_empty(), "{index}");
        }
        records.replica = vec![3, 4];
        records.start_s = vec![0.5, 1.5];
        records.num_prefill_tokens = vec![7, 8];
        records.attention_bytes = vec![2.0, 4.0];
        let listed: Vec<String> = records
            .columns()
            .iter()
            .map(|(name, values)| format!("{name}={values:?}"))
            .collect();
        let mut handed = Vec::new();
        records
            .into_each_column(|name, values| {
                handed.push(format!("{name}={values:?}"));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(handed, listed);
    }
}
