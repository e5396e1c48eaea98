//! Deadline misses of token streams, counted token by token: metron's deadline counts (behind the
//! fluidity-index), decode miss rate (behind its fluidity curve) and minimum TBT deadline, for a
//! simulated run's columns.
//!
//! metron (`metron.fluidity`, `metron.gap_buckets`) defines them: token 0 is due `D_p` after the
//! send, every later token `d` after the previous one; a token early by `e` banks `e` as slack;
//! a token later than its deadline plus the slack by `l` misses `1 + l / d` deadlines (integer
//! division) and leaves no slack; an on-time token meets one. The decode miss rate counts from
//! the first token with no slack and ignores its deadline. Times are integer nanoseconds, so
//! every count is exact and equals metron's.

/// How finely `min_tbt_deadline` searches, in nanoseconds (metron's resolution).
pub const SEARCH_RESOLUTION_NS: i64 = 1_000;

/// Token times beyond this many seconds either way cannot be nanoseconds in an i64 (metron's
/// `MAX_ABS_TIME_S`).
pub const MAX_ABS_TIME_S: f64 = (1u64 << 62) as f64 / 1e9;

/// A time in seconds as integer nanoseconds, as metron's `to_ns` makes it (`rint(t * 1e9)`,
/// ties to even); the time must be within `MAX_ABS_TIME_S` (`Streams::new` checks).
fn to_ns(time_s: f64) -> i64 {
    (time_s * 1e9).round_ties_even() as i64
}

/// (missed, total) deadlines of a stream sent at `arrival_ns` whose tokens (token 0 included)
/// arrived at `times_ns`; `tbt_ns` > 0, `ttft_ns` >= 0. (0, 0) for a stream with no tokens.
pub fn count_deadlines(arrival_ns: i64, times_ns: &[i64], ttft_ns: i64, tbt_ns: i64) -> (i64, i64) {
    let (mut slack, mut missed, mut num_late) = (0i64, 0i64, 0i64);
    let mut previous = arrival_ns;
    for (index, &time) in times_ns.iter().enumerate() {
        let deadline = if index == 0 { ttft_ns } else { tbt_ns };
        let banked = slack + deadline - (time - previous);
        previous = time;
        if banked < 0 {
            missed += 1 + (-banked) / tbt_ns;
            num_late += 1;
            slack = 0;
        } else {
            slack = banked;
        }
    }
    (missed, times_ns.len() as i64 - num_late + missed)
}

/// Missed / total deadlines of the tokens after the first, whose gaps (ns) are `gaps`, at a
/// TBT deadline of `deadline_ns` (> 0). 0 for a stream with no gaps.
pub fn decode_miss_rate(gaps: &[i64], deadline_ns: i64) -> f64 {
    let mut slack = 0i64;
    let mut missed = 0i64;
    let mut num_late = 0i64;
    for &gap in gaps {
        if gap > slack + deadline_ns {
            missed += (gap - slack) / deadline_ns;
            num_late += 1;
            slack = 0;
        } else {
            slack += deadline_ns - gap;
        }
    }
    let total = gaps.len() as i64 - num_late + missed;
    if total == 0 {
        0.0
    } else {
        missed as f64 / total as f64
    }
}

