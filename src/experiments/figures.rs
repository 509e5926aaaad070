//! The sweeps' pictures: log–log plots with error bars and a heat map, as PNG and SVG.
//!
//! plotters is built without fonts, so shapes are drawn by plotters in pixel coordinates on both
//! backends and every piece of text (title, axis labels, tick labels, legend) is added to the SVG
//! as raw `<text>` elements. The PNGs therefore carry no text; the SVGs (and the HTML report,
//! which embeds them) are the labelled versions.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// The series colours (a colour-blind-safe palette: Okabe–Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

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
    /// The title (SVG only).
    pub title: String,
    /// The x axis label (SVG only).
    pub x_label: String,
    /// The y axis label (SVG only).
    pub y_label: String,
    /// The series, one colour each.
    pub series: Vec<Series>,
    /// A guide line y ∝ x^slope through the first series' first point, with its legend text.
    pub guide: Option<(f64, String)>,
    /// Where to put the x ticks (e.g. the N of a sweep); empty: decades (and 2×, 5× on short axes).
    pub x_ticks: Vec<f64>,
}

/// Text to add to the SVG at (x, y).
struct Label {
    x: f64,
    y: f64,
    anchor: &'static str,
    size: u32,
    rotate: bool,
    text: String,
    fill: &'static str,
}

impl Label {
    fn new(x: f64, y: f64, anchor: &'static str, size: u32, text: impl Into<String>) -> Self {
        Label { x, y, anchor, size, rotate: false, text: text.into(), fill: "#000000" }
    }

    fn rotated(mut self) -> Self {
        self.rotate = true;
        self
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Appends the labels to an SVG document before its closing tag.
fn add_labels(svg: &str, labels: &[Label]) -> String {
    let mut text = String::new();
    for l in labels {
        let rotate = if l.rotate { format!(" transform=\"rotate(-90 {:.1} {:.1})\"", l.x, l.y) } else { String::new() };
        let _ = writeln!(
            text,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"{}\" text-anchor=\"{}\" fill=\"{}\"{rotate}>{}</text>",
            l.x,
            l.y,
            l.size,
            l.anchor,
            l.fill,
            escape(&l.text)
        );
    }
    match svg.rfind("</svg>") {
        Some(i) => format!("{}{}{}", &svg[..i], text, &svg[i..]),
        None => format!("{svg}{text}"),
    }
}

/// Draws with `draw` into `png` and into an SVG string, adds `labels` to the SVG, writes it to
/// `svg` and returns its text.
fn render(
    size: (u32, u32),
    png: &Path,
    svg: &Path,
    labels: &[Label],
    draw: impl Fn(&dyn DrawArea) -> std::result::Result<(), String>,
) -> Result<String> {
    let err = |p: &Path, e: String| Error::Io { path: p.display().to_string(), source: std::io::Error::other(e) };
    {
        let root = BitMapBackend::new(png, size).into_drawing_area();
        draw(&root).map_err(|e| err(png, e))?;
        root.present().map_err(|e| err(png, e.to_string()))?;
    }
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(&root).map_err(|e| err(svg, e))?;
        root.present().map_err(|e| err(svg, e.to_string()))?;
    }
    let text = add_labels(&text, labels);
    crate::io::output::write_atomic(svg, text.as_bytes())?;
    Ok(text)
}

/// Tick positions (in log10 units) for a log axis over [lo, hi]: the decades, plus 2× and 5×
/// when the range spans less than two decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mults: &[f64] = if hi - lo < 2.5 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for m in mults {
            let t = f64::from(e) + m.log10();
            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                ticks.push(t);
            }
        }
    }
    ticks
}

/// The x tick positions (log10) of a plot: its own, or the automatic ones.
fn x_ticks(plot: &LogLogPlot, f: &Frame) -> Vec<f64> {
    if plot.x_ticks.is_empty() {
        log_ticks(f.x.0, f.x.1)
    } else {
        plot.x_ticks.iter().filter(|x| **x > 0.0).map(|x| x.log10()).filter(|t| *t >= f.x.0 && *t <= f.x.1).collect()
    }
}

/// A number for a tick label: plain when moderate, else in scientific notation.
fn tick_text(v: f64) -> String {
    if (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// The pixel frame of a plot: the plot rectangle inside the canvas.
#[derive(Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, lx: f64) -> i32 {
        (self.left + (lx - self.x.0) / (self.x.1 - self.x.0) * (self.right - self.left)).round() as i32
    }
    fn py(&self, ly: f64) -> i32 {
        (self.bottom - (ly - self.y.0) / (self.y.1 - self.y.0) * (self.bottom - self.top)).round() as i32
    }
}

