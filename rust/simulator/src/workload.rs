use crate::error::{Result, SimulatorError};

/// The requests to simulate, in arrival order, as columns. Request `i` is scheduled under id `i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub arrival_times: Vec<f64>,
    pub num_prompt_tokens: Vec<u32>,
    pub num_output_tokens: Vec<u32>,
}

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
        })
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
