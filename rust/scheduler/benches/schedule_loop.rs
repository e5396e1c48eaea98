//! Microseconds per `schedule` + `update` iteration in steady state: N running requests under
//! `sarathi` with 10,000 waiting. Requests finish after 64..512 tokens and are replaced from the
//! queue, and each finished one is queued again so the waiting count stays put.
//! Prints one JSON object per N (read by benchmarks/scheduler_overhead.py).

use std::time::Instant;

use scheduler::{BatchOutputs, NewRequest, Policy, Scheduler, SchedulerConfig};

const NUM_WAITING: u64 = 10_000;
const PROMPT_LEN: u32 = 128;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn output_len(&mut self) -> u32 {
        64 + (self.next() % 449) as u32
    }
}

fn bench(num_running: u32, iterations: u32) -> (f64, f64, usize) {
    let mut scheduler = Scheduler::new(SchedulerConfig {
        policy: Policy::Sarathi,
        // Room for enough prefill chunks to replace finished requests as fast as they leave.
        token_budget: 2 * num_running + 512,
        max_num_seqs: num_running,
        max_model_len: 4096,
        block_size: 16,
        num_blocks: num_running * 48 + 1024,
        ..SchedulerConfig::default()
    })
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_id = 0u64;
    let mut add = |scheduler: &mut Scheduler, rng: &mut Rng| {
        let request = NewRequest::with_lengths(next_id, PROMPT_LEN, rng.output_len());
        scheduler.add(request).unwrap();
        next_id += 1;
    };
    for _ in 0..u64::from(num_running) + NUM_WAITING {
        add(&mut scheduler, &mut rng);
    }
    let tokens = vec![7u32; 2 * num_running as usize + 512];
    // Fill the running set, then measure.
    let warmup = 2 * PROMPT_LEN + 200;
    let mut timed = Vec::with_capacity(iterations as usize);
    let mut running_seen = 0usize;
    for iteration in 0..warmup + iterations {
        let start = Instant::now();
        let batch = scheduler.schedule(0.0).unwrap();
        let outputs = BatchOutputs {
            sampled_token_ids: &tokens[..batch.num_producing() as usize],
            ..BatchOutputs::default()
        };
        let finished = scheduler.update(&batch, outputs).unwrap();
        let elapsed = start.elapsed();
        if iteration >= warmup {
            timed.push(elapsed.as_secs_f64() * 1e6);
            running_seen += batch.len();
        }
        for _ in finished {
            add(&mut scheduler, &mut rng);
        }
    }
    timed.sort_by(f64::total_cmp);
    let mean = timed.iter().sum::<f64>() / timed.len() as f64;
    let median = timed[timed.len() / 2];
    (mean, median, running_seen / iterations as usize)
}

fn main() {
    // `cargo bench --bench schedule_loop -- 1024` measures only the sizes named.
    let only: Vec<u32> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let sizes = [(64, 20_000), (256, 10_000), (1024, 4_000), (4096, 1_000)];
    for (num_running, iterations) in sizes {
        if !only.is_empty() && !only.contains(&num_running) {
            continue;
        }
        let (mean_us, median_us, batch_size) = bench(num_running, iterations);
        println!(
            "{{\"num_running\": {num_running}, \"mean_us\": {mean_us:.3}, \"median_us\": {median_us:.3}, \"mean_batch_size\": {batch_size}}}"
        );
    }
}
