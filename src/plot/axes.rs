//! Panels: a pixel rectangle with its data window, its axes (grid, ticks, tick labels, title,
//! axis names) and its legend; tick positions and number formats.

use super::canvas::{Anchor, Canvas, DrawResult};
use super::font::{fit_scale, text_height, text_width};
use super::palette::{GREY, GRID, INK, TEXT};
use plotters::prelude::*;

/// A plotting rectangle (pixels) with its data window. On a log axis the window and everything
/// drawn in it are in log10 units.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Panel {
    /// Left edge, pixels.
    pub left: i32,
    /// Top edge, pixels.
    pub top: i32,
    /// Width, pixels.
    pub width: i32,
    /// Height, pixels.
    pub height: i32,
    /// The x values at the left and right edges.
    pub x: (f64, f64),
    /// The y values at the bottom and top edges.
    pub y: (f64, f64),
}

/// What [`Panel::axes`] draws around a panel. Ticks are (value, label) pairs, values in the
/// panel's units.
pub(crate) struct Axes<'a> {
    /// Above the panel, from its left edge.
    pub title: &'a str,
    /// Centred below the tick labels.
    pub x_label: &'a str,
    /// Turned, left of the tick labels; inside the top-left corner when there is no room.
    pub y_label: &'a str,
    /// The x ticks.
    pub x_ticks: Vec<(f64, String)>,
    /// The y ticks.
    pub y_ticks: Vec<(f64, String)>,
    /// Grid lines at the ticks.
    pub grid: bool,
}

impl<'a> Axes<'a> {
    /// Linear ticks on both axes of `panel`, with grid lines.
    pub(crate) fn linear(panel: &Panel, title: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Axes {
            title,
            x_label,
            y_label,
            x_ticks: linear_ticks(panel.x.0, panel.x.1),
            y_ticks: linear_ticks(panel.y.0, panel.y.1),
            grid: true,
        }
    }
}

/// How a legend entry is marked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mark {
    /// A thick line.
    Line,
    /// A line with a disc in its middle (a series of points joined by lines).
    LineDot,
    /// A dashed line.
    Dashed,
    /// A dotted line.
    Dots,
    /// A disc.
    Dot,
    /// A filled box.
    Box,
}

/// Tick labels' scale: each font pixel is 2 × 2 screen pixels.
const SCALE: i32 = 2;

impl Panel {
    /// A panel at `(left, top, width, height)` showing `x` × `y`.
    pub(crate) fn new(rect: (i32, i32, i32, i32), x: (f64, f64), y: (f64, f64)) -> Self {
        Panel { left: rect.0, top: rect.1, width: rect.2, height: rect.3, x, y }
    }

    /// The right edge.
    pub(crate) fn right(&self) -> i32 {
        self.left + self.width
    }

    /// The bottom edge.
    pub(crate) fn bottom(&self) -> i32 {
        self.top + self.height
    }

    /// The pixel column of x.
    pub(crate) fn px(&self, x: f64) -> i32 {
        self.left + ((x - self.x.0) / (self.x.1 - self.x.0) * f64::from(self.width)).round() as i32
    }

    /// The pixel row of y.
    pub(crate) fn py(&self, y: f64) -> i32 {
        self.bottom() - ((y - self.y.0) / (self.y.1 - self.y.0) * f64::from(self.height)).round() as i32
    }

    /// The pixels of the points (xs[k], ys[k]).
    pub(crate) fn curve(&self, xs: &[f64], ys: &[f64]) -> Vec<(i32, i32)> {
        xs.iter().zip(ys).map(|(x, y)| (self.px(*x), self.py(*y))).collect()
    }

