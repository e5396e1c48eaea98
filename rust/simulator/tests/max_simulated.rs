//! A run stopped at `max_simulated_s` is the full run up to that time: the same tokens at the
//! same times, the same finishes, the same arrivals, and nothing after it.

mod common;

use scheduler::Policy;
use simulator::{simulate, RouterKind, SimulationConfig};

fn cut_at(limit_s: Option<f64>) -> SimulationConfig {
    SimulationConfig {
        max_simulated_s: limit_s,
        ..common::config(3, RouterKind::LeastOutstanding, 0)
    }
}

#[test]
fn a_cut_run_is_the_full_run_up_to_the_cut() {
    let (scheduler, cost) = (
        common::scheduler_config(Policy::Sarathi),
        common::cost_model(2),
    );
    let workload = common::workload(400, 40.0, 5);
    let full = simulate(&cut_at(None), &scheduler, &cost, &workload).unwrap();
    assert!(!full.is_cut);
    assert_eq!(full.num_arrived, 400);
    let limit_s = full.end_s / 2.0;
    let cut = simulate(&cut_at(Some(limit_s)), &scheduler, &cost, &workload).unwrap();
    assert!(cut.is_cut);
    assert_eq!(cut.end_s, limit_s);
    let arrived = workload
        .arrival_times
        .iter()
        .filter(|&&t| t <= limit_s)
        .count();
    assert_eq!(cut.num_arrived as usize, arrived);
    assert!(arrived > 0 && arrived < 400);

    let (f, c) = (&full.requests, &cut.requests);
    let mut num_unfinished = 0;
    for i in 0..400 {
        let start = f.token_offsets[i] as usize;
        let full_times = &f.token_times[start..start + f.num_tokens[i] as usize];
        let before: Vec<f64> = full_times
            .iter()
            .copied()
            .filter(|&t| t <= limit_s)
            .collect();
        let cut_times = &c.token_times[start..start + c.num_tokens[i] as usize];
        assert_eq!(cut_times, before.as_slice(), "request {i}");
        if f.finished_s[i] <= limit_s {
            assert_eq!(c.finished_s[i], f.finished_s[i]);
            assert_eq!(c.finish_reason[i], f.finish_reason[i]);
        } else {
            assert!(
                c.finished_s[i].is_nan() && c.finish_reason[i] == 0,
                "request {i}"
            );
            num_unfinished += usize::from(i < arrived);
        }
        if i >= arrived {
            assert_eq!(c.num_tokens[i], 0);
        }
    }
    assert!(num_unfinished > 0);
    let started = full
        .iterations
        .start_s
        .iter()
        .filter(|&&t| t <= limit_s)
        .count();
    assert_eq!(cut.iterations.len(), started);
}

#[test]
fn a_limit_after_the_last_event_changes_nothing() {
    let (scheduler, cost) = (
        common::scheduler_config(Policy::Sarathi),
        common::cost_model(2),
    );
    let workload = common::workload(100, 20.0, 2);
    let full = simulate(&cut_at(None), &scheduler, &cost, &workload).unwrap();
    let late = simulate(&cut_at(Some(full.end_s)), &scheduler, &cost, &workload).unwrap();
    assert!(!late.is_cut);
    assert_eq!(late, full);
}

#[test]
fn a_negative_or_infinite_limit_is_refused() {
    let (scheduler, cost) = (
        common::scheduler_config(Policy::Sarathi),
        common::cost_model(2),
    );
    let workload = common::workload(10, 20.0, 2);
    for bad in [-1.0, f64::INFINITY, f64::NAN] {
        let error = simulate(&cut_at(Some(bad)), &scheduler, &cost, &workload).unwrap_err();
        assert!(error.to_string().contains("max_simulated_s"), "{error}");
    }
}
