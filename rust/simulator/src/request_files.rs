//! A simulated run's per-request files in the shared run format, written from its columns:
//! `requests.jsonl` (one metron `RequestRecord` per line, its fields in the record's order) and
//! `requests.csv` (the record's scalar fields), byte for byte what metron's `write_run` makes of
//! the same records (floats in the JSON as msgspec writes them, in the CSV as Python does).

use std::io::{self, Write};

use crate::python_float::{push_display, PythonFloats};

/// Outcome names, indexed by `RequestColumns::outcome`.
pub const OUTCOMES: [&str; 4] = ["finished", "ended_early", "error", "interrupted"];

/// metron's `REQUEST_CSV_COLUMNS`.
const CSV_HEADER: &str = "id,arrival_s,scheduled_arrival_s,prompt_tokens,requested_prompt_tokens,\
output_tokens,requested_output_tokens,ttft_s,tpot_s,e2e_s,normalized_latency_s,scheduling_delay_s,\
fluidity_index,missed_deadlines,total_deadlines,min_tbt_deadline_s,outcome,error,warmup";

/// Per request, in workload order. Optional values are NaN where the record holds None;
/// request i's token times are the `num_tokens[i]` entries of `token_times_s` after the
/// previous requests'.
pub struct RequestColumns<'a> {
    pub ids: &'a [i64],
    pub arrival_s: &'a [f64],
    pub prompt_tokens: &'a [i64],
    pub requested_output_tokens: &'a [i64],
    pub warmup: &'a [bool],
    pub num_tokens: &'a [i64],
    pub token_times_s: &'a [f64],
    pub outcome: &'a [u8],
    pub error: Vec<Option<&'a str>>,
    pub ttft_s: &'a [f64],
    pub tpot_s: &'a [f64],
    pub e2e_s: &'a [f64],
    pub normalized_latency_s: &'a [f64],
    pub scheduling_delay_s: &'a [f64],
    pub fluidity_index: &'a [f64],
    pub missed_deadlines: &'a [i64],
    pub total_deadlines: &'a [i64],
    pub ttft_deadline_s: &'a [f64],
    pub tbt_deadline_s: f64,
    pub min_tbt_deadline_s: &'a [f64],
    /// When the workload wanted each request sent, where not `arrival_s` (a session's later turns).
    pub scheduled_arrival_s: Option<&'a [f64]>,
    /// Prompt tokens found cached, -1 for None; None: the run caches no prefix.
    pub cached_prompt_tokens: Option<&'a [i64]>,
}

