//! A workload's shared prefixes and sessions from Python columns, and the prompts' token ids
//! the simulator builds from them (`simulator::prefix_workload`).

use pyo3::prelude::*;
use simulator::{prefix_workload, Workload, NO_PREDECESSOR};

use crate::errors::{invalid_workload, to_py};

/// `workload` with `shared_prefix_tokens` before every first turn and, where `follows` is given
/// (per request the workload index of the request it follows, -1 for none), sessions.
pub fn with_prefix_sharing(
    workload: Workload,
    shared_prefix_tokens: i64,
    follows: Option<Vec<i64>>,
    think_time_s: Option<Vec<f64>>,
) -> PyResult<Workload> {
    let shared = u32::try_from(shared_prefix_tokens).map_err(|_| {
        invalid_workload(format!(
            "shared_prefix_tokens must be in 0..=4294967295, got {shared_prefix_tokens}"
        ))
    })?;
    let follows = follows
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, before)| match before {
            -1 => Ok(NO_PREDECESSOR),
            _ => u32::try_from(before)
                .ok()
                .filter(|&b| b != NO_PREDECESSOR)
                .ok_or_else(|| {
                    invalid_workload(format!(
                        "follows[{i}] must be -1 (none) or a request index, got {before}"
                    ))
                }),
        })
        .collect::<PyResult<Vec<u32>>>()?;
    workload
        .with_prefix_sharing(shared, follows, think_time_s.unwrap_or_default())
        .map_err(to_py)
}

/// The token ids the simulator gives request `request`'s prompt (its index in the workload)
/// when the scheduler caches prefixes: drawn tokens in 1..256 with the workload's sharing
/// structure, a later turn holding the turn before and its output (token 0).
#[pyfunction]
#[pyo3(signature = (*, num_prompt_tokens, num_output_tokens, request, shared_prefix_tokens = 0, follows = None))]
pub fn prompt_token_ids(
    num_prompt_tokens: Vec<u32>,
    num_output_tokens: Vec<u32>,
    request: usize,
    shared_prefix_tokens: i64,
    follows: Option<Vec<i64>>,
) -> PyResult<Vec<u32>> {
    let n = num_prompt_tokens.len();
    let workload =
        Workload::new(vec![0.0; n], num_prompt_tokens, num_output_tokens).map_err(to_py)?;
    let think = follows.as_ref().map(|f| vec![0.0; f.len()]);
    let workload = with_prefix_sharing(workload, shared_prefix_tokens, follows, think)?;
    if request >= n {
        return Err(invalid_workload(format!(
            "request {request} is not in a workload of {n}"
        )));
    }
    Ok(prefix_workload::prompt_token_ids(&workload, request))
}
