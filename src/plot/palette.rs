//! The figures' colours.

use plotters::style::RGBColor;

/// Frames, ticks and their labels.
pub(crate) const INK: RGBColor = RGBColor(60, 60, 60);
/// Titles and legend text.
pub(crate) const TEXT: RGBColor = RGBColor(0, 0, 0);
/// Grid lines.
pub(crate) const GRID: RGBColor = RGBColor(232, 232, 232);
/// Data points, guide lines, cells without a value.
pub(crate) const GREY: RGBColor = RGBColor(150, 150, 150);
/// Histograms and background dots.
pub(crate) const LIGHT_GREY: RGBColor = RGBColor(215, 215, 215);
/// A fitted curve.
pub(crate) const FIT_RED: RGBColor = RGBColor(215, 35, 35);
/// The truth a fit is compared with.
pub(crate) const TRUTH_BLACK: RGBColor = RGBColor(20, 20, 20);
/// Fitted weights and distributions.
pub(crate) const BLUE: RGBColor = RGBColor(40, 90, 200);
/// The starting point of a fit.
pub(crate) const LIGHT_BLUE: RGBColor = RGBColor(120, 170, 235);

/// The series colours of line plots (a colour-blind-safe palette: Okabe–Ito).
pub(crate) const SERIES: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// The colour of series `i`.
pub(crate) fn series(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// A blue → yellow ramp for t in [0, 1]: particle weights.
pub(crate) fn ramp(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t) as u8;
    RGBColor(lerp(40.0, 250.0), lerp(30.0, 230.0), lerp(110.0, 60.0))
}

/// A perceptually uniform ramp (viridis, by linear interpolation of five anchors) for t in
/// [0, 1]: heat maps.
pub(crate) fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let s = t - i as f64;
    let lerp = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    RGBColor(lerp(A[i].0, A[i + 1].0), lerp(A[i].1, A[i + 1].1), lerp(A[i].2, A[i + 1].2))
}
