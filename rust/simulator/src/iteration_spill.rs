//! Per-iteration records streamed to disk while a run goes, so a long run never holds them:
//! one file of raw little-endian values per column (`<name>.bin`, numpy's `memmap` reads it),
//! appended a block of rows at a time. A row is written once its batch's outputs are applied
//! (its `end_s` is final); the rows of batches still in flight stay in memory until then.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, SimulatorError};
use crate::iteration_csv::{write_csv_header, write_csv_rows};
use crate::records::{with_iteration_columns, ColumnValues, IterationRecords};

/// Where to stream a run's largest records as it goes (the iteration records, one file per
/// column, and the token times, `TOKEN_TIMES_FILE`), and how many rows (iterations, token
/// times) to gather before writing them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpillConfig {
    /// Created if missing; the files in it are replaced.
    pub directory: PathBuf,
    pub block_rows: usize,
}

pub const TOKEN_TIMES_FILE: &str = "token_times.bin";

/// The iteration records of a run, on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SpilledIterations {
    pub directory: PathBuf,
    pub num_rows: usize,
    /// (column name, numpy dtype of its values), in `IterationRecords::columns` order.
    pub columns: Vec<(&'static str, &'static str)>,
}

impl SpilledIterations {
    pub fn path(&self, column: &str) -> PathBuf {
        column_path(&self.directory, column)
    }

    /// The records as CSV (as `IterationRecords::write_csv` writes them), read back a block of
    /// `block_rows` at a time.
    pub fn write_csv(&self, block_rows: usize, out: &mut impl Write) -> io::Result<()> {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        write_csv_header(&names, out)?;
        let mut files = self
            .columns
            .iter()
            .map(|(name, _)| File::open(self.path(name)).map(io::BufReader::new))
            .collect::<io::Result<Vec<_>>>()?;
        let mut block = IterationRecords::default();
        let mut start = 0;
        while start < self.num_rows {
            let rows = block_rows.max(1).min(self.num_rows - start);
            block.read_rows(&mut files, rows)?;
            write_csv_rows(&block.columns(), out)?;
            start += rows;
        }
        Ok(())
    }
}

fn column_path(directory: &Path, column: &str) -> PathBuf {
    directory.join(format!("{column}.bin"))
}

/// Creates the directory a run streams its records to.
pub fn create_spill_directory(config: &SpillConfig) -> Result<()> {
    fs::create_dir_all(&config.directory).map_err(|e| spill_error(&config.directory, e))
}

fn spill_error(directory: &Path, error: io::Error) -> SimulatorError {
    SimulatorError::Output(format!(
        "cannot write the run's records under {}: {error}",
        directory.display()
    ))
}

/// The iteration records of a run in progress: those not yet written, after the `base` rows
/// already on disk (when spilling).
#[derive(Debug)]
pub struct RecordedIterations {
    pub records: IterationRecords,
    base: usize,
    spill: Option<(SpillConfig, Vec<BufWriter<File>>)>,
}

impl RecordedIterations {
    /// `spill`'s directory exists.
    pub fn new(spill: Option<&SpillConfig>) -> Result<Self> {
        let spill = match spill {
            None => None,
            Some(config) => {
                let directory = &config.directory;
                let files = IterationRecords::default()
                    .columns()
                    .iter()
                    .map(|(name, _)| File::create(column_path(directory, name)).map(BufWriter::new))
                    .collect::<io::Result<Vec<_>>>()
                    .map_err(|e| spill_error(directory, e))?;
                Some((config.clone(), files))
            }
        };
        Ok(RecordedIterations {
            records: IterationRecords::default(),
            base: 0,
            spill,
        })
    }

    /// Rows recorded so far, written or not: the index the next row gets.
    pub fn num_rows(&self) -> usize {
        self.base + self.records.len()
    }

    pub fn set_end_s(&mut self, row: usize, end_s: f64) {
        self.records.end_s[row - self.base] = end_s;
    }

    /// Whether a block of rows has gathered in memory (to write those before the oldest row
    /// still to change: `spill_before`).
    pub fn is_block_due(&self) -> bool {
        self.spill
            .as_ref()
            .is_some_and(|(config, _)| self.records.len() >= config.block_rows.max(1))
    }

