//! The 5×7 pixel font: every character of every figure is a set of filled rectangles, so the PNG
//! and the SVG show the same text (plotters is built without fonts).
//!
//! The glyphs cover printable ASCII letters (upper and lower case), digits, the usual signs, the
//! Greek letters the figures use (ε μ σ τ δ π λ Σ), ± − – · … ∝ ≈, superscript and subscript digits
//! (², ₂, ⁻, ᴺ, ᵈ: drawn at half size, raised or lowered) and the combining macron (W̄: a bar over
//! the previous character). Any other character is drawn as a question mark.

/// Where a character sits relative to the line of text.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// A full-size glyph on the line.
    Line,
    /// A half-size glyph raised (², ᴺ).
    Super,
    /// A half-size glyph lowered (₂).
    Sub,
    /// A bar over the previous glyph (U+0304, combining macron), taking no room.
    Over,
}

/// A filled rectangle of a laid-out text, in text coordinates: `u` along the text from its start,
/// `v` down from the top of the capitals; `[u0, v0, u1, v1]`, exclusive ends.
pub(crate) type Run = [i32; 4];

/// The pixel rectangles of `s` at `scale` (each font pixel `scale` × `scale` screen pixels) and
/// the text's width. A glyph is 5 pixels wide with 1 pixel between glyphs and 7 pixels high.
pub(crate) fn layout(s: &str, scale: i32) -> (Vec<Run>, i32) {
    let small = (scale / 2).max(1);
    let mut runs = Vec::new();
    let (mut u, mut last) = (0, None::<(i32, i32)>);
    for ch in s.chars() {
        let (place, bits) = glyph(ch);
        let (px, top) = match place {
            Place::Line => (scale, 0),
            // Half size, the top a little above the capitals' top or the bottom a little below
            // their base line; at scale 1 (no half size) full size, shifted by 3 pixels.
            Place::Super if scale == 1 => (1, -3),
            Place::Sub if scale == 1 => (1, 3),
            Place::Super => (small, -small),
            Place::Sub => (small, 7 * scale + small - 7 * small),
            Place::Over => {
                if let Some((start, px)) = last {
                    let v = -2 * px;
                    runs.push([start, v, start + 5 * px, v + px]);
                }
                continue;
            }
        };
        for (row, bits) in bits.iter().enumerate() {
            // One rectangle per horizontal run of set pixels.
            let mut col = 0;
            while col < 5 {
                if bits & (0b10000 >> col) != 0 {
                    let start = col;
                    while col < 5 && bits & (0b10000 >> col) != 0 {
                        col += 1;
                    }
                    let v = top + row as i32 * px;
                    runs.push([u + start * px, v, u + col * px, v + px]);
                } else {
                    col += 1;
                }
            }
        }
        last = Some((u, px));
        u += 6 * px;
    }
    // The advance after the last glyph includes one pixel of spacing that is not part of the text.
    let width = match last {
        Some((_, px)) => u - px,
        None => 0,
    };
    (runs, width)
}

/// Width in screen pixels of `s` at `scale`.
pub(crate) fn text_width(s: &str, scale: i32) -> i32 {
    layout(s, scale).1
}

/// The larger scale, 2 or 1, at which `s` fits in `width` pixels (1 when neither does).
pub(crate) fn fit_scale(s: &str, width: i32) -> i32 {
    if text_width(s, 2) <= width { 2 } else { 1 }
}

/// Height in screen pixels of a line of text at `scale` (the capitals; sub- and superscripts
/// reach a little beyond).
pub(crate) const fn text_height(scale: i32) -> i32 {
    7 * scale
}

const UNKNOWN: [u8; 7] = [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100];

/// Where `ch` goes and its 5×7 bitmap (rows top to bottom, bit 4 = leftmost column).
fn glyph(ch: char) -> (Place, [u8; 7]) {
    let (place, base) = match ch {
        '⁰' => (Place::Super, '0'),
        '¹' => (Place::Super, '1'),
        '²' => (Place::Super, '2'),
        '³' => (Place::Super, '3'),
        '⁴'..='⁹' => (Place::Super, char::from(b'4' + (ch as u32 - '⁴' as u32) as u8)),
        '⁻' => (Place::Super, '-'),
        '⁺' => (Place::Super, '+'),
        'ᴺ' => (Place::Super, 'N'),
        'ᵈ' => (Place::Super, 'd'),
        '₀'..='₉' => (Place::Sub, char::from(b'0' + (ch as u32 - '₀' as u32) as u8)),
        '\u{304}' => return (Place::Over, [0; 7]),
        _ => (Place::Line, ch),
    };
    (place, bitmap(base))
}