/// Draws a log–log plot with error bars into `png` and `svg`; returns the SVG text.
pub fn loglog(plot: &LogLogPlot, png: &Path, svg: &Path) -> Result<String> {
    let size = (860u32, 600u32);
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
    let frame = Frame { left: 95.0, right: 830.0, top: 45.0, bottom: 530.0, x: range(&lx), y: range(&ly) };
    let guide_pts = plot.guide.as_ref().and_then(|(slope, _)| {
        let first = plot.series.first()?.points.iter().find(|p| p.0 > 0.0 && p.1 > 0.0)?;
        let (x0, y0) = (first.0.log10(), first.1.log10());
        let at = |x: f64| y0 + slope * (x - x0);
        Some([(frame.x.0, at(frame.x.0)), (frame.x.1, at(frame.x.1))])
    });

    let mut labels = vec![
        Label::new(462.0, 26.0, "middle", 17, &plot.title),
        Label::new(462.0, 580.0, "middle", 15, &plot.x_label),
        Label::new(22.0, 288.0, "middle", 15, &plot.y_label).rotated(),
    ];
    for t in x_ticks(plot, &frame) {
        labels.push(Label::new(f64::from(frame.px(t)), frame.bottom + 20.0, "middle", 12, tick_text(10f64.powf(t))));
    }
    for t in log_ticks(frame.y.0, frame.y.1) {
        let y = f64::from(frame.py(t)) + 4.0;
        labels.push(Label::new(frame.left - 8.0, y, "end", 12, tick_text(10f64.powf(t))));
    }
    // Legend, top right: a line sample per series (and the guide), text in the SVG.
    let mut legend: Vec<(String, RGBColor, bool)> =
        plot.series.iter().enumerate().map(|(i, s)| (s.label.clone(), PALETTE[i % PALETTE.len()], false)).collect();
    if let Some((_, label)) = &plot.guide {
        legend.push((label.clone(), RGBColor(120, 120, 120), true));
    }
    for (k, (text, _, _)) in legend.iter().enumerate() {
        labels.push(Label::new(frame.right - 194.0, frame.top + 22.0 + 20.0 * k as f64, "start", 13, text));
    }
    render(size, png, svg, &labels, |area| area.draw_loglog(plot, &frame, &guide_pts, &legend))
}

/// What [`loglog`] and [`heatmap`] draw, for either backend.
trait DrawArea {
    fn draw_loglog(
        &self,
        plot: &LogLogPlot,
        frame: &Frame,
        guide: &Option<[(f64, f64); 2]>,
        legend: &[(String, RGBColor, bool)],
    ) -> std::result::Result<(), String>;
    fn draw_heatmap(&self, map: &HeatmapLayout) -> std::result::Result<(), String>;
}