    /// Writes the rows before `first_open` (the oldest row still to change).
    pub fn spill_before(&mut self, first_open: usize) -> Result<()> {
        let rows = first_open.min(self.num_rows()) - self.base;
        let Some((config, files)) = &mut self.spill else {
            return Ok(());
        };
        if rows == 0 {
            return Ok(());
        }
        self.records
            .write_rows(files, rows)
            .map_err(|e| spill_error(&config.directory, e))?;
        self.records.drain_front(rows);
        self.base += rows;
        Ok(())
    }

    /// Every row (all final now): in memory, or written out.
    pub fn finish(mut self) -> Result<(IterationRecords, Option<SpilledIterations>)> {
        let Some((config, mut files)) = self.spill.take() else {
            return Ok((self.records, None));
        };
        let rows = self.records.len();
        let written = self
            .records
            .write_rows(&mut files, rows)
            .and_then(|()| files.iter_mut().try_for_each(|file| file.flush()));
        written.map_err(|e| spill_error(&config.directory, e))?;
        let columns = self
            .records
            .columns()
            .iter()
            .map(|(name, values)| (*name, values.dtype()))
            .collect();
        let spilled = SpilledIterations {
            directory: config.directory,
            num_rows: self.base + rows,
            columns,
        };
        Ok((IterationRecords::default(), Some(spilled)))
    }
}

impl IterationRecords {
    /// Appends the first `rows` rows of every column to its file (`files` in `columns` order).
    fn write_rows(&self, files: &mut [BufWriter<File>], rows: usize) -> io::Result<()> {
        let mut bytes = Vec::new();
        for ((_, column), file) in self.columns().iter().zip(files.iter_mut()) {
            bytes.clear();
            column.extend_le_bytes(&mut bytes, 0..rows);
            file.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Replaces every column with the next `rows` rows of its file.
    fn read_rows(&mut self, files: &mut [io::BufReader<File>], rows: usize) -> io::Result<()> {
        fn read<T, const N: usize>(
            file: &mut impl Read,
            rows: usize,
            values: &mut Vec<T>,
            from: fn([u8; N]) -> T,
        ) -> io::Result<()> {
            let mut bytes = vec![0u8; rows * N];
            file.read_exact(&mut bytes)?;
            values.clear();
            values.extend(
                bytes
                    .chunks_exact(N)
                    .map(|chunk| from(chunk.try_into().expect("a chunk of N bytes"))),
            );
            Ok(())
        }
        let mut files = files.iter_mut();
        let mut next = || files.next().expect("one file per column");
        macro_rules! read_columns {
            ($($column:ident: $type:ty => $kind:ident),+) => {
                $(read(next(), rows, &mut self.$column, <$type>::from_le_bytes)?;)+
            };
        }
        with_iteration_columns!(read_columns);
        Ok(())
    }

    /// Drops the first `rows` rows of every column.
    fn drain_front(&mut self, rows: usize) {
        macro_rules! drain {
            ($($column:ident: $type:ty => $kind:ident),+) => {
                $(self.$column.drain(..rows);)+
            };
        }
        with_iteration_columns!(drain);
    }
}

impl ColumnValues<'_> {
    /// The numpy dtype of its values written little-endian.
    pub fn dtype(&self) -> &'static str {
        match self {
            ColumnValues::U32(_) => "<u4",
            ColumnValues::U64(_) => "<u8",
            ColumnValues::F32(_) => "<f4",
            ColumnValues::F64(_) => "<f8",
        }
    }

    fn extend_le_bytes(&self, out: &mut Vec<u8>, rows: std::ops::Range<usize>) {
        match self {
            ColumnValues::U32(values) => values[rows]
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes())),
            ColumnValues::U64(values) => values[rows]
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes())),
            ColumnValues::F32(values) => values[rows]
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes())),
            ColumnValues::F64(values) => values[rows]
                .iter()
                .for_each(|v| out.extend(v.to_le_bytes())),
        }
    }
}
