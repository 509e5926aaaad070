//! The sweeps' pictures: log–log plots with error bars and a heat map, as PNG and SVG.
//!
//! Drawn with [`crate::plot`]'s panels and pixel font: the PNG and the SVG carry the same title,
//! axis labels, tick labels, legend and (heat map) cell values, and the SVG's text is returned
//! for the HTML report, which inlines it.

use crate::error::{Error, Result};
use crate::plot::{
    Anchor, Axes, Canvas, DrawResult, Figure, GREY, INK, Mark, Panel, fit_scale, log_ticks, render, series, short,
    text_height, text_width, tick_text, viridis,
};
use plotters::prelude::*;
use std::path::Path;

/// One series of a log–log plot: points (x, y, standard error of y).
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, mean y, standard error of y); points with y ≤ 0 are skipped.
    pub points: Vec<(f64, f64, f64)>,
    /// A fitted power law (slope, intercept of ln y on ln x) drawn as a thin dashed line.
    pub fit: Option<(f64, f64)>,
}

/// A log–log plot.
#[derive(Clone, Debug)]
pub struct LogLogPlot {
    /// The title.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// The series, one colour each.
    pub series: Vec<Series>,
    /// A guide line y ∝ x^slope through the first series' first point, with its legend text.
    pub guide: Option<(f64, String)>,
    /// Where to put the x ticks (e.g. the N of a sweep); empty: decades (and 2×, 5× on short axes).
    pub x_ticks: Vec<f64>,
}

/// Draws a log–log plot with error bars into `png` and `svg`; returns the SVG text.
pub fn loglog(plot: &LogLogPlot, png: &Path, svg: &Path) -> Result<String> {
    let points: Vec<(f64, f64, f64)> =
        plot.series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
    if points.is_empty() {
        return Err(Error::invalid("plot", &plot.title, "at least one point with x > 0 and y > 0"));
    }
    let lx: Vec<f64> = points.iter().map(|p| p.0.log10()).collect();
    let mut ly: Vec<f64> = points.iter().map(|p| p.1.log10()).collect();
    ly.extend(points.iter().map(|p| (p.1 + p.2).log10()));
    ly.extend(points.iter().filter(|p| p.1 - p.2 > 0.0).map(|p| (p.1 - p.2).log10()));
    let range = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        let pad = 0.08 * (hi - lo).max(0.3);
        (lo - pad, hi + pad)
    };
    let panel = Panel::new((120, 56, 770, 480), range(&lx), range(&ly));
    render(&LogLogFigure { plot, panel }, png, svg)
}

/// A log–log plot laid out: its panel in log10 units.
struct LogLogFigure<'a> {
    plot: &'a LogLogPlot,
    panel: Panel,
}

