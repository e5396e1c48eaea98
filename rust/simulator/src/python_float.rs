//! Numbers as Python writes them (`str(int)`, `repr(float)`, msgspec's JSON floats), for files
//! that must be byte for byte the ones Python's writers make.

pub(crate) fn push_display(line: &mut String, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    write!(line, "{value}").expect("writing to a String cannot fail");
}

/// Writes floats as Python's `repr(float)` does: the shortest digits that read back as the same
/// float, in positional notation when the decimal point falls within 16 digits of them (with
/// `.0` for a whole number), else as `d.ddde-XX` with at least two exponent digits.
#[derive(Default)]
pub(crate) struct PythonFloats {
    ryu: ryu::Buffer,
    shortest: String,
    rounded: String,
}

impl PythonFloats {
    pub(crate) fn push(&mut self, line: &mut String, value: f64) {
        let magnitude = value.abs();
        if (1e-4..1e16).contains(&magnitude) && !may_be_a_tie(magnitude) {
            // Ryu writes these positionally, as Python does, and away from ties with its digits.
            line.push_str(self.ryu.format_finite(value));
        } else {
            self.push_as(line, value, -3, true);
        }
    }

    /// As msgspec's JSON encoder writes a finite float: the same digits, positional when the
    /// decimal point falls within 4 zeros before them or 16 digits of them, else `d.ddde-X`
    /// (no `+`, no padding).
    pub(crate) fn push_json(&mut self, line: &mut String, value: f64) {
        if value.is_finite() && !may_be_a_tie(value.abs()) {
            // Ryu's own layout is msgspec's, and away from ties its digits are Python's.
            line.push_str(self.ryu.format_finite(value));
        } else {
            self.push_as(line, value, -4, false);
        }
    }

    /// Positional notation for a decimal point from `least_point` to 16 digits in; exponents
    /// signed and of at least two digits in Python's style, else as msgspec writes them.
    fn push_as(&mut self, line: &mut String, value: f64, least_point: i32, python_exponent: bool) {
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
        if !(least_point..=16).contains(&point) {
            line.push_str(lead);
            if !rest.is_empty() {
                line.push('.');
                line.push_str(rest);
            }
            if python_exponent {
                let sign = if exponent < 0 { '-' } else { '+' };
                push_display(line, format_args!("e{sign}{:02}", exponent.abs()));
            } else {
                push_display(line, format_args!("e{exponent}"));
            }
        } else if point <= 0 {
            line.push_str("0.");
            push_zeros(line, -point);
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
            push_zeros(line, point - num_digits);
            line.push_str(".0");
        }
    }

    /// The shortest round-tripping digits of a positive `value`: (first digit, the others, power
    /// of ten of the first). Ryu finds them; where two strings of that length are equally close
    /// Python takes the even one, the correctly rounded string of that length (`{:.*e}`).
    fn digits(&mut self, value: f64) -> (&str, &str, i32) {
        let mut exponent = significant_digits(self.ryu.format_finite(value), &mut self.shortest);
        if may_be_a_tie(value) {
            self.rounded.clear();
            push_display(
                &mut self.rounded,
                format_args!("{:.*e}", self.shortest.len() - 1, value),
            );
            if self.rounded.parse::<f64>() == Ok(value) {
                exponent = significant_digits(&self.rounded, &mut self.shortest);
            }
        }
        let (lead, rest) = self.shortest.split_at(1);
        (lead, rest, exponent)
    }
}

/// Writes the significant digits of `text` (a positive float, positional or with an exponent)
/// into `digits`, trailing zeros dropped; returns the power of ten of the first.
fn significant_digits(text: &str, digits: &mut String) -> i32 {
    let bytes = text.as_bytes();
    let (mantissa, exponent) = match bytes.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (
            &text[..at],
            text[at + 1..].parse::<i32>().expect("an integer exponent"),
        ),
        None => (text, 0),
    };
    let point = mantissa
        .bytes()
        .position(|b| b == b'.')
        .unwrap_or(mantissa.len());
    digits.clear();
    digits.push_str(&mantissa[..point]);
    if point < mantissa.len() {
        digits.push_str(&mantissa[point + 1..]);
    }
    let leading_zeros = digits.bytes().take_while(|&b| b == b'0').count();
    let significant = digits.trim_end_matches('0').len().max(leading_zeros + 1);
    digits.truncate(significant);
    digits.drain(..leading_zeros);
    exponent + point as i32 - 1 - leading_zeros as i32
}

fn push_zeros(line: &mut String, count: i32) {
    line.extend(std::iter::repeat('0').take(count as usize));
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
    fn json_floats_are_written_as_msgspec_writes_them() {
        // Each expected string is msgspec.json.encode(value).
        let cases = [
            (0.0, "0.0"),
            (1e-4, "0.0001"),
            (9.489413241920218e-05, "0.00009489413241920218"),
            (1e-5, "0.00001"),
            (6.330067706890268e-06, "6.330067706890268e-6"),
            (1e15, "1000000000000000.0"),
            (3.5167306754705652e16, "3.5167306754705652e16"),
            (1e22, "1e22"),
            (5e-324, "5e-324"),
            (0.125, "0.125"),
            (-2.5, "-2.5"),
            (1e16, "1e16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1148928000.0, "1148928000.0"),
            (0.0029268264770507812, "0.0029268264770507812"),
        ];
        let mut floats = PythonFloats::default();
        for (value, expected) in cases {
            let mut line = String::new();
            floats.push_json(&mut line, value);
            assert_eq!(line, expected, "{value:e}");
        }
    }

    #[test]
    fn the_direct_paths_write_what_the_digit_by_digit_one_does() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut floats = PythonFloats::default();
        for _ in 0..60_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let any_bits = f64::from_bits(state >> 1);
            let seconds = (state >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
            for value in [
                any_bits,
                seconds,
                -seconds,
                seconds * 1e-7,
                f64::from(seconds as f32),
                1e-4 * (1.0 + (seconds - 500.0) * 1e-15),
                1e16 * (1.0 + (seconds - 500.0) * 1e-15),
            ] {
                if value.is_finite() {
                    let (mut direct, mut general) = (String::new(), String::new());
                    floats.push_json(&mut direct, value);
                    floats.push_as(&mut general, value, -4, false);
                    assert_eq!(direct, general, "JSON {value:e}");
                    let (mut direct, mut general) = (String::new(), String::new());
                    floats.push(&mut direct, value);
                    floats.push_as(&mut general, value, -3, true);
                    assert_eq!(direct, general, "Python {value:e}");
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