impl RequestColumns<'_> {
    /// Names the first column whose length differs from the number of requests, or a token
    /// count that does not add up.
    pub fn check(&self) -> Result<(), String> {
        let n = self.ids.len();
        let lengths = [
            ("arrival_s", self.arrival_s.len()),
            ("prompt_tokens", self.prompt_tokens.len()),
            (
                "requested_output_tokens",
                self.requested_output_tokens.len(),
            ),
            ("warmup", self.warmup.len()),
            ("num_tokens", self.num_tokens.len()),
            ("outcome", self.outcome.len()),
            ("error", self.error.len()),
            ("ttft_s", self.ttft_s.len()),
            ("tpot_s", self.tpot_s.len()),
            ("e2e_s", self.e2e_s.len()),
            ("normalized_latency_s", self.normalized_latency_s.len()),
            ("scheduling_delay_s", self.scheduling_delay_s.len()),
            ("fluidity_index", self.fluidity_index.len()),
            ("missed_deadlines", self.missed_deadlines.len()),
            ("total_deadlines", self.total_deadlines.len()),
            ("ttft_deadline_s", self.ttft_deadline_s.len()),
            ("min_tbt_deadline_s", self.min_tbt_deadline_s.len()),
            (
                "scheduled_arrival_s",
                self.scheduled_arrival_s.map_or(n, <[f64]>::len),
            ),
            (
                "cached_prompt_tokens",
                self.cached_prompt_tokens.map_or(n, <[i64]>::len),
            ),
        ];
        if let Some((name, length)) = lengths.iter().find(|(_, length)| *length != n) {
            return Err(format!("{name} has {length} values for {n} requests"));
        }
        if self.num_tokens.iter().any(|&count| count < 0)
            || self.num_tokens.iter().sum::<i64>() != self.token_times_s.len() as i64
        {
            return Err(format!(
                "num_tokens does not split {} token times",
                self.token_times_s.len()
            ));
        }
        if let Some(outcome) = self
            .outcome
            .iter()
            .find(|&&o| usize::from(o) >= OUTCOMES.len())
        {
            return Err(format!("no outcome has index {outcome}"));
        }
        Ok(())
    }

    /// `requests.jsonl`, its lines formatted on up to `num_threads` threads at a time, a part
    /// of about `part_weight` tokens and requests each, written in order as they are done (so
    /// at most `num_threads` parts are in memory, whatever the run's length).
    pub fn write_jsonl(
        &self,
        out: &mut impl Write,
        num_threads: usize,
        part_weight: usize,
    ) -> io::Result<()> {
        let parts = self.parts(part_weight.max(1));
        for group in parts.chunks(num_threads.max(1)) {
            let texts: Vec<String> = std::thread::scope(|scope| {
                let running: Vec<_> = group
                    .iter()
                    .map(|(requests, first_token)| {
                        scope.spawn(move || self.jsonl_lines(requests.clone(), *first_token))
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|handle| {
                        handle
                            .join()
                            .expect("a thread formatting requests.jsonl panicked")
                    })
                    .collect()
            });
            texts
                .iter()
                .try_for_each(|text| out.write_all(text.as_bytes()))?;
        }
        Ok(())
    }

    /// Consecutive runs of requests of about `weight` tokens and requests each, with the index
    /// of each run's first token.
    fn parts(&self, weight: usize) -> Vec<(std::ops::Range<usize>, usize)> {
        let mut parts = Vec::new();
        let (mut first, mut first_token, mut token, mut held) = (0, 0, 0, 0);
        for i in 0..self.ids.len() {
            token += self.num_tokens[i] as usize;
            held += self.num_tokens[i] as usize + 1;
            if i + 1 == self.ids.len() || held >= weight {
                parts.push((first..i + 1, first_token));
                (first, first_token, held) = (i + 1, token, 0);
            }
        }
        parts
    }

    /// The lines of `requests`, whose first token is `first_token`.
    fn jsonl_lines(&self, requests: std::ops::Range<usize>, first_token: usize) -> String {
        // About 20 bytes per token time and per gap, 700 per record: grown once, not copied.
        let num_tokens: i64 = self.num_tokens[requests.clone()].iter().sum();
        let capacity = 40 * num_tokens as usize + 700 * requests.len();
        let (mut line, mut floats) = (String::with_capacity(capacity), PythonFloats::default());
        let mut start = first_token;
        for i in requests {
            let times = &self.token_times_s[start..start + self.num_tokens[i] as usize];
            start += times.len();
            let outcome = OUTCOMES[usize::from(self.outcome[i])];
            let field = |line: &mut String, name: &str| {
                line.push_str(if line.ends_with('{') { "\"" } else { ",\"" });
                line.push_str(name);
                line.push_str("\":");
            };
            line.push('{');
            field(&mut line, "id");
            push_display(&mut line, self.ids[i]);
            field(&mut line, "arrival_s");
            floats.push_json(&mut line, self.arrival_s[i]);
            field(&mut line, "prompt_tokens");
            push_display(&mut line, self.prompt_tokens[i]);
            field(&mut line, "output_tokens");
            push_display(&mut line, times.len());
            field(&mut line, "token_times_s");
            push_float_list(&mut line, &mut floats, times.iter().copied());
            field(&mut line, "ttft_s");
            push_optional(&mut line, &mut floats, self.ttft_s[i]);
            field(&mut line, "tbt_s");
            push_float_list(
                &mut line,
                &mut floats,
                times.windows(2).map(|pair| pair[1] - pair[0]),
            );
            for (name, column) in [
                ("tpot_s", self.tpot_s),
                ("e2e_s", self.e2e_s),
                ("normalized_latency_s", self.normalized_latency_s),
                ("scheduling_delay_s", self.scheduling_delay_s),
                ("fluidity_index", self.fluidity_index),
            ] {
                field(&mut line, name);
                push_optional(&mut line, &mut floats, column[i]);
            }
            field(&mut line, "missed_deadlines");
            push_display(&mut line, self.missed_deadlines[i]);
            field(&mut line, "total_deadlines");
            push_display(&mut line, self.total_deadlines[i]);
            field(&mut line, "ttft_deadline_s");
            floats.push_json(&mut line, self.ttft_deadline_s[i]);
            field(&mut line, "tbt_deadline_s");
            floats.push_json(&mut line, self.tbt_deadline_s);
            field(&mut line, "min_tbt_deadline_s");
            push_optional(&mut line, &mut floats, self.min_tbt_deadline_s[i]);
            field(&mut line, "finished");
            line.push_str(if outcome == "finished" {
                "true"
            } else {
                "false"
            });
            field(&mut line, "outcome");
            push_json_string(&mut line, outcome);
            field(&mut line, "error");
            match self.error[i] {
                Some(error) => push_json_string(&mut line, error),
                None => line.push_str("null"),
            }
            field(&mut line, "requested_output_tokens");
            push_display(&mut line, self.requested_output_tokens[i]);
            field(&mut line, "requested_prompt_tokens");
            line.push_str("null");
            field(&mut line, "scheduled_arrival_s");
            floats.push_json(&mut line, self.scheduled_arrival(i));
            field(&mut line, "warmup");
            line.push_str(if self.warmup[i] { "true" } else { "false" });
            field(&mut line, "server_token_times_s");
            line.push_str("null");
            field(&mut line, "cached_prompt_tokens");
            match self.cached_prompt_tokens.map_or(-1, |cached| cached[i]) {
                -1 => line.push_str("null"),
                cached => push_display(&mut line, cached),
            }
            line.push_str("}\n");
        }
        line
    }

    fn scheduled_arrival(&self, i: usize) -> f64 {
        self.scheduled_arrival_s.unwrap_or(self.arrival_s)[i]
    }

    /// `requests.csv`.
    pub fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        write_csv_header(out)?;
        self.write_csv_rows(out)
    }

    /// The rows of `requests.csv`, without its header (a part of a run's requests).
    pub fn write_csv_rows(&self, out: &mut impl Write) -> io::Result<()> {
        let (mut line, mut floats) = (String::new(), PythonFloats::default());
        for i in 0..self.ids.len() {
            push_display(&mut line, self.ids[i]);
            line.push(',');
            floats.push(&mut line, self.arrival_s[i]);
            line.push(',');
            floats.push(&mut line, self.scheduled_arrival(i));
            line.push(',');
            push_display(&mut line, self.prompt_tokens[i]);
            line.push_str(",,"); // requested_prompt_tokens: None
            push_display(&mut line, self.num_tokens[i]);
            line.push(',');
            push_display(&mut line, self.requested_output_tokens[i]);
            for column in [
                self.ttft_s,
                self.tpot_s,
                self.e2e_s,
                self.normalized_latency_s,
                self.scheduling_delay_s,
                self.fluidity_index,
            ] {
                line.push(',');
                if !column[i].is_nan() {
                    floats.push(&mut line, column[i]);
                }
            }
            line.push(',');
            push_display(&mut line, self.missed_deadlines[i]);
            line.push(',');
            push_display(&mut line, self.total_deadlines[i]);
            line.push(',');
            if !self.min_tbt_deadline_s[i].is_nan() {
                floats.push(&mut line, self.min_tbt_deadline_s[i]);
            }
            line.push(',');
            line.push_str(OUTCOMES[usize::from(self.outcome[i])]);
            line.push(',');
            if let Some(error) = self.error[i] {
                push_csv_field(&mut line, error);
            }
            line.push_str(if self.warmup[i] {
                ",True\n"
            } else {
                ",False\n"
            });
            if line.len() >= 1 << 16 {
                out.write_all(line.as_bytes())?;
                line.clear();
            }
        }
        out.write_all(line.as_bytes())
    }
}

