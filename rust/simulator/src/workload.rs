use crate::error::{Result, SimulatorError};

/// The requests to simulate, in arrival order, as columns. Request `i` is scheduled under id `i`.
///
/// With [`Workload::with_prefix_sharing`] its prompts share prefixes (see `prefix_workload`): every
/// first turn starts with the same `shared_prefix_tokens`, and a later turn of a session (a
/// request that `follows` another) is sent `think_time_s` after the one it follows has ended, its
/// prompt that one's prompt and output, then its own message. Its `arrival_times` entry is then
/// only the earliest it could go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub arrival_times: Vec<f64>,
    pub num_prompt_tokens: Vec<u32>,
    pub num_output_tokens: Vec<u32>,
    pub shared_prefix_tokens: u32,
    /// Per request the earlier request it follows ([`NO_PREDECESSOR`] for none); empty: none does.
    pub follows: Vec<u32>,
    /// Per request following another, from that one's end to its own send; empty with `follows`.
    pub think_time_s: Vec<f64>,
}

/// A request that follows no other in `Workload::follows`.
pub const NO_PREDECESSOR: u32 = u32::MAX;

impl Workload {
    pub fn new(
        arrival_times: Vec<f64>,
        num_prompt_tokens: Vec<u32>,
        num_output_tokens: Vec<u32>,
    ) -> Result<Self> {
        let fail = |reason: String| Err(SimulatorError::InvalidWorkload(reason));
        let n = arrival_times.len();
        if num_prompt_tokens.len() != n || num_output_tokens.len() != n {
            return fail(format!(
                "arrival_times, prompt and output token counts must have one entry per request \
                 (got {n}, {} and {})",
                num_prompt_tokens.len(),
                num_output_tokens.len()
            ));
        }
        if n > u32::MAX as usize {
            return fail(format!(
                "{n} requests is more than one simulation can index"
            ));
        }
        if let Some(i) = arrival_times
            .iter()
            .position(|t| !(t.is_finite() && *t >= 0.0))
        {
            return fail(format!(
                "request {i} arrives at {}; arrival times must be finite and non-negative",
                arrival_times[i]
            ));
        }
        if let Some(i) = arrival_times.windows(2).position(|pair| pair[0] > pair[1]) {
            return fail(format!(
                "arrival times must be sorted; request {} arrives at {} after request {} at {}",
                i + 1,
                arrival_times[i + 1],
                i,
                arrival_times[i]
            ));
        }
        if let Some(i) = num_output_tokens.iter().position(|&n| n == 0) {
            return fail(format!("request {i} asks for no output tokens"));
        }
        if let Some(i) = num_prompt_tokens.iter().position(|&n| n == 0) {
            return fail(format!("request {i} has an empty prompt"));
        }
        Ok(Workload {
            arrival_times,
            num_prompt_tokens,
            num_output_tokens,
            ..Workload::default()
        })
    }

    /// The same requests with shared prefixes and sessions; `follows` and `think_time_s` have
    /// one entry per request or none. A request follows an earlier one that no other request
    /// follows, and its prompt holds that one's prompt and output.
    pub fn with_prefix_sharing(
        self,
        shared_prefix_tokens: u32,
        follows: Vec<u32>,
        think_time_s: Vec<f64>,
    ) -> Result<Self> {
        let fail = |reason: String| Err(SimulatorError::InvalidWorkload(reason));
        let n = self.len();
        if !follows.is_empty() && follows.len() != n || think_time_s.len() != follows.len() {
            return fail(format!(
                "follows and think_time_s must have one entry per request or none \
                 (got {} and {} for {n} requests)",
                follows.len(),
                think_time_s.len()
            ));
        }
        let mut is_followed = vec![false; if follows.is_empty() { 0 } else { n }];
        for (i, &before) in follows.iter().enumerate() {
            if before == NO_PREDECESSOR {
                continue;
            }
            let b = before as usize;
            if b >= i {
                return fail(format!(
                    "request {i} follows request {before}; a request follows an earlier one"
                ));
            }
            if std::mem::replace(&mut is_followed[b], true) {
                return fail(format!("request {before} is followed by two requests"));
            }
            let history =
                u64::from(self.num_prompt_tokens[b]) + u64::from(self.num_output_tokens[b]);
            if u64::from(self.num_prompt_tokens[i]) < history {
                return fail(format!(
                    "request {i} has a {}-token prompt, shorter than the {history} tokens of \
                     prompt and output of request {before}, which it follows",
                    self.num_prompt_tokens[i]
                ));
            }
            let think = think_time_s[i];
            if !(think.is_finite() && think >= 0.0) {
                return fail(format!(
                    "request {i} has think time {think}; think times must be finite and non-negative"
                ));
            }
        }
        Ok(Workload {
            shared_prefix_tokens,
            follows,
            think_time_s,
            ..self
        })
    }

    /// The request that `request` follows, if any.
    pub fn predecessor(&self, request: usize) -> Option<usize> {
        match self.follows.get(request) {
            Some(&before) if before != NO_PREDECESSOR => Some(before as usize),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.arrival_times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrival_times.is_empty()
    }

    pub fn total_output_tokens(&self) -> u64 {
        self.num_output_tokens.iter().map(|&n| u64::from(n)).sum()
    }
}
