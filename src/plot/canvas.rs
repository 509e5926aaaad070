//! The drawing surface: a figure drawn once per backend into a PNG and an SVG, with the few
//! primitives the figures use (rectangles, lines, discs, pixel-font text).

use super::font::layout;
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::Path;

/// What drawing returns: the backend's error as text.
pub(crate) type DrawResult = std::result::Result<(), String>;

/// A picture drawn the same way into a PNG and an SVG.
pub(crate) trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws onto a white area of that size.
    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult;
}

/// Draws `figure` into `png` and `svg` and returns the SVG's text (for reports that inline it).
///
/// Each file is written under a temporary name in its folder and then renamed, so a reader never
/// sees half a picture; on failure the temporary file is removed.
pub(crate) fn render<F: Figure>(figure: &F, png: &Path, svg: &Path) -> Result<String> {
    let err = |p: &Path, e: String| Error::Io { path: p.display().to_string(), source: std::io::Error::other(e) };
    let size = figure.size();
    // The bitmap backend picks the encoder from the extension: keep `.png` last.
    let tmp = png.with_extension("tmp.png");
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        figure.draw(&Canvas { area: &root })?;
        root.present().map_err(|e| e.to_string())
    })()
    .map_err(|e| err(png, e))
    .and_then(|()| std::fs::rename(&tmp, png).map_err(|e| Error::io(png, e)));
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(svg, e.to_string()))?;
        figure.draw(&Canvas { area: &root }).map_err(|e| err(svg, e))?;
        root.present().map_err(|e| err(svg, e.to_string()))?;
    }
    crate::io::output::write_atomic(svg, text.as_bytes())?;
    Ok(text)
}

/// How a line of text sits on its x coordinate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Anchor {
    /// x is the left end.
    Start,
    /// x is the middle.
    Middle,
    /// x is the right end.
    End,
}

/// A drawing area with the primitives the figures use, errors turned into strings.
pub(crate) struct Canvas<'a, DB: DrawingBackend> {
    area: &'a DrawingArea<DB, Shift>,
}

impl<DB: DrawingBackend> Canvas<'_, DB> {
    fn err(e: DrawingAreaErrorKind<DB::ErrorType>) -> String {
        e.to_string()
    }

    /// Width and height in pixels.
    pub(crate) fn size(&self) -> (i32, i32) {
        let (w, h) = self.area.dim_in_pixel();
        (w as i32, h as i32)
    }

    /// A filled rectangle between two corners.
    pub(crate) fn rect(&self, a: (i32, i32), b: (i32, i32), color: impl Into<RGBAColor>) -> DrawResult {
        self.area.draw(&Rectangle::new([a, b], color.into().filled())).map_err(Self::err)
    }

    /// A rectangle's outline, one pixel wide.
    pub(crate) fn frame(&self, a: (i32, i32), b: (i32, i32), color: impl Into<RGBAColor>) -> DrawResult {
        self.area.draw(&Rectangle::new([a, b], ShapeStyle::from(color.into()).stroke_width(1))).map_err(Self::err)
    }

    /// A polyline.
    pub(crate) fn line(&self, points: Vec<(i32, i32)>, color: impl Into<RGBAColor>, width: u32) -> DrawResult {
        let style = ShapeStyle::from(color.into()).stroke_width(width);
        self.area.draw(&PathElement::new(points, style)).map_err(Self::err)
    }

    /// A dashed polyline: `dash` pixels drawn, `gap` pixels left out.
    pub(crate) fn dashed(
        &self,
        points: Vec<(i32, i32)>,
        (dash, gap): (u32, u32),
        color: impl Into<RGBAColor>,
        width: u32,
    ) -> DrawResult {
        let style = ShapeStyle::from(color.into()).stroke_width(width);
        self.area.draw(&DashedPathElement::new(points, dash, gap, style)).map_err(Self::err)
    }

    /// A dotted polyline (3-pixel dots every 8 pixels along each segment).
    pub(crate) fn dotted(&self, points: Vec<(i32, i32)>, color: impl Into<RGBAColor>) -> DrawResult {
        let color = color.into();
        for seg in points.windows(2) {
            let (dx, dy) = (f64::from(seg[1].0 - seg[0].0), f64::from(seg[1].1 - seg[0].1));
            let steps = ((dx * dx + dy * dy).sqrt() / 8.0) as i32;
            for k in 0..=steps {
                let t = f64::from(k) / f64::from(steps.max(1));
                let (x, y) = (seg[0].0 + (t * dx) as i32, seg[0].1 + (t * dy) as i32);
                self.rect((x - 1, y - 1), (x + 2, y + 2), color)?;
            }
        }
        Ok(())
    }

    /// A filled disc.
    pub(crate) fn circle(&self, x: i32, y: i32, r: i32, color: impl Into<RGBAColor>) -> DrawResult {
        self.area.draw(&Circle::new((x, y), r, color.into().filled())).map_err(Self::err)
    }

    /// Text in the pixel font, each font pixel `scale` × `scale`, the top of its capitals at `y`.
    pub(crate) fn text(
        &self,
        (x, y): (i32, i32),
        s: &str,
        scale: i32,
        anchor: Anchor,
        color: impl Into<RGBAColor>,
    ) -> DrawResult {
        let color = color.into();
        let (runs, width) = layout(s, scale);
        let x = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2,
            Anchor::End => x - width,
        };
        for [u0, v0, u1, v1] in runs {
            self.rect((x + u0, y + v0), (x + u1, y + v1), color)?;
        }
        Ok(())
    }

    /// Text turned a quarter turn anticlockwise (read from bottom to top), centred on `y`, the
    /// top of its capitals at `x`.
    pub(crate) fn text_up(&self, (x, y): (i32, i32), s: &str, scale: i32, color: impl Into<RGBAColor>) -> DrawResult {
        let color = color.into();
        let (runs, width) = layout(s, scale);
        let y = y + width / 2;
        for [u0, v0, u1, v1] in runs {
            self.rect((x + v0, y - u1), (x + v1, y - u0), color)?;
        }
        Ok(())
    }
}
