//! Sample summaries and power-law fits with confidence intervals.
//!
//! Rates are fitted as straight lines in log–log coordinates by ordinary least squares; the 95%
//! interval of the slope uses Student's t distribution with k − 2 degrees of freedom (k points),
//! which is exact for Gaussian residuals and wider than the normal approximation for few points.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

/// Mean and standard error of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanSe {
    /// The sample mean.
    pub mean: f64,
    /// The standard error s/√n (0 for a single value).
    pub se: f64,
    /// The sample size n.
    pub count: usize,
}

impl MeanSe {
    /// The mean and the standard error of `values` (NaN mean for an empty slice).
    pub fn of(values: &[f64]) -> MeanSe {
        let n = values.len();
        if n == 0 {
            return MeanSe { mean: f64::NAN, se: f64::NAN, count: 0 };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let se = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        MeanSe { mean, se, count: n }
    }
}

/// A least-squares fit of log y = intercept + slope · log x.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerFit {
    /// The fitted exponent (the slope in log–log coordinates).
    pub slope: f64,
    /// The fitted intercept of ln y against ln x.
    pub intercept: f64,
    /// The standard error of the slope.
    pub slope_se: f64,
    /// Lower end of the 95% confidence interval of the slope.
    pub ci_low: f64,
    /// Upper end of the 95% confidence interval of the slope.
    pub ci_high: f64,
    /// Points used (those with x > 0 and y > 0).
    pub points: usize,
    /// Degrees of freedom of the t quantile (points − 2).
    pub dof: usize,
    /// The t quantile t_{0.975, dof} that scales the interval.
    pub t_quantile: f64,
}

impl PowerFit {
    /// `slope [low, high]` with three decimals.
    pub fn describe(&self) -> String {
        format!("{:.3} [{:.3}, {:.3}]", self.slope, self.ci_low, self.ci_high)
    }
}

/// Fits y ≈ C x^slope by least squares on (ln x, ln y), with a 95% t interval for the slope.
///
/// Points with a non-positive or non-finite coordinate are skipped (they have no logarithm).
/// Needs at least three usable points (one degree of freedom for the interval); `None` otherwise.
pub fn fit_power_law(xs: &[f64], ys: &[f64]) -> Option<PowerFit> {
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| x.is_finite() && y.is_finite() && **x > 0.0 && **y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let k = pts.len();
    if k < 3 {
        return None;
    }
    let kf = k as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / kf;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / kf;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let rss: f64 = pts.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let dof = k - 2;
    let slope_se = (rss / dof as f64 / sxx).sqrt();
    let t = student_t_quantile(0.975, dof as f64);
    Some(PowerFit {
        slope,
        intercept,
        slope_se,
        ci_low: slope - t * slope_se,
        ci_high: slope + t * slope_se,
        points: k,
        dof,
        t_quantile: t,
    })
}

/// The p-quantile of Student's t distribution with `dof` > 0 degrees of freedom (p in [0, 1]),
/// from `statrs`; NaN for a `dof` that is not positive.
///
/// statrs 0.18's inverse (through the inverse incomplete beta function) is accurate to ~1e-12 up
/// to 1e4 degrees of freedom but drifts beyond (7e-6 at 1e5) and does not return for 1e9; its
/// CDF stays accurate to ~1e-14 up to ~1e7. So beyond 1e4 the quantile is the normal one
/// polished by Newton steps on that CDF, and beyond 1e7 the normal one, which is then within
/// (z³ + z)/(4·dof) < 3e-6 of it for p ≤ 1 − 1e-6.
pub fn student_t_quantile(p: f64, dof: f64) -> f64 {
    let Ok(t) = StudentsT::new(0.0, 1.0, dof) else { return f64::NAN };
    if dof <= 1e4 {
        return t.inverse_cdf(p);
    }
    let mut x = Normal::standard().inverse_cdf(p);
    if dof <= 1e7 && x.is_finite() {
        for _ in 0..3 {
            x -= (t.cdf(x) - p) / t.pdf(x);
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Standard table values of t_{0.975, ν}.
        for (dof, t) in [(1.0, 12.706_204_736), (2.0, 4.302_652_730), (5.0, 2.570_581_836), (30.0, 2.042_272_456)] {
            let q = student_t_quantile(0.975, dof);
            assert!((q - t).abs() < 1e-6, "dof {dof}: {q} vs {t}");
        }
        // Large ν: the normal quantile (plus (z³ + z)/4ν, 2.4e-5 at ν = 1e5).
        assert!((student_t_quantile(0.975, 1e7) - 1.959_963_985).abs() < 1e-5);
        assert!((student_t_quantile(0.975, 1e5) - 1.959_987_708).abs() < 1e-8);
        assert!((student_t_quantile(0.975, 1e9) - 1.959_963_985).abs() < 1e-8);
        // Symmetry about 0.
        assert!((student_t_quantile(0.025, 5.0) + 2.570_581_836).abs() < 1e-6);
    }

    #[test]
    fn power_fit_recovers_an_exact_power_and_widens_with_noise() {
        let xs = [64.0, 128.0, 256.0, 512.0, 1024.0];
        let ys: Vec<f64> = xs.iter().map(|x: &f64| 3.0 * x.powf(-0.5)).collect();
        let f = fit_power_law(&xs, &ys).unwrap();
        assert!((f.slope + 0.5).abs() < 1e-12 && f.slope_se < 1e-10, "{f:?}");
        let noisy: Vec<f64> = ys.iter().zip([1.1, 0.9, 1.05, 0.97, 1.02]).map(|(y, e)| y * e).collect();
        let g = fit_power_law(&xs, &noisy).unwrap();
        assert!(g.ci_low < -0.5 && g.ci_high > -0.5 && g.ci_high - g.ci_low > 0.01, "{g:?}");
        assert!(fit_power_law(&xs[..2], &ys[..2]).is_none());
        let m = MeanSe::of(&[1.0, 2.0, 3.0]);
        assert!((m.mean - 2.0).abs() < 1e-15 && (m.se - (1.0f64 / 3.0).sqrt()).abs() < 1e-15);
    }
}
