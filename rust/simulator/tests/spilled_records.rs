//! A run's records streamed to disk are the records kept in memory: the same iteration rows,
//! each with its final end time (written only once its batch came back), the same CSV, and the
//! same token times, each request's written only once it ended.

mod common;

use std::path::Path;

use scheduler::Policy;
use simulator::{
    simulate, IterationRecords, RequestRecords, RouterKind, SimulationConfig, SimulationOutput,
    SpillConfig, SpilledIterations,
};

fn spilled_to(directory: &Path, block_rows: usize, limit_s: Option<f64>) -> SimulationConfig {
    SimulationConfig {
        spill: Some(SpillConfig {
            directory: directory.to_path_buf(),
            block_rows,
        }),
        max_simulated_s: limit_s,
        ..common::config(3, RouterKind::LeastOutstanding, 0)
    }
}

fn csv_of(records: &IterationRecords) -> String {
    let mut out = Vec::new();
    records.write_csv(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn spilled_csv(spilled: &SpilledIterations, block_rows: usize) -> String {
    let mut out = Vec::new();
    spilled.write_csv(block_rows, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn f64_file(path: &Path) -> Vec<f64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|bytes| f64::from_le_bytes(bytes.try_into().unwrap()))
        .collect()
}

/// The spilled run's request records with its token times read back from their file.
fn with_token_times(output: &SimulationOutput) -> RequestRecords {
    assert!(output.requests.token_times.is_empty());
    RequestRecords {
        token_times: f64_file(output.spilled_token_times.as_ref().unwrap()),
        token_times_base: 0,
        ..output.requests.clone()
    }
}

fn run(config: &SimulationConfig) -> SimulationOutput {
    let scheduler = common::scheduler_config(Policy::Sarathi);
    // Two stages: two batches in flight per replica, so rows wait for their end times.
    let cost = common::cost_model(2);
    simulate(config, &scheduler, &cost, &common::workload(300, 40.0, 5)).unwrap()
}

/// Equal, NaN values included.
fn assert_same_requests(got: &RequestRecords, want: &RequestRecords) {
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
}

#[test]
fn spilled_iterations_are_the_records_in_memory() {
    let in_memory = run(&common::config(3, RouterKind::LeastOutstanding, 0));
    assert!(in_memory.spilled_iterations.is_none());
    let expected = csv_of(&in_memory.iterations);
    for block_rows in [1, 7, 64, 1 << 20] {
        let directory = tempfile_dir(&format!("spill-{block_rows}"));
        let spilled_run = run(&spilled_to(&directory, block_rows, None));
        assert!(spilled_run.iterations.is_empty());
        assert_same_requests(&with_token_times(&spilled_run), &in_memory.requests);
        let spilled = spilled_run.spilled_iterations.unwrap();
        assert_eq!(spilled.num_rows, in_memory.iterations.len());
        assert_eq!(f64_file(&spilled.path("end_s")), in_memory.iterations.end_s);
        for read_rows in [1, 5, 1000] {
            assert_eq!(
                spilled_csv(&spilled, read_rows),
                expected,
                "{block_rows} {read_rows}"
            );
        }
        let dtypes: Vec<_> = spilled.columns.iter().map(|(_, dtype)| *dtype).collect();
        assert_eq!(&dtypes[..3], ["<u4", "<f8", "<f8"]);
        std::fs::remove_dir_all(directory).unwrap();
    }
}

#[test]
fn a_cut_run_spills_what_it_kept() {
    let limit_s = run(&common::config(3, RouterKind::LeastOutstanding, 0)).end_s / 2.0;
    let cut_config = SimulationConfig {
        max_simulated_s: Some(limit_s),
        ..common::config(3, RouterKind::LeastOutstanding, 0)
    };
    let in_memory = run(&cut_config);
    let directory = tempfile_dir("spill-cut");
    let spilled_run = run(&spilled_to(&directory, 3, Some(limit_s)));
    assert!(spilled_run.is_cut);
    assert_same_requests(&with_token_times(&spilled_run), &in_memory.requests);
    let spilled = spilled_run.spilled_iterations.unwrap();
    assert_eq!(spilled_csv(&spilled, 10), csv_of(&in_memory.iterations));
    std::fs::remove_dir_all(directory).unwrap();
}

#[test]
fn an_unwritable_directory_is_an_output_error() {
    let file = tempfile_dir("spill-not-a-directory");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"a file").unwrap();
    let scheduler = common::scheduler_config(Policy::Sarathi);
    let error = simulate(
        &spilled_to(&file, 4, None),
        &scheduler,
        &common::cost_model(1),
        &common::workload(10, 40.0, 5),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot write the run's records under"),
        "{error}"
    );
    std::fs::remove_file(file).unwrap();
}

/// A path of its own in the temporary directory (removed by the test that makes it).
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("simulator-test-{}-{name}", std::process::id()))
}