/// The smallest TBT deadline (ns) at which the stream misses at most `max_miss_rate` of its
/// decode deadlines, to `SEARCH_RESOLUTION_NS` and never below the true minimum, by metron's
/// bisection (the miss rate never rises with the deadline). None for a stream with no gaps.
pub fn min_tbt_deadline(gaps: &[i64], max_miss_rate: f64) -> Option<i64> {
    let mut high = *gaps.iter().max()?; // at the largest gap every token is on time
    let mut low = 0i64; // never passes: a deadline must be positive
    while high - low > SEARCH_RESOLUTION_NS {
        let middle = ((low + high) / 2).max(1);
        if decode_miss_rate(gaps, middle) <= max_miss_rate {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

/// Streams given end to end: stream i's token times (seconds) are the `num_tokens[i]` entries of
/// `token_times_s` after the previous streams'. Yields each stream's times in nanoseconds, made
/// one stream at a time (a run's times are not held twice), and its gaps.
pub struct Streams<'a> {
    token_times_s: &'a [f64],
    num_tokens: &'a [i64],
    /// The index of this part's first stream among all the streams.
    first_stream: usize,
}

impl<'a> Streams<'a> {
    /// Checks that the counts are non-negative and add up to the times given, and that every
    /// time is finite seconds within `MAX_ABS_TIME_S`.
    pub fn new(token_times_s: &'a [f64], num_tokens: &'a [i64]) -> Result<Self, String> {
        if let Some(count) = num_tokens.iter().find(|&&count| count < 0) {
            return Err(format!("a stream cannot have {count} tokens"));
        }
        let total: i64 = num_tokens.iter().sum();
        if total != token_times_s.len() as i64 {
            return Err(format!(
                "{} token times for {total} tokens",
                token_times_s.len()
            ));
        }
        if let Some(time) = token_times_s
            .iter()
            .find(|time| !time.is_finite() || time.abs() > MAX_ABS_TIME_S)
        {
            return Err(format!(
                "times must be finite seconds within +-{MAX_ABS_TIME_S:e}, got {time}"
            ));
        }
        Ok(Self {
            token_times_s,
            num_tokens,
            first_stream: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.num_tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.num_tokens.is_empty()
    }

    /// The streams in up to `num_parts` consecutive parts of about equal numbers of tokens.
    pub fn parts(&self, num_parts: usize) -> Vec<Streams<'a>> {
        let total = self.token_times_s.len().max(1);
        let num_parts = num_parts.max(1);
        let mut parts = Vec::with_capacity(num_parts);
        let (mut first_stream, mut first_token, mut tokens) = (0usize, 0usize, 0usize);
        for (stream, &count) in self.num_tokens.iter().enumerate() {
            tokens += count as usize;
            let is_last = stream + 1 == self.num_tokens.len();
            if is_last || tokens * num_parts >= total * (parts.len() + 1) {
                parts.push(Streams {
                    token_times_s: &self.token_times_s[first_token..tokens],
                    num_tokens: &self.num_tokens[first_stream..=stream],
                    first_stream: self.first_stream + first_stream,
                });
                (first_stream, first_token) = (stream + 1, tokens);
            }
        }
        parts
    }

    /// Each stream's token times (ns), in order, with its index in this part.
    fn each(&self, mut visit: impl FnMut(usize, &[i64])) {
        let (mut start, mut times_ns) = (0usize, Vec::new());
        for (stream, &count) in self.num_tokens.iter().enumerate() {
            let times = &self.token_times_s[start..start + count as usize];
            times_ns.clear();
            times_ns.extend(times.iter().map(|&time| to_ns(time)));
            visit(stream, &times_ns);
            start += count as usize;
        }
    }

    /// Each stream's gaps between consecutive tokens (ns), in order.
    fn gaps(&self, mut visit: impl FnMut(usize, &[i64])) {
        let mut gaps = Vec::new();
        self.each(|stream, times| {
            gaps.clear();
            gaps.extend(times.windows(2).map(|pair| pair[1] - pair[0]));
            visit(stream, &gaps);
        });
    }

    /// `count_deadlines` of every stream of this part; the per-stream arguments are indexed
    /// over all the streams (a part reads its own).
    pub fn count_deadlines(
        &self,
        arrivals_ns: &[i64],
        ttft_ns: &[i64],
        tbt_ns: &[i64],
    ) -> Vec<(i64, i64)> {
        let mut counts = Vec::with_capacity(self.len());
        self.each(|stream, times| {
            let i = self.first_stream + stream;
            counts.push(count_deadlines(
                arrivals_ns[i],
                times,
                ttft_ns[i],
                tbt_ns[i],
            ));
        });
        counts
    }

    /// `min_tbt_deadline` of every stream.
    pub fn min_tbt_deadlines(&self, max_miss_rate: f64) -> Vec<Option<i64>> {
        let mut found = vec![None; self.len()];
        self.gaps(|stream, gaps| found[stream] = min_tbt_deadline(gaps, max_miss_rate));
        found
    }

    /// `decode_miss_rate` of every stream at every deadline: row-major [stream][deadline].
    pub fn miss_rate_table(&self, deadlines_ns: &[i64]) -> Vec<f64> {
        let mut table = vec![0.0; self.len() * deadlines_ns.len()];
        self.gaps(|stream, gaps| {
            let row = &mut table[stream * deadlines_ns.len()..(stream + 1) * deadlines_ns.len()];
            let shortest = gaps.iter().copied().min().unwrap_or(0);
            let longest = gaps.iter().copied().max().unwrap_or(0);
            for (rate, &deadline) in row.iter_mut().zip(deadlines_ns) {
                // At or past the longest gap every token is on time; below the shortest every
                // token is late with no slack ever banked, and misses all it counts.
                *rate = if gaps.is_empty() || deadline >= longest {
                    0.0
                } else if deadline < shortest {
                    1.0
                } else {
                    decode_miss_rate(gaps, deadline)
                };
            }
        });
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn early_tokens_bank_slack_that_a_later_gap_spends() {
        // d = 10 ms: gaps 4, 4 bank 12 ms; the 20 ms gap is due within 22 ms, on time.
        assert_eq!(decode_miss_rate(&[4 * MS, 4 * MS, 20 * MS], 10 * MS), 0.0);
        // a 35 ms gap: late, misses (35 - 12) / 10 = 2 deadlines; met 2, missed 2.
        assert_eq!(decode_miss_rate(&[4 * MS, 4 * MS, 35 * MS], 10 * MS), 0.5);
    }

    #[test]
    fn a_late_token_leaves_no_slack() {
        // 25 ms: late with no slack, misses 2; 5 ms banks 5; 16 ms is past 5 + 10: late,
        // misses (16 - 5) / 10 = 1. Met 1, missed 3.
        assert_eq!(decode_miss_rate(&[25 * MS, 5 * MS, 16 * MS], 10 * MS), 0.75);
    }

    #[test]
    fn the_first_token_is_due_the_ttft_deadline_after_the_send() {
        // Sent at 100 ms, TTFT deadline 50 ms, d = 10 ms: token 0 at 130 ms banks 20 ms; a
        // 25 ms gap spends 15 of it; a 26 ms gap is due within 15 ms, 11 ms late: misses
        // 1 + 11 / 10 = 2.
        let times = [130 * MS, 155 * MS, 181 * MS];
        assert_eq!(count_deadlines(100 * MS, &times, 50 * MS, 10 * MS), (2, 4));
        // Token 0 at 185 ms is 35 ms late: misses 1 + 35 / 10 = 4, and banks nothing.
        assert_eq!(
            count_deadlines(100 * MS, &[185 * MS], 50 * MS, 10 * MS),
            (4, 4)
        );
        assert_eq!(count_deadlines(0, &[], 50 * MS, 10 * MS), (0, 0));
    }

    #[test]
    fn a_gap_equal_to_the_deadline_is_on_time() {
        assert_eq!(decode_miss_rate(&[10 * MS, 10 * MS], 10 * MS), 0.0);
        assert_eq!(decode_miss_rate(&[], 10 * MS), 0.0);
    }

    #[test]
    fn the_minimum_deadline_is_within_the_resolution_above_the_true_one() {
        // Gaps 10 ms and 30 ms: with max miss rate 0, d must be >= 20 ms (10 banks d - 10,
        // the 30 ms gap needs 30 <= 2d - 10).
        let found = min_tbt_deadline(&[10 * MS, 30 * MS], 0.0).unwrap();
        assert!(
            found >= 20 * MS && found - 20 * MS <= SEARCH_RESOLUTION_NS,
            "{found}"
        );
        assert_eq!(min_tbt_deadline(&[], 0.1), None);
    }

    #[test]
    fn seconds_become_nanoseconds_as_metron_rounds_them() {
        let times = [0.0, 1.5e-9, 2.5e-9, -0.25, 1.0];
        let streams = Streams::new(&times, &[5]).unwrap();
        let mut seen = Vec::new();
        streams.each(|_, times_ns| seen.extend_from_slice(times_ns));
        assert_eq!(seen, vec![0, 2, 2, -250 * MS, 1000 * MS]);
        for bad in [f64::NAN, f64::INFINITY, 4.7e9] {
            let error = Streams::new(&[0.0, bad], &[2]).err().unwrap();
            assert!(error.contains("finite seconds"), "{error}");
        }
    }

    #[test]
    fn streams_split_times_by_their_counts() {
        let times = [0.0, 0.005, 0.030, 0.1, 0.0, 0.01];
        let streams = Streams::new(&times, &[3, 1, 0, 2]).unwrap();
        let table = streams.miss_rate_table(&[10 * MS]);
        // Stream 0: gaps 5, 25 at 10 ms: 5 banks 5, 25 misses (25 - 5) / 10 = 2; met 1, missed 2.
        assert_eq!(table, vec![2.0 / 3.0, 0.0, 0.0, 0.0]);
        let found = streams.min_tbt_deadlines(0.1);
        assert_eq!((found[1], found[2]), (None, None));
        for deadline in [1, 4 * MS, 5 * MS, 24 * MS, 25 * MS, 26 * MS] {
            let rates = streams.miss_rate_table(&[deadline]);
            assert_eq!(
                rates[0],
                decode_miss_rate(&[5 * MS, 25 * MS], deadline),
                "{deadline}"
            );
        }
        let parts = streams.parts(2);
        assert_eq!(
            parts.iter().map(Streams::len).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let rejoined: Vec<f64> = parts
            .iter()
            .flat_map(|part| part.miss_rate_table(&[10 * MS]))
            .collect();
        assert_eq!(rejoined, table);
        assert!(Streams::new(&times, &[3, 1]).is_err());
        assert!(Streams::new(&times, &[7, -1]).is_err());
    }
}