fn bitmap(ch: char) -> [u8; 7] {
    match ch {
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'J' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'Q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        'Z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        'a' => [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'b' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110],
        'c' => [0, 0, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110],
        'd' => [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111],
        'e' => [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'f' => [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000],
        'g' => [0, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'h' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'i' => [0b00100, 0, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
        'j' => [0b00010, 0, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100],
        'k' => [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010],
        'l' => [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'm' => [0, 0, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001],
        'n' => [0, 0, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'o' => [0, 0, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
        'p' => [0, 0, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000],
        'q' => [0, 0, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001],
        'r' => [0, 0, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
        's' => [0, 0, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110],
        't' => [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110],
        'u' => [0, 0, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101],
        'v' => [0, 0, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'w' => [0, 0, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
        'x' => [0, 0, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001],
        'y' => [0, 0, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'z' => [0, 0, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111],
        'ε' => [0, 0, 0b01111, 0b10000, 0b01110, 0b10000, 0b01111],
        'μ' => [0, 0, 0b10001, 0b10001, 0b10011, 0b11101, 0b10000],
        'σ' => [0, 0, 0b01111, 0b10010, 0b10001, 0b10001, 0b01110],
        'τ' => [0, 0, 0b11111, 0b00100, 0b00100, 0b00101, 0b00010],
        'δ' => [0b01110, 0b01000, 0b00100, 0b01110, 0b10001, 0b10001, 0b01110],
        'π' => [0, 0, 0b11111, 0b01010, 0b01010, 0b01010, 0b10011],
        'λ' => [0b01000, 0b00100, 0b00100, 0b01010, 0b01010, 0b10001, 0b10001],
        'Σ' => [0b11111, 0b10000, 0b01000, 0b00100, 0b01000, 0b10000, 0b11111],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100],
        ',' => [0, 0, 0, 0, 0b01100, 0b00100, 0b01000],
        ';' => [0, 0b01100, 0b01100, 0, 0b01100, 0b00100, 0b01000],
        ':' => [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0],
        '-' | '−' | '–' => [0, 0, 0, 0b11111, 0, 0, 0],
        '+' => [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0],
        '±' => [0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0, 0b11111],
        '=' => [0, 0, 0b11111, 0, 0b11111, 0, 0],
        '≈' => [0, 0b01000, 0b10101, 0b00010, 0b01000, 0b10101, 0b00010],
        '∝' => [0, 0, 0b01011, 0b10100, 0b10100, 0b01011, 0],
        '<' => [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010],
        '>' => [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000],
        '*' => [0, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0],
        '·' => [0, 0, 0, 0b01100, 0b01100, 0, 0],
        '…' => [0, 0, 0, 0, 0, 0, 0b10101],
        '/' => [0, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0],
        '|' => [0b00100; 7],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        '[' => [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110],
        ']' => [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110],
        '_' => [0, 0, 0, 0, 0, 0, 0b11111],
        '~' => [0, 0, 0b01000, 0b10101, 0b00010, 0, 0],
        '^' => [0b00100, 0b01010, 0b10001, 0, 0, 0, 0],
        '\'' => [0b00100, 0b00100, 0b01000, 0, 0, 0, 0],
        '!' => [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0b00100],
        '%' => [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether every character of `s` has a glyph (none falls back to the question mark).
    fn covers(s: &str) -> bool {
        s.chars().all(|ch| ch == '?' || glyph(ch).1 != UNKNOWN)
    }

    #[test]
    fn widths_count_glyphs_and_spacing() {
        assert_eq!(text_width("", 2), 0);
        assert_eq!(text_width("A", 2), 10);
        assert_eq!(text_width("AB", 2), 22);
        // A superscript is half size at scale 2; a combining macron takes no room.
        assert_eq!(text_width("N²", 2), 12 + 5);
        assert_eq!(text_width("W\u{304}", 2), text_width("W", 2));
    }

    #[test]
    fn the_figures_labels_have_glyphs() {
        for s in [
            "W₂(μᴺ_T, μ_T) (against: gaussian)",
            "(1/N) Σ |W_i − W̄_i|",
            "Stationary variance error |Var(μᴺ) − Var(μ*)| at N = 4096",
            "ε (kernel bandwidth)",
            "A: slope -0.489 [-0.531, -0.447]",
            "N^(-1/2)",
            "ε²",
            "N ε^d = 10",
            "Weight coupling at T (mean ± s.e. over 16 replicates)",
            "–",
        ] {
            assert!(covers(s), "{s}");
        }
        assert!(!covers("漢"));
        // Upper and lower case differ.
        assert_ne!(glyph('a'), glyph('A'));
    }
}
