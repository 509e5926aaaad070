//! Sample summaries and power-law fits with confidence intervals.
//!
//! Rates are fitted as straight lines in log–log coordinates by ordinary least squares; the 95%
//! interval of the slope uses Student's t distribution with k − 2 degrees of freedom (k points),
//! which is exact for Gaussian residuals and wider than the normal approximation for few points.

use serde::{Deserialize, Serialize};

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

/// The p-quantile of Student's t distribution with `dof` > 0 degrees of freedom (p in (0, 1)),
/// by bisection on [`student_t_cdf`] (60 halvings: far below any use here).
pub fn student_t_quantile(p: f64, dof: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, dof);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while student_t_cdf(hi, dof) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, dof) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-14 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The CDF of Student's t distribution: 1 − ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0.
pub fn student_t_cdf(t: f64, dof: f64) -> f64 {
    let x = dof / (dof + t * t);
    let tail = 0.5 * regularized_incomplete_beta(x, 0.5 * dof, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The regularized incomplete beta function I_x(a, b), by Lentz's continued fraction
/// (Numerical Recipes `betai`/`betacf`), accurate to ~1e-14.
pub fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1)/(a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
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
        // Large ν: the normal quantile.
        assert!((student_t_quantile(0.975, 1e7) - 1.959_963_985).abs() < 1e-5);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
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