impl<DB: DrawingBackend> DrawArea for DrawingArea<DB, Shift> {
    fn draw_loglog(
        &self,
        plot: &LogLogPlot,
        f: &Frame,
        guide: &Option<[(f64, f64); 2]>,
        legend: &[(String, RGBColor, bool)],
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        self.fill(&WHITE).map_err(e)?;
        let grid = RGBColor(225, 225, 225);
        for t in x_ticks(plot, f) {
            let x = f.px(t);
            self.draw(&PathElement::new(vec![(x, f.top as i32), (x, f.bottom as i32)], grid)).map_err(e)?;
            self.draw(&PathElement::new(vec![(x, f.bottom as i32), (x, f.bottom as i32 + 6)], BLACK)).map_err(e)?;
        }
        for t in log_ticks(f.y.0, f.y.1) {
            let y = f.py(t);
            self.draw(&PathElement::new(vec![(f.left as i32, y), (f.right as i32, y)], grid)).map_err(e)?;
            self.draw(&PathElement::new(vec![(f.left as i32 - 6, y), (f.left as i32, y)], BLACK)).map_err(e)?;
        }
        let (l, r, t, b) = (f.left as i32, f.right as i32, f.top as i32, f.bottom as i32);
        self.draw(&PathElement::new(vec![(l, t), (r, t), (r, b), (l, b), (l, t)], BLACK)).map_err(e)?;
        let clip = |p: (i32, i32)| (p.0.clamp(l, r), p.1.clamp(t, b));
        if let Some([a, c]) = guide {
            // Clip the guide to the frame by sampling it: a straight line in log–log coordinates.
            let pts: Vec<(i32, i32)> = (0..=100)
                .map(|k| {
                    let s = f64::from(k) / 100.0;
                    (a.0 + s * (c.0 - a.0), a.1 + s * (c.1 - a.1))
                })
                .filter(|(_, y)| *y >= f.y.0 && *y <= f.y.1)
                .map(|(x, y)| (f.px(x), f.py(y)))
                .collect();
            if pts.len() > 1 {
                let style = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(2);
                self.draw(&DashedPathElement::new(pts, 8, 6, style)).map_err(e)?;
            }
        }
        for (i, s) in plot.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let pts: Vec<&(f64, f64, f64)> = s.points.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
            let line: Vec<(i32, i32)> = pts.iter().map(|p| (f.px(p.0.log10()), f.py(p.1.log10()))).collect();
            self.draw(&PathElement::new(line.clone(), ShapeStyle::from(&colour).stroke_width(2))).map_err(e)?;
            for (p, c) in pts.iter().zip(&line) {
                let hi = f.py((p.1 + p.2).log10());
                let lo = if p.1 - p.2 > 0.0 { f.py((p.1 - p.2).log10()) } else { b };
                let bar = ShapeStyle::from(&colour).stroke_width(2);
                self.draw(&PathElement::new(vec![clip((c.0, lo)), clip((c.0, hi))], bar)).map_err(e)?;
                for y in [lo, hi] {
                    self.draw(&PathElement::new(vec![clip((c.0 - 5, y)), clip((c.0 + 5, y))], bar)).map_err(e)?;
                }
                self.draw(&Circle::new(*c, 5, colour.filled())).map_err(e)?;
            }
            if let Some((slope, intercept)) = s.fit {
                let (x0, x1) = pts
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0.log10()), b.max(p.0.log10())));
                let ln10 = std::f64::consts::LN_10;
                let at = |lx: f64| (intercept + slope * lx * ln10) / ln10;
                let fit = vec![clip((f.px(x0), f.py(at(x0)))), clip((f.px(x1), f.py(at(x1))))];
                self.draw(&DashedPathElement::new(fit, 3, 4, ShapeStyle::from(&colour.mix(0.7)).stroke_width(1)))
                    .map_err(e)?;
            }
        }
        let lx = (f.right - 230.0) as i32;
        for (k, (_, colour, dashed)) in legend.iter().enumerate() {
            let y = (f.top + 17.0 + 20.0 * k as f64) as i32;
            let style = ShapeStyle::from(colour).stroke_width(2);
            if *dashed {
                self.draw(&DashedPathElement::new(vec![(lx, y), (lx + 28, y)], 6, 4, style)).map_err(e)?;
            } else {
                self.draw(&PathElement::new(vec![(lx, y), (lx + 28, y)], style)).map_err(e)?;
                self.draw(&Circle::new((lx + 14, y), 4, colour.filled())).map_err(e)?;
            }
        }
        Ok(())
    }

    fn draw_heatmap(&self, m: &HeatmapLayout) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        self.fill(&WHITE).map_err(e)?;
        let (nx, ny) = (m.xs.len(), m.ys.len());
        for j in 0..ny {
            for i in 0..nx {
                let (x0, x1) = (m.cell_x(i as f64 - 0.5), m.cell_x(i as f64 + 0.5));
                let (y0, y1) = (m.cell_y(j as f64 - 0.5), m.cell_y(j as f64 + 0.5));
                let colour = match m.values[j][i] {
                    Some(v) if v > 0.0 && v.is_finite() => viridis(m.level(v)),
                    _ => RGBColor(200, 200, 200),
                };
                self.draw(&Rectangle::new([(x0, y1), (x1, y0)], colour.filled())).map_err(e)?;
                self.draw(&Rectangle::new([(x0, y1), (x1, y0)], WHITE.stroke_width(1))).map_err(e)?;
            }
        }
        // The lines N ε^d = K: straight in (log N, log ε), placed by interpolating the cell positions.
        for (k, _) in m.contours {
            let pts: Vec<(i32, i32)> = (0..=200)
                .filter_map(|s| {
                    let gx = -0.5 + f64::from(s) / 200.0 * nx as f64;
                    let n = m.value_at(m.xs, gx);
                    let eps = (k / n).powf(1.0 / m.dim as f64);
                    let gy = m.index_of(m.ys, eps)?;
                    (gy >= -0.5 && gy <= ny as f64 - 0.5).then(|| (m.cell_x(gx), m.cell_y(gy)))
                })
                .collect();
            if pts.len() > 1 {
                self.draw(&DashedPathElement::new(pts, 8, 5, ShapeStyle::from(&RED).stroke_width(2))).map_err(e)?;
            }
        }
        // Colour bar.
        for s in 0..100 {
            let t = f64::from(s) / 100.0;
            let y0 = (m.bottom - t * (m.bottom - m.top)) as i32;
            let y1 = (m.bottom - (t + 0.01) * (m.bottom - m.top)) as i32;
            self.draw(&Rectangle::new([(m.bar_x as i32, y1), (m.bar_x as i32 + 18, y0)], viridis(t).filled()))
                .map_err(e)?;
        }
        Ok(())
    }
}