impl Figure for LogLogFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (920, 640)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let (plot, f) = (self.plot, &self.panel);
        let x_ticks = if plot.x_ticks.is_empty() {
            log_ticks(f.x.0, f.x.1)
        } else {
            let inside = |t: &f64| *t >= f.x.0 && *t <= f.x.1;
            plot.x_ticks
                .iter()
                .filter(|x| **x > 0.0)
                .map(|x| (x.log10(), tick_text(*x)))
                .filter(|t| inside(&t.0))
                .collect()
        };
        let axes = Axes {
            title: &plot.title,
            x_label: &plot.x_label,
            y_label: &plot.y_label,
            x_ticks,
            y_ticks: log_ticks(f.y.0, f.y.1),
            grid: true,
        };
        f.axes(c, &axes)?;
        let (l, r, t, b) = (f.left, f.right(), f.top, f.bottom());
        let clip = |p: (i32, i32)| (p.0.clamp(l, r), p.1.clamp(t, b));
        let mut legend: Vec<(Mark, RGBColor, &str)> = Vec::new();
        if let Some((slope, label)) = &plot.guide {
            // y ∝ x^slope through the first series' first point: a straight line in log–log
            // coordinates, clipped to the frame by sampling it.
            let first = plot.series.first().and_then(|s| s.points.iter().find(|p| p.0 > 0.0 && p.1 > 0.0));
            if let Some(first) = first {
                let (x0, y0) = (first.0.log10(), first.1.log10());
                let pts: Vec<(i32, i32)> = (0..=100)
                    .map(|k| {
                        let x = f.x.0 + f64::from(k) / 100.0 * (f.x.1 - f.x.0);
                        (x, y0 + slope * (x - x0))
                    })
                    .filter(|(_, y)| *y >= f.y.0 && *y <= f.y.1)
                    .map(|(x, y)| (f.px(x), f.py(y)))
                    .collect();
                if pts.len() > 1 {
                    c.dashed(pts, (8, 6), GREY, 2)?;
                }
            }
            legend.push((Mark::Dashed, GREY, label));
        }
        let mut dots = Vec::new();
        for (i, s) in plot.series.iter().enumerate() {
            let colour = series(i);
            let pts: Vec<&(f64, f64, f64)> = s.points.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
            let line: Vec<(i32, i32)> = pts.iter().map(|p| (f.px(p.0.log10()), f.py(p.1.log10()))).collect();
            c.line(line.clone(), colour, 2)?;
            for (p, at) in pts.iter().zip(&line) {
                let hi = f.py((p.1 + p.2).log10());
                let lo = if p.1 - p.2 > 0.0 { f.py((p.1 - p.2).log10()) } else { b };
                c.line(vec![clip((at.0, lo)), clip((at.0, hi))], colour, 2)?;
                for y in [lo, hi] {
                    c.line(vec![clip((at.0 - 5, y)), clip((at.0 + 5, y))], colour, 2)?;
                }
                c.circle(at.0, at.1, 5, colour)?;
            }
            if let Some((slope, intercept)) = s.fit {
                let (x0, x1) = pts
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0.log10()), b.max(p.0.log10())));
                let ln10 = std::f64::consts::LN_10;
                let at = |lx: f64| (intercept + slope * lx * ln10) / ln10;
                let fit = vec![clip((f.px(x0), f.py(at(x0)))), clip((f.px(x1), f.py(at(x1))))];
                c.dashed(fit, (3, 4), colour.mix(0.7), 1)?;
            }
            dots.extend(line);
            legend.insert(i, (Mark::LineDot, colour, &s.label));
        }
        f.legend(c, &legend, &dots)
    }
}

/// A heat map of values over a grid of x (e.g. N) and y (e.g. ε), both on log scales.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// The title.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// What the colour shows (colour bar label).
    pub value_label: String,
    /// Increasing x values (columns).
    pub xs: Vec<f64>,
    /// Increasing y values (rows).
    pub ys: Vec<f64>,
    /// values[row][column]; `None` cells are grey.
    pub values: Vec<Vec<Option<f64>>>,
    /// Lines x · y^dim = K to draw, with their labels.
    pub contours: Vec<(f64, String)>,
    /// The exponent d in x · y^d.
    pub dim: usize,
}

/// A heat map with its panel (in grid units: cell i spans i ± ½) and colour scale (log10 of the
/// smallest and largest value).
struct HeatmapFigure<'a> {
    map: &'a Heatmap,
    panel: Panel,
    lo: f64,
    hi: f64,
}

impl HeatmapFigure<'_> {
    /// The colour level of a value: log10 between the smallest and the largest.
    fn level(&self, v: f64) -> f64 {
        if self.hi > self.lo { (v.log10() - self.lo) / (self.hi - self.lo) } else { 0.5 }
    }
}

/// The value at fractional grid index g, interpolated (and extrapolated) geometrically.
fn value_at(vals: &[f64], g: f64) -> f64 {
    if vals.len() == 1 {
        return vals[0];
    }
    let i = (g.floor() as isize).clamp(0, vals.len() as isize - 2) as usize;
    let s = g - i as f64;
    (vals[i].ln() + s * (vals[i + 1].ln() - vals[i].ln())).exp()
}

/// The fractional grid index of value v (inverse of [`value_at`]).
fn index_of(vals: &[f64], v: f64) -> Option<f64> {
    if vals.len() == 1 || !(v > 0.0 && v.is_finite()) {
        return None;
    }
    let lv = v.ln();
    let k = vals.len();
    let i = (0..k - 1).find(|&i| lv <= vals[i + 1].ln()).unwrap_or(k - 2);
    let (a, b) = (vals[i].ln(), vals[i + 1].ln());
    Some(i as f64 + (lv - a) / (b - a))
}

