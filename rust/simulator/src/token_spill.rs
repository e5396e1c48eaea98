//! Output token times streamed to disk while a run goes: one file of raw little-endian f64
//! values laid out as `RequestRecords::token_times` is (each request's slots, NaN where no
//! token came, in workload order). A request's slots are written once it and every request
//! before it has ended (finished or been refused), so only the times of requests still open,
//! and of those after the oldest open one, are held.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, SimulatorError};
use crate::records::RequestRecords;

#[derive(Debug)]
pub struct TokenTimesSpill {
    path: PathBuf,
    file: BufWriter<File>,
    /// Per request: whether it has ended (no token of its can come any more).
    ended: Vec<bool>,
    first_open: usize,
    block_tokens: u64,
}

fn spill_error(path: &Path, error: io::Error) -> SimulatorError {
    SimulatorError::Output(format!(
        "cannot write the token times to {}: {error}",
        path.display()
    ))
}

impl TokenTimesSpill {
    /// Writes to `path` (replaced), `block_tokens` or more times at a time. `records` start
    /// holding none (`RequestRecords::new_windowed`).
    pub fn create(path: PathBuf, num_requests: usize, block_tokens: u64) -> Result<Self> {
        let file = File::create(&path).map_err(|e| spill_error(&path, e))?;
        Ok(TokenTimesSpill {
            path,
            file: BufWriter::new(file),
            ended: vec![false; num_requests],
            first_open: 0,
            block_tokens: block_tokens.max(1),
        })
    }

    /// `request` has ended: writes the slots of the requests before the oldest still open
    /// once a block of them is held.
    pub fn end(&mut self, records: &mut RequestRecords, request: usize) -> Result<()> {
        self.ended[request] = true;
        while self.first_open < self.ended.len() && self.ended[self.first_open] {
            self.first_open += 1;
        }
        let done = records.token_offsets[self.first_open];
        if done - records.token_times_base >= self.block_tokens {
            self.write_before(records, done)?;
        }
        Ok(())
    }

    /// Writes every slot left; returns the file's path.
    pub fn finish(mut self, records: &mut RequestRecords) -> Result<PathBuf> {
        let total = *records
            .token_offsets
            .last()
            .expect("one offset more than requests");
        self.write_before(records, total)?;
        self.file.flush().map_err(|e| spill_error(&self.path, e))?;
        Ok(self.path)
    }

    fn write_before(&mut self, records: &mut RequestRecords, end: u64) -> Result<()> {
        let count = (end - records.token_times_base) as usize;
        if records.token_times.len() < count {
            records.token_times.resize(count, f64::NAN);
        }
        let mut bytes = Vec::with_capacity(count * 8);
        for time in records.token_times.drain(..count) {
            bytes.extend(time.to_le_bytes());
        }
        records.token_times_base = end;
        self.file
            .write_all(&bytes)
            .map_err(|e| spill_error(&self.path, e))
    }
}
