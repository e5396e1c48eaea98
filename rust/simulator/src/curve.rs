use crate::error::{Result, SimulatorError};

/// A non-negative function of one variable: linear between knots, flat below the first knot
/// (a kernel never gets faster than its smallest profiled size) and a straight line of
/// `tail_slope` beyond the last (time linear in work once the hardware is saturated).
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinear {
    xs: Vec<f64>,
    ys: Vec<f64>,
    tail_slope: f64,
}

impl PiecewiseLinear {
    pub fn new(xs: Vec<f64>, ys: Vec<f64>, tail_slope: f64) -> Result<Self> {
        let fail = |reason: String| Err(SimulatorError::InvalidCostModel(reason));
        if xs.is_empty() || xs.len() != ys.len() {
            return fail(format!(
                "a curve needs as many values as knots, at least one (got {} knots, {} values)",
                xs.len(),
                ys.len()
            ));
        }
        if xs.iter().chain(&ys).any(|v| !v.is_finite()) {
            return fail("a curve's knots and values must be finite".into());
        }
        if xs.windows(2).any(|pair| pair[0] >= pair[1]) {
            return fail("a curve's knots must be strictly increasing".into());
        }
        if ys.iter().any(|&y| y < 0.0) {
            return fail("a curve's values must be non-negative".into());
        }
        if !(tail_slope.is_finite() && tail_slope >= 0.0) {
            return fail(format!(
                "a curve's tail slope must be finite and non-negative, got {tail_slope}"
            ));
        }
        Ok(PiecewiseLinear { xs, ys, tail_slope })
    }

    /// A function that is `value` everywhere.
    pub fn constant(value: f64) -> Result<Self> {
        PiecewiseLinear::new(vec![0.0], vec![value], 0.0)
    }

    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    pub fn ys(&self) -> &[f64] {
        &self.ys
    }

    pub fn tail_slope(&self) -> f64 {
        self.tail_slope
    }

    pub fn eval(&self, x: f64) -> f64 {
        let last = self.xs.len() - 1;
        if x <= self.xs[0] {
            return self.ys[0];
        }
        if x >= self.xs[last] {
            return self.ys[last] + self.tail_slope * (x - self.xs[last]);
        }
        let upper = self.xs.partition_point(|&knot| knot <= x);
        let (x0, x1) = (self.xs[upper - 1], self.xs[upper]);
        let (y0, y1) = (self.ys[upper - 1], self.ys[upper]);
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }
}

#[cfg(test)]
mod tests {
    use super::PiecewiseLinear;

    #[test]
    fn interpolates_between_knots_and_extends_linearly() {
        let curve = PiecewiseLinear::new(vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 10.0], 0.5).unwrap();
        assert_eq!(curve.eval(0.0), 2.0);
        assert_eq!(curve.eval(1.0), 2.0);
        assert_eq!(curve.eval(2.0), 3.0);
        assert_eq!(curve.eval(3.0), 4.0);
        assert_eq!(curve.eval(4.0), 7.0);
        assert_eq!(curve.eval(5.0), 10.0);
        assert_eq!(curve.eval(9.0), 12.0);
    }

    #[test]
    fn rejects_unordered_knots_and_negative_values() {
        assert!(PiecewiseLinear::new(vec![2.0, 1.0], vec![1.0, 1.0], 0.0).is_err());
        assert!(PiecewiseLinear::new(vec![1.0], vec![-1.0], 0.0).is_err());
        assert!(PiecewiseLinear::new(vec![], vec![], 0.0).is_err());
        assert!(PiecewiseLinear::new(vec![1.0], vec![1.0], f64::NAN).is_err());
    }
}