/// A perceptually uniform ramp (viridis, by linear interpolation of five anchors) for t in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let s = t - i as f64;
    let lerp = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    RGBColor(lerp(A[i].0, A[i + 1].0), lerp(A[i].1, A[i + 1].1), lerp(A[i].2, A[i + 1].2))
}

/// A heat map of values over a grid of x (e.g. N) and y (e.g. ε), both on log scales.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// The title (SVG only).
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

/// A heat map with its pixel layout and colour scale.
struct HeatmapLayout<'a> {
    xs: &'a [f64],
    ys: &'a [f64],
    values: &'a [Vec<Option<f64>>],
    contours: &'a [(f64, String)],
    dim: usize,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    bar_x: f64,
    lo: f64,
    hi: f64,
}

impl HeatmapLayout<'_> {
    fn cell_x(&self, g: f64) -> i32 {
        (self.left + (g + 0.5) / self.xs.len() as f64 * (self.right - self.left)).round() as i32
    }
    fn cell_y(&self, g: f64) -> i32 {
        (self.bottom - (g + 0.5) / self.ys.len() as f64 * (self.bottom - self.top)).round() as i32
    }
    /// The colour level of a value: log10 between the smallest and the largest.
    fn level(&self, v: f64) -> f64 {
        if self.hi > self.lo { (v.log10() - self.lo) / (self.hi - self.lo) } else { 0.5 }
    }
    /// The value at fractional grid index g, interpolated (and extrapolated) geometrically.
    fn value_at(&self, vals: &[f64], g: f64) -> f64 {
        if vals.len() == 1 {
            return vals[0];
        }
        let i = (g.floor() as isize).clamp(0, vals.len() as isize - 2) as usize;
        let s = g - i as f64;
        (vals[i].ln() + s * (vals[i + 1].ln() - vals[i].ln())).exp()
    }
    /// The fractional grid index of value v (inverse of [`Self::value_at`]).
    fn index_of(&self, vals: &[f64], v: f64) -> Option<f64> {
        if vals.len() == 1 || !(v > 0.0 && v.is_finite()) {
            return None;
        }
        let lv = v.ln();
        let k = vals.len();
        let i = (0..k - 1).find(|&i| lv <= vals[i + 1].ln()).unwrap_or(k - 2);
        let (a, b) = (vals[i].ln(), vals[i + 1].ln());
        Some(i as f64 + (lv - a) / (b - a))
    }
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
    let size = (860u32, 600u32);
    let layout = HeatmapLayout {
        xs: &map.xs,
        ys: &map.ys,
        values: &map.values,
        contours: &map.contours,
        dim: map.dim.max(1),
        left: 95.0,
        right: 720.0,
        top: 60.0,
        bottom: 530.0,
        bar_x: 760.0,
        lo,
        hi,
    };
    let contours: Vec<&str> = map.contours.iter().map(|c| c.1.as_str()).collect();
    let mut labels = vec![
        Label::new(407.0, 22.0, "middle", 17, &map.title),
        Label::new(407.0, 40.0, "middle", 12, format!("red dashed: {}", contours.join(", "))),
        Label::new(407.0, 585.0, "middle", 15, &map.x_label),
        Label::new(22.0, 300.0, "middle", 15, &map.y_label).rotated(),
        Label::new(845.0, 300.0, "middle", 13, &map.value_label).rotated(),
        Label::new(784.0, 534.0, "start", 11, tick_text(10f64.powf(lo))),
        Label::new(784.0, 64.0, "start", 11, tick_text(10f64.powf(hi))),
    ];
    if contours.is_empty() {
        labels.remove(1);
    }
    for (i, x) in map.xs.iter().enumerate() {
        labels.push(Label::new(f64::from(layout.cell_x(i as f64)), 552.0, "middle", 12, tick_text(*x)));
    }
    for (j, y) in map.ys.iter().enumerate() {
        labels.push(Label::new(88.0, f64::from(layout.cell_y(j as f64)) + 4.0, "end", 12, tick_text(*y)));
    }
    for (j, row) in map.values.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            if let Some(v) = v {
                let (px, py) = (f64::from(layout.cell_x(i as f64)), f64::from(layout.cell_y(j as f64)) + 4.0);
                let mut l = Label::new(px, py, "middle", 10, format!("{v:.2e}"));
                // White text on the dark end of the ramp.
                if layout.level(*v) < 0.6 {
                    l.fill = "#ffffff";
                }
                labels.push(l);
            }
        }
    }
    render(size, png, svg, &labels, |area| area.draw_heatmap(&layout))
}