    /// Grid, ticks with their labels, the frame, the title and the axis names.
    pub(crate) fn axes<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>, a: &Axes<'_>) -> DrawResult {
        let (l, t, r, b) = (self.left, self.top, self.right(), self.bottom());
        for (v, label) in &a.x_ticks {
            let x = self.px(*v);
            if a.grid {
                c.line(vec![(x, t), (x, b)], GRID, 1)?;
            }
            c.line(vec![(x, b), (x, b + 6)], INK, 1)?;
            c.text((x, b + 11), label, SCALE, Anchor::Middle, INK)?;
        }
        let mut widest = 0;
        for (v, label) in &a.y_ticks {
            let y = self.py(*v);
            if a.grid {
                c.line(vec![(l, y), (r, y)], GRID, 1)?;
            }
            c.line(vec![(l - 6, y), (l, y)], INK, 1)?;
            c.text((l - 10, y - text_height(SCALE) / 2), label, SCALE, Anchor::End, INK)?;
            widest = widest.max(text_width(label, SCALE));
        }
        c.frame((l, t), (r, b), INK)?;
        let scale = fit_scale(a.title, c.size().0 - l - 4);
        c.text((l, t - 16 - text_height(scale)), a.title, scale, Anchor::Start, TEXT)?;
        c.text(((l + r) / 2, b + 34), a.x_label, SCALE, Anchor::Middle, INK)?;
        if !a.y_label.is_empty() {
            let x = l - 10 - widest - 10 - text_height(SCALE);
            if x >= 2 && text_width(a.y_label, SCALE) <= self.height + 2 * t.min(c.size().1 - b) {
                c.text_up((x, (t + b) / 2), a.y_label, SCALE, INK)?;
            } else {
                c.text((l + 6, t + 6), a.y_label, SCALE, Anchor::Start, INK)?;
            }
        }
        Ok(())
    }

    /// A legend box in the corner of the panel that covers the fewest of the pixels `avoid` (the
    /// top-right one on a tie).
    pub(crate) fn legend<DB: DrawingBackend>(
        &self,
        c: &Canvas<'_, DB>,
        entries: &[(Mark, RGBColor, &str)],
        avoid: &[(i32, i32)],
    ) -> DrawResult {
        let line_h = 22;
        let w = 44 + entries.iter().map(|e| text_width(e.2, SCALE)).max().unwrap_or(0) + 10;
        let h = line_h * entries.len() as i32 + 10;
        let (left, right) = (self.left + 8, self.right() - 8 - w);
        let (top, bottom) = (self.top + 8, self.bottom() - 8 - h);
        let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
        let covered = |(x, y): (i32, i32)| {
            avoid.iter().filter(|p| p.0 >= x - 4 && p.0 <= x + w + 4 && p.1 >= y - 4 && p.1 <= y + h + 4).count()
        };
        let (left, top) = corners.into_iter().min_by_key(|p| covered(*p)).unwrap_or((right, top));
        c.rect((left, top), (left + w, top + h), WHITE.mix(0.9))?;
        c.frame((left, top), (left + w, top + h), GREY)?;
        for (k, (mark, color, label)) in entries.iter().enumerate() {
            let y = top + 5 + k as i32 * line_h + line_h / 2;
            let (x0, x1) = (left + 8, left + 36);
            match mark {
                Mark::Line => c.line(vec![(x0, y), (x1, y)], *color, 3)?,
                Mark::LineDot => {
                    c.line(vec![(x0, y), (x1, y)], *color, 2)?;
                    c.circle((x0 + x1) / 2, y, 4, *color)?;
                }
                Mark::Dashed => c.dashed(vec![(x0, y), (x1, y)], (6, 4), *color, 2)?,
                Mark::Dots => c.dotted(vec![(x0, y), (x1, y)], *color)?,
                Mark::Dot => c.circle((x0 + x1) / 2, y, 4, *color)?,
                Mark::Box => c.rect((x0 + 4, y - 7), (x1 - 4, y + 7), *color)?,
            }
            c.text((left + 44, y - text_height(SCALE) / 2), label, SCALE, Anchor::Start, TEXT)?;
        }
        Ok(())
    }
}

/// Linear ticks: 1, 2 or 5 × 10^k steps, about eight of them, labelled with the step's decimals.
pub(crate) fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let raw = (hi - lo) / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            let label = format!("{:.*}", decimals, if v.abs() < 0.5 * step { 0.0 } else { v });
            (v, label)
        })
        .collect()
}

/// Ticks for a log axis over [lo, hi] (log10 units): the decades, plus 2× and 5× when the range
/// spans less than 2.5 decades; decades thinned to at most eight on long ranges. Labelled with
/// the value itself ([`tick_text`]).
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let mults: &[f64] = if hi - lo < 2.5 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let (a, b) = (lo.floor() as i32, hi.ceil() as i32);
    let stride = ((b - a) / 8 + 1).max(1);
    let mut ticks = Vec::new();
    for e in (a..=b).filter(|e| (e - a) % stride == 0) {
        for m in mults {
            let t = f64::from(e) + m.log10();
            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                ticks.push((t, tick_text(10f64.powf(t))));
            }
        }
    }
    ticks
}

/// A number for a tick label: plain with up to four decimals from 10⁻³ to 10⁵, else in
/// scientific notation with no decimals (1e-5).
pub(crate) fn tick_text(v: f64) -> String {
    if (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// A number with three significant digits: fixed notation from 0.01 to 10⁵, else 1.23e-4.
pub(crate) fn short(v: f64) -> String {
    if v == 0.0 || (1e-2..1e5).contains(&v.abs()) {
        let decimals = (2 - v.abs().log10().floor() as i64).clamp(0, 4) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_numbers_inside_the_range() {
        let t = linear_ticks(-4.0, 4.0);
        assert_eq!(
            t.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
            ["-4", "-3", "-2", "-1", "0", "1", "2", "3", "4"]
        );
        let t = linear_ticks(0.0, 0.33);
        assert!(t.iter().all(|(v, _)| (0.0..=0.33).contains(v)) && t.len() >= 4, "{t:?}");
    }

    #[test]
    fn log_ticks_label_the_values() {
        let t = log_ticks(-3.0, 0.0);
        assert_eq!(t.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(), ["0.001", "0.01", "0.1", "1"]);
        // Short ranges get 2× and 5×; long ones are thinned.
        assert_eq!(log_ticks(0.0, 1.0).len(), 4);
        assert!(log_ticks(-20.0, 0.0).len() <= 11);
        assert_eq!(log_ticks(-6.0, -5.0)[0].1, "1e-6");
    }

    #[test]
    fn short_numbers_have_three_digits() {
        assert_eq!(short(0.123456), "0.123");
        assert_eq!(short(12.0), "12");
        assert_eq!(short(1.2345e-4), "1.23e-4");
    }
}
