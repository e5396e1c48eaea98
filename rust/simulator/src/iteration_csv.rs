//! The per-iteration records as CSV: a header of column names, then one line per iteration,
//! every number written as Python writes it (`str(int)`, `repr(float)`; a 32-bit float as the
//! 64-bit float it widens to), so the file is byte for byte what Python's `csv` module makes of
//! the same columns.

use std::io::{self, Write};

use crate::records::{ColumnValues, IterationRecords};

impl IterationRecords {
    pub fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.columns();
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        writeln!(out, "{}", names.join(","))?;
        let (mut text, mut floats) = (String::new(), PythonFloats::default());
        for row in 0..self.len() {
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
}

fn push_display(line: &mut String, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    write!(line, "{value}").expect("writing to a String cannot fail");
}

/// Writes floats as Python's `repr(float)` does: the shortest digits that read back as the same
/// float, in positional notation when the decimal point falls within 16 digits of them (with
/// `.0` for a whole number), else as `d.ddde-XX` with at least two exponent digits.
#[derive(Default)]
struct PythonFloats {
    shortest: String,
    rounded: String,
}

impl PythonFloats {
    fn push(&mut self, line: &mut String, value: f64) {
        if value.is_nan() {
            line.push_str("nan");
            return;
        }
        if value.is_infinite() {
            line.push_str(if value > 0.0 { "inf" } else { "-inf" });
            return;
        }
        if value.is_sign_negative() {
            line.push('-');
        }
        if value == 0.0 {
            line.push_str("0.0");
            return;
        }
        let (lead, rest, exponent) = self.digits(value.abs());
        let num_digits = 1 + rest.len() as i32;
        let point = exponent + 1; // digits before the decimal point
        if !(-3..=16).contains(&point) {
            line.push_str(lead);
            if !rest.is_empty() {
                line.push('.');
                line.push_str(rest);
            }
            let sign = if exponent < 0 { '-' } else { '+' };
            push_display(line, format_args!("e{sign}{:02}", exponent.abs()));
        } else if point <= 0 {
            line.push_str("0.");
            line.push_str(&"0".repeat((-point) as usize));
            line.push_str(lead);
            line.push_str(rest);
        } else if point < num_digits {
            let (whole, fraction) = rest.split_at((point - 1) as usize);
            line.push_str(lead);
            line.push_str(whole);
            line.push('.');
            line.push_str(fraction);
        } else {
            line.push_str(lead);
            line.push_str(rest);
            line.push_str(&"0".repeat((point - num_digits) as usize));
            line.push_str(".0");
        }
    }

    /// The shortest round-tripping digits of a positive `value`: (first digit, the others, power
    /// of ten of the first). `{:e}` finds them; where two strings of that length are equally
    /// close it takes the upper one and Python the even one, which is the correctly rounded
    /// string of that length.
    fn digits(&mut self, value: f64) -> (&str, &str, i32) {
        self.shortest.clear();
        push_display(&mut self.shortest, format_args!("{value:e}"));
        let mut chosen = &self.shortest;
        if may_be_a_tie(value) {
            let num_digits =
                self.shortest.find('e').unwrap_or(0) - usize::from(self.shortest.contains('.'));
            self.rounded.clear();
            push_display(
                &mut self.rounded,
                format_args!("{:.*e}", num_digits - 1, value),
            );
            if self.rounded.parse::<f64>() == Ok(value) {
                chosen = &self.rounded;
            }
        }
        let (mantissa, exponent) = chosen
            .split_once('e')
            .expect("`{:e}` always writes an exponent");
        let (lead, rest) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        (
            lead,
            rest,
            exponent.parse().expect("`{:e}` writes an integer exponent"),
        )
    }
}

/// Whether two shortest strings can be equally close to a positive finite `value`: its exact
/// decimal expansion must then end in a 5 just past the shortest digits, which for a double
/// means at the 17th or 18th significant digit. With value = m * 2^-k (m odd), the expansion is
/// m * 5^k * 10^-k, so m * 5^k must stay below 10^18.
fn may_be_a_tie(value: f64) -> bool {
    let bits = value.to_bits();
    let biased_exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exponent) = if biased_exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased_exponent - 1075)
    };
    let zeros = mantissa.trailing_zeros() as i32;
    let halvings = -(exponent + zeros);
    // An even integer ends in an even digit, an odd one below 2^53 has at most 16 digits (all
    // of them shortest); 5^28 alone has 20 digits.
    if halvings <= 0 || halvings > 27 {
        return false;
    }
    u128::from(mantissa >> zeros) * 5u128.pow(halvings as u32) < 10u128.pow(18)
}

#[cfg(test)]
mod tests {
    use super::PythonFloats;

    fn python(value: f64) -> String {
        let mut line = String::new();
        PythonFloats::default().push(&mut line, value);
        line
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        // Each expected string is Python's repr of the value.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (9.999999999999999e-05, "9.999999999999999e-05"),
            (1e-5, "1e-05"),
            (0.00012345, "0.00012345"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.7, "1234567890123456.8"),
            (123456789012345.6, "123456789012345.6"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (0.012925330324659659, "0.012925330324659659"),
            (1148928000.0, "1148928000.0"),
            // Exactly between ...812 and ...813: Python rounds to even.
            (0.0029268264770507812, "0.0029268264770507812"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(python(value), expected, "{value:e}");
        }
    }

    #[test]
    fn the_digits_are_the_correctly_rounded_ones_of_their_length() {
        // Values with short exact expansions (32-bit floats, few mantissa bits) are where ties
        // happen; elsewhere `{:e}` and the correctly rounded string agree.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut floats = PythonFloats::default();
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let candidates = [
                f64::from(f32::from_bits((state >> 33) as u32 & 0x7f7f_ffff)),
                f64::from_bits(state >> 1 & !((1 << (state % 52)) - 1)),
            ];
            for value in candidates.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
                let (lead, rest, exponent) = floats.digits(value);
                let written = format!("{lead}{rest}e{exponent}");
                let rounded = format!("{:.*e}", rest.len(), value);
                if rounded.parse::<f64>() == Ok(value) {
                    assert_eq!(written, rounded.replace('.', ""), "{value:e}");
                }
            }
        }
    }

    #[test]
    fn a_32_bit_float_is_written_as_the_64_bit_float_it_widens_to() {
        // Python: repr(float(numpy.float32(0.0007125)))
        assert_eq!(python(f64::from(0.0007125f32)), "0.0007125000120140612");
    }
}
