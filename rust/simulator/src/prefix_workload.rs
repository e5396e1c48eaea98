//! Prompts with the sharing structure of metron's workloads, as token ids a prefix cache can
//! match: metron's shared system prompt (`--shared-prefix-tokens`) before every first turn, and
//! sessions (`--sessions --turns --think-time`) whose later turns continue the conversation.
//!
//! A request's prompt is made of drawn tokens, each stretch seeded by what it is, so equal
//! stretches are equal and distinct ones differ: the shared prefix (one stream for the whole
//! workload), then the first turn's own text (a stream per request); a later turn is the turn it
//! follows, that turn's output, then its own text. Output tokens are 0, what a simulated replica
//! samples, so a later turn's prompt holds exactly the tokens its predecessor's KV was computed
//! for. Drawn tokens are 1..SYNTHETIC_VOCAB_SIZE.

use crate::router::SplitMix64;
use crate::workload::Workload;

/// Drawn prompt tokens are below this (and never 0, the simulated output token).
pub const SYNTHETIC_VOCAB_SIZE: u32 = 256;

const SHARED_PREFIX_STREAM: u64 = 0x5348_4152_4544;

/// The prompt's token ids of `request` (its index in the workload).
pub fn prompt_token_ids(workload: &Workload, request: usize) -> Vec<u32> {
    let mut turns = vec![request];
    while let Some(before) = workload.predecessor(*turns.last().expect("never empty")) {
        turns.push(before);
    }
    turns.reverse();
    let prompt = |i: usize| workload.num_prompt_tokens[i] as usize;
    let mut tokens = Vec::with_capacity(prompt(request));
    let first = turns[0];
    let shared = (workload.shared_prefix_tokens as usize).min(prompt(first));
    push_drawn(&mut tokens, SHARED_PREFIX_STREAM, shared);
    push_drawn(&mut tokens, own_stream(first), prompt(first) - shared);
    for pair in turns.windows(2) {
        let (before, turn) = (pair[0], pair[1]);
        tokens.resize(
            tokens.len() + workload.num_output_tokens[before] as usize,
            0,
        );
        let own = prompt(turn) - tokens.len();
        push_drawn(&mut tokens, own_stream(turn), own);
    }
    tokens
}

fn own_stream(request: usize) -> u64 {
    (request as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4f57_4e00
}

fn push_drawn(tokens: &mut Vec<u32>, stream: u64, count: usize) {
    let mut rng = SplitMix64::new(stream);
    tokens.extend((0..count).map(|_| 1 + rng.below(SYNTHETIC_VOCAB_SIZE - 1)));
}

/// Which request follows each (the inverse of `Workload::follows`), and the first turns in order.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    follower: Vec<u32>,
}

impl Sessions {
    pub fn new(workload: &Workload) -> Self {
        let mut follower = vec![
            u32::MAX;
            if workload.follows.is_empty() {
                0
            } else {
                workload.len()
            }
        ];
        for request in 0..workload.follows.len() {
            if let Some(before) = workload.predecessor(request) {
                follower[before] = request as u32;
            }
        }
        Sessions { follower }
    }

    pub fn follower(&self, request: usize) -> Option<u32> {
        self.follower
            .get(request)
            .copied()
            .filter(|&f| f != u32::MAX)
    }

    /// The first request from `start` on that follows none (sent at its own arrival time).
    pub fn next_first_turn(workload: &Workload, start: usize) -> Option<usize> {
        (start..workload.len()).find(|&i| workload.predecessor(i).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::NO_PREDECESSOR;

    fn sessions_workload() -> Workload {
        // Requests 0 and 1 open sessions; 2 follows 0, 3 follows 2.
        Workload::new(
            vec![0.0, 1.0, 2.0, 3.0],
            vec![10, 12, 17, 26],
            vec![3, 2, 4, 1],
        )
        .unwrap()
        .with_prefix_sharing(
            6,
            vec![NO_PREDECESSOR, NO_PREDECESSOR, 0, 2],
            vec![0.0, 0.0, 0.5, 0.5],
        )
        .unwrap()
    }

    #[test]
    fn first_turns_share_the_prefix_and_later_turns_their_conversation() {
        let workload = sessions_workload();
        let prompts: Vec<_> = (0..4).map(|i| prompt_token_ids(&workload, i)).collect();
        for (i, prompt) in prompts.iter().enumerate() {
            assert_eq!(prompt.len(), workload.num_prompt_tokens[i] as usize);
        }
        assert_eq!(prompts[0][..6], prompts[1][..6]);
        assert_ne!(prompts[0][6..10], prompts[1][6..10]);
        // Request 2: request 0's prompt, its 3 output tokens (0), then 4 tokens of its own.
        assert_eq!(prompts[2][..10], prompts[0][..]);
        assert_eq!(prompts[2][10..13], [0, 0, 0]);
        assert!(prompts[2][13..]
            .iter()
            .all(|&t| (1..SYNTHETIC_VOCAB_SIZE).contains(&t)));
        assert_eq!(prompts[3][..17], prompts[2][..]);
        assert_eq!(prompts[3][17..21], [0; 4]);
        assert_eq!(prompts[0], prompt_token_ids(&workload, 0));
    }

    #[test]
    fn sessions_know_each_follower_and_the_first_turns() {
        let workload = sessions_workload();
        let sessions = Sessions::new(&workload);
        let followers: Vec<_> = (0..4).map(|i| sessions.follower(i)).collect();
        assert_eq!(followers, [Some(2), None, Some(3), None]);
        assert_eq!(Sessions::next_first_turn(&workload, 0), Some(0));
        assert_eq!(Sessions::next_first_turn(&workload, 2), None);
        let plain = Workload::new(vec![0.0], vec![4], vec![1]).unwrap();
        assert_eq!(Sessions::new(&plain).follower(0), None);
        assert_eq!(Sessions::next_first_turn(&plain, 0), Some(0));
    }

    #[test]
    fn bad_sessions_are_refused_by_name() {
        let base = || Workload::new(vec![0.0, 1.0], vec![10, 20], vec![3, 2]).unwrap();
        let error = |follows: Vec<u32>, think: Vec<f64>| {
            base()
                .with_prefix_sharing(0, follows, think)
                .unwrap_err()
                .to_string()
        };
        assert!(error(vec![1, NO_PREDECESSOR], vec![0.0; 2]).contains("follows an earlier one"));
        assert!(error(vec![NO_PREDECESSOR, 0], vec![0.0, -1.0]).contains("think time -1"));
        assert!(error(vec![NO_PREDECESSOR], vec![0.0]).contains("one entry per request"));
        let short = Workload::new(vec![0.0, 1.0], vec![10, 12], vec![3, 2]).unwrap();
        let message = short
            .with_prefix_sharing(0, vec![NO_PREDECESSOR, 0], vec![0.0; 2])
            .unwrap_err()
            .to_string();
        assert!(message.contains("shorter than the 13 tokens"), "{message}");
    }
}
