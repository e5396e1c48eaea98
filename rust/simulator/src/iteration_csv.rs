//! The per-iteration records as CSV: a header of column names, then one line per iteration,
//! every number written as Python writes it (`str(int)`, `repr(float)`; a 32-bit float as the
//! 64-bit float it widens to), so the file is byte for byte what Python's `csv` module makes of
//! the same columns.

use std::io::{self, Write};

use crate::python_float::{push_display, PythonFloats};
use crate::records::{ColumnValues, IterationRecords};

impl IterationRecords {
    pub fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        write_columns_csv(&self.columns(), out)
    }
}

/// Named columns of equal length (`IterationRecords::columns`, or the same held elsewhere) as CSV.
pub fn write_columns_csv(
    columns: &[(&str, ColumnValues<'_>)],
    out: &mut impl Write,
) -> io::Result<()> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    write_csv_header(&names, out)?;
    write_csv_rows(columns, out)
}

pub(crate) fn write_csv_header(names: &[&str], out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", names.join(","))
}

/// The columns' rows, without a header.
pub(crate) fn write_csv_rows(
    columns: &[(&str, ColumnValues<'_>)],
    out: &mut impl Write,
) -> io::Result<()> {
    let num_rows = columns.first().map_or(0, |(_, column)| column.len());
    let (mut text, mut floats) = (String::new(), PythonFloats::default());
    for row in 0..num_rows {
        for (index, (_, column)) in columns.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            match column {
                ColumnValues::U32(values) => push_display(&mut text, values[row]),
                ColumnValues::U64(values) => push_display(&mut text, values[row]),
                ColumnValues::F32(values) => floats.push(&mut text, f64::from(values[row])),
                ColumnValues::F64(values) => floats.push(&mut text, values[row]),
            }
        }
        text.push('\n');
        if text.len() >= 1 << 16 {
            out.write_all(text.as_bytes())?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes())
}