/// Draws a heat map into `png` and `svg`; returns the SVG text.
pub fn heatmap(map: &Heatmap, png: &Path, svg: &Path) -> Result<String> {
    if map.xs.is_empty() || map.ys.is_empty() || map.values.len() != map.ys.len() {
        return Err(Error::invalid("heatmap", &map.title, "a non-empty grid with one row per y"));
    }
    let logs: Vec<f64> =
        map.values.iter().flatten().flatten().filter(|v| **v > 0.0 && v.is_finite()).map(|v| v.log10()).collect();
    let (lo, hi) = logs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let (nx, ny) = (map.xs.len() as f64, map.ys.len() as f64);
    let panel = Panel::new((120, 56, 640, 470), (-0.5, nx - 0.5), (-0.5, ny - 0.5));
    render(&HeatmapFigure { map, panel, lo, hi }, png, svg)
}

impl Figure for HeatmapFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (960, 640)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let (m, p) = (self.map, &self.panel);
        let (nx, ny) = (m.xs.len(), m.ys.len());
        for j in 0..ny {
            for i in 0..nx {
                let (x0, x1) = (p.px(i as f64 - 0.5), p.px(i as f64 + 0.5));
                let (y0, y1) = (p.py(j as f64 - 0.5), p.py(j as f64 + 0.5));
                let colour = match m.values[j][i] {
                    Some(v) if v > 0.0 && v.is_finite() => viridis(self.level(v)),
                    _ => RGBColor(200, 200, 200),
                };
                c.rect((x0, y1), (x1, y0), colour)?;
                c.frame((x0, y1), (x1, y0), WHITE)?;
                // The value, white on the dark end of the ramp, when it fits the cell.
                if let Some(v) = m.values[j][i] {
                    let text = short(v);
                    let scale = fit_scale(&text, x1 - x0 - 6);
                    if text_width(&text, scale) <= x1 - x0 - 4 && text_height(scale) <= y0 - y1 - 4 {
                        let ink = if self.level(v) < 0.6 { WHITE } else { BLACK };
                        let y = (y0 + y1 - text_height(scale)) / 2;
                        c.text(((x0 + x1) / 2, y), &text, scale, Anchor::Middle, ink)?;
                    }
                }
            }
        }
        let axes = Axes {
            title: &m.title,
            x_label: &m.x_label,
            y_label: &m.y_label,
            x_ticks: m.xs.iter().enumerate().map(|(i, x)| (i as f64, tick_text(*x))).collect(),
            y_ticks: m.ys.iter().enumerate().map(|(j, y)| (j as f64, tick_text(*y))).collect(),
            grid: false,
        };
        p.axes(c, &axes)?;
        // The lines x · y^d = K: straight in (log x, log y), placed by interpolating the cells.
        let dim = m.dim.max(1) as f64;
        for (k, _) in &m.contours {
            let pts: Vec<(i32, i32)> = (0..=200)
                .filter_map(|s| {
                    let gx = -0.5 + f64::from(s) / 200.0 * nx as f64;
                    let y = (k / value_at(&m.xs, gx)).powf(1.0 / dim);
                    let gy = index_of(&m.ys, y)?;
                    (gy >= -0.5 && gy <= ny as f64 - 0.5).then(|| (p.px(gx), p.py(gy)))
                })
                .collect();
            if pts.len() > 1 {
                c.dashed(pts, (8, 5), RED, 2)?;
            }
        }
        if !m.contours.is_empty() {
            let names: Vec<&str> = m.contours.iter().map(|c| c.1.as_str()).collect();
            let note = format!("red dashed: {}", names.join(", "));
            c.text(((p.left + p.right()) / 2, p.bottom() + 58), &note, 2, Anchor::Middle, INK)?;
        }
        // Colour bar, its end values and what it shows.
        let (bar, top, bottom) = (p.right() + 40, p.top, p.bottom());
        let edge = |s: i32| bottom - s * (bottom - top) / 100;
        for s in 0..100 {
            c.rect((bar, edge(s + 1)), (bar + 18, edge(s)), viridis(f64::from(s) / 100.0))?;
        }
        c.frame((bar, top), (bar + 18, bottom), INK)?;
        let h = text_height(2);
        c.text((bar + 24, bottom - h), &short(10f64.powf(self.lo)), 2, Anchor::Start, INK)?;
        c.text((bar + 24, top), &short(10f64.powf(self.hi)), 2, Anchor::Start, INK)?;
        let width = c.size().0;
        c.text_up((width - 8 - h, (top + bottom) / 2), &m.value_label, 2, INK)
    }
}