/// The header line of `requests.csv`.
pub fn write_csv_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")
}

fn push_optional(line: &mut String, floats: &mut PythonFloats, value: f64) {
    if value.is_nan() {
        line.push_str("null");
    } else {
        floats.push_json(line, value);
    }
}

fn push_float_list(
    line: &mut String,
    floats: &mut PythonFloats,
    values: impl Iterator<Item = f64>,
) {
    line.push('[');
    for (index, value) in values.enumerate() {
        if index > 0 {
            line.push(',');
        }
        floats.push_json(line, value);
    }
    line.push(']');
}

/// A JSON string as msgspec writes it: quotes, backslashes and control characters escaped
/// (`\n`, `\r`, `\t`, `\b`, `\f`, else `\u00XX`), everything else as it is.
fn push_json_string(line: &mut String, text: &str) {
    line.push('"');
    for character in text.chars() {
        match character {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\u{8}' => line.push_str("\\b"),
            '\u{c}' => line.push_str("\\f"),
            c if u32::from(c) < 0x20 => push_display(line, format_args!("\\u{:04x}", u32::from(c))),
            c => line.push(c),
        }
    }
    line.push('"');
}

/// A field as Python's `csv` module writes it (QUOTE_MINIMAL, `\n` line ends): quoted, with
/// quotes doubled, when it holds a comma, a quote or a `\n` (not a lone `\r`).
fn push_csv_field(line: &mut String, text: &str) {
    if text.contains([',', '"', '\n']) {
        line.push('"');
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_request<'a>(times: &'a [f64], error: Option<&'a str>) -> RequestColumns<'a> {
        RequestColumns {
            ids: &[7],
            arrival_s: &[0.5],
            prompt_tokens: &[12],
            requested_output_tokens: &[3],
            warmup: &[false],
            num_tokens: &[2],
            token_times_s: times,
            outcome: &[1],
            error: vec![error],
            ttft_s: &[0.25],
            tpot_s: &[0.125],
            e2e_s: &[0.375],
            normalized_latency_s: &[0.1875],
            scheduling_delay_s: &[f64::NAN],
            fluidity_index: &[1.0],
            missed_deadlines: &[0],
            total_deadlines: &[2],
            ttft_deadline_s: &[1e-5],
            tbt_deadline_s: 0.05,
            min_tbt_deadline_s: &[0.125],
            scheduled_arrival_s: None,
            cached_prompt_tokens: None,
        }
    }

    #[test]
    fn a_record_line_holds_every_field_in_order() {
        let columns = one_request(&[0.75, 0.875], Some("ended \"early\"\n"));
        columns.check().unwrap();
        let mut out = Vec::new();
        columns.write_jsonl(&mut out, 4, 1).unwrap();
        let expected = concat!(
            r#"{"id":7,"arrival_s":0.5,"prompt_tokens":12,"output_tokens":2,"token_times_s":[0.75,0.875],"#,
            r#""ttft_s":0.25,"tbt_s":[0.125],"tpot_s":0.125,"e2e_s":0.375,"normalized_latency_s":0.1875,"#,
            r#""scheduling_delay_s":null,"fluidity_index":1.0,"missed_deadlines":0,"total_deadlines":2,"#,
            r#""ttft_deadline_s":0.00001,"tbt_deadline_s":0.05,"min_tbt_deadline_s":0.125,"finished":false,"#,
            r#""outcome":"ended_early","error":"ended \"early\"\n","requested_output_tokens":3,"#,
            r#""requested_prompt_tokens":null,"scheduled_arrival_s":0.5,"warmup":false,"server_token_times_s":null,"#,
            r#""cached_prompt_tokens":null}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn the_lines_do_not_depend_on_the_number_of_threads() {
        let times = [0.5, 0.75, 1.0, 1.25, 2.0, 3.0];
        let columns = RequestColumns {
            ids: &[0, 1, 2, 3],
            arrival_s: &[0.0, 0.25, 0.5, 0.75],
            prompt_tokens: &[1, 2, 3, 4],
            requested_output_tokens: &[3, 0, 1, 2],
            warmup: &[true, false, false, false],
            num_tokens: &[3, 0, 1, 2],
            token_times_s: &times,
            outcome: &[0, 2, 0, 0],
            error: vec![None, Some("refused"), None, None],
            ttft_s: &[0.5, f64::NAN, 0.75, 0.5],
            tpot_s: &[0.25, f64::NAN, f64::NAN, 1.0],
            e2e_s: &[1.0, f64::NAN, 0.75, 2.25],
            normalized_latency_s: &[1.0 / 3.0, f64::NAN, 0.75, 1.125],
            scheduling_delay_s: &[0.0, f64::NAN, 0.1, 0.2],
            fluidity_index: &[1.0, f64::NAN, 1.0, 0.5],
            missed_deadlines: &[0, 0, 0, 1],
            total_deadlines: &[3, 0, 1, 2],
            ttft_deadline_s: &[1.0; 4],
            tbt_deadline_s: 0.5,
            min_tbt_deadline_s: &[0.25, f64::NAN, f64::NAN, 1.0],
            scheduled_arrival_s: None,
            cached_prompt_tokens: None,
        };
        columns.check().unwrap();
        let written = |threads, part_weight| {
            let mut out = Vec::new();
            columns.write_jsonl(&mut out, threads, part_weight).unwrap();
            String::from_utf8(out).unwrap()
        };
        let one = written(1, usize::MAX);
        assert_eq!(one.lines().count(), 4);
        assert!(one.contains(r#""id":1,"arrival_s":0.25,"prompt_tokens":2,"output_tokens":0,"token_times_s":[],"ttft_s":null,"tbt_s":[]"#));
        for threads in [1, 2, 3, 4, 16] {
            for part_weight in [1, 2, 3, 5, 100] {
                assert_eq!(
                    written(threads, part_weight),
                    one,
                    "{threads} threads, parts of {part_weight}"
                );
            }
        }
    }

    #[test]
    fn a_csv_row_quotes_an_error_as_python_does() {
        let columns = one_request(&[0.75, 0.875], Some("refused: 5, \"too long\""));
        let mut out = Vec::new();
        columns.write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            r#"7,0.5,0.5,12,,2,3,0.25,0.125,0.375,0.1875,,1.0,0,2,0.125,ended_early,"refused: 5, ""too long""",False"#
        );
    }

    #[test]
    fn mismatched_columns_are_named() {
        let mut columns = one_request(&[0.75], None);
        assert!(columns.check().unwrap_err().contains("num_tokens"));
        columns.token_times_s = &[0.75, 0.875];
        columns.tpot_s = &[];
        assert_eq!(
            columns.check().unwrap_err(),
            "tpot_s has 0 values for 1 requests"
        );
    }

    #[test]
    fn a_later_turn_keeps_its_scheduled_arrival_and_its_cached_prompt_tokens() {
        let mut columns = one_request(&[0.75, 0.875], None);
        columns.scheduled_arrival_s = Some(&[0.25]);
        columns.cached_prompt_tokens = Some(&[48]);
        let mut out = Vec::new();
        columns.write_jsonl(&mut out, 1, 1 << 19).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(r#""arrival_s":0.5,"#), "{line}");
        assert!(line.ends_with(r#""scheduled_arrival_s":0.25,"warmup":false,"server_token_times_s":null,"cached_prompt_tokens":48}
"#), "{line}");
        let mut out = Vec::new();
        columns.write_csv(&mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("7,0.5,0.25,12,"));
        columns.cached_prompt_tokens = Some(&[-1]);
        let mut out = Vec::new();
        columns.write_jsonl(&mut out, 1, 1 << 19).unwrap();
        assert!(String::from_utf8(out).unwrap().ends_with(
            r#""cached_prompt_tokens":null}
"#
        ));
    }
}
