//! Columns that cross to Python as little-endian bytes (`numpy.frombuffer` reads them, and
//! `ndarray.tobytes()` makes them).

use std::borrow::Cow;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A fixed-width number stored little-endian in a bytes column.
pub trait Column: Copy + Send + Sync {
    /// Its numpy dtype, and its name for people.
    const DTYPE: &'static str;
    const NAME: &'static str;
    const SIZE: usize;
    fn write(self, out: &mut [u8]);
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! column {
    ($type:ty, $dtype:literal, $name:literal) => {
        impl Column for $type {
            const DTYPE: &'static str = $dtype;
            const NAME: &'static str = $name;
            const SIZE: usize = std::mem::size_of::<$type>();
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn read(bytes: &[u8]) -> Self {
                <$type>::from_le_bytes(bytes.try_into().expect("a chunk of the value's size"))
            }
        }
    };
}

column!(f64, "<f8", "float64");
column!(f32, "<f4", "float32");
column!(i64, "<i8", "int64");
column!(u64, "<u8", "uint64");
column!(u32, "<u4", "uint32");
column!(u8, "|u1", "uint8");

/// The values of column `name`, read in place where the bytes are aligned for them (numpy's
/// and CPython's buffers are) on a little-endian machine, else copied; a ValueError when its
/// length is no whole number of them.
pub fn decode<'a, T: Column>(name: &str, bytes: &'a [u8]) -> PyResult<Cow<'a, [T]>> {
    if bytes.len() % T::SIZE != 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be {} values, got {} bytes",
            T::NAME,
            bytes.len()
        )));
    }
    if cfg!(target_endian = "little") {
        // SAFETY: every `Column` type is a plain number, valid for any bit pattern.
        let (before, values, after) = unsafe { bytes.align_to::<T>() };
        if before.is_empty() && after.is_empty() {
            return Ok(Cow::Borrowed(values));
        }
    }
    Ok(Cow::Owned(
        bytes.chunks_exact(T::SIZE).map(T::read).collect(),
    ))
}

/// `values` as a new bytes object.
pub fn encode<'py, T: Column>(
    py: Python<'py>,
    values: impl ExactSizeIterator<Item = T>,
) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, values.len() * T::SIZE, |out| {
        for (value, chunk) in values.zip(out.chunks_exact_mut(T::SIZE)) {
            value.write(chunk);
        }
        Ok(())
    })
    .expect("filling a new bytes object cannot fail")
}

/// The values of column `name` handed over as any C-contiguous buffer (a numpy array, bytes),
/// read in place where aligned; a ValueError when it is strided or its items are of another size.
pub fn read_buffer<'a, T: Column>(
    name: &str,
    buffer: &'a PyUntypedBuffer,
) -> PyResult<Cow<'a, [T]>> {
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "the column {name} must be a contiguous buffer"
        )));
    }
    if buffer.item_size() != 1 && buffer.item_size() != T::SIZE {
        return Err(PyValueError::new_err(format!(
            "{name} must be {} values, got items of {} bytes",
            T::NAME,
            buffer.item_size()
        )));
    }
    // SAFETY: a contiguous buffer's memory is `len_bytes` bytes from `buf_ptr`, valid while the
    // buffer is held (the borrow of `buffer`); it is only read.
    let bytes =
        unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes()) };
    decode(name, bytes)
}
