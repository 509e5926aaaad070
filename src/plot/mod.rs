//! Every picture frflow draws, each as a PNG and an SVG with the same content.
//!
//! - [`plot_particles`]: the particle picture of a run (`particles.png`, `.svg`).
//! - [`crate::pictures`]: the application pictures of a run (two-layer net, NPMLE, MMD).
//! - [`crate::experiments::figures`]: the sweeps' log–log plots and heat maps.
//!
//! They share this module's pieces: a figure is drawn once per backend through a `Canvas`
//! (`canvas`), on `Panel`s with their axes, ticks and legends (`axes`), in the colours of
//! `palette`, and written by `render` (PNG and SVG, each under a temporary name, then renamed).
//!
//! **Text policy.** plotters is built without fonts, so all text (titles, axis labels, tick
//! labels, legends, values in heat-map cells) is drawn in a built-in 5×7 pixel font (`font`) as
//! filled rectangles, the same on both backends: the PNG and the SVG of a figure carry the same
//! labels. The font has upper and lower case, digits, the usual signs, the Greek letters the
//! figures use and half-size super- and subscripts (², ᴺ, ₂); any other character is drawn as a
//! question mark. SVG text is therefore not selectable: the numbers behind every figure are in
//! the CSV and JSON files written next to it.

mod axes;
mod canvas;
mod font;
mod palette;
mod particles;

pub(crate) use axes::{Axes, Mark, Panel, log_ticks, short, tick_text};
pub(crate) use canvas::{Anchor, Canvas, DrawResult, Figure, render};
pub(crate) use font::{fit_scale, text_height, text_width};
pub(crate) use palette::{BLUE, FIT_RED, GREY, INK, LIGHT_BLUE, LIGHT_GREY, TRUTH_BLACK, ramp, series, viridis};
pub use particles::{log_gibbs_target, plot_particles};
