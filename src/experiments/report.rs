//! A self-contained HTML page for a sweep: its config, tables, fitted rates and the plots as
//! inline SVG (no external files, scripts or fonts).

use std::fmt::Write as _;

/// One block of a report.
#[derive(Clone, Debug)]
pub enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph of plain text.
    Text(String),
    /// Preformatted text (e.g. the config).
    Pre(String),
    /// A table: header and rows of cells (plain text).
    Table(Vec<String>, Vec<Vec<String>>),
    /// An inline SVG figure with a caption.
    Figure(String, String),
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG text without an XML declaration, ready to embed.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Renders the page.
pub fn html(title: &str, blocks: &[Block]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 980px; margin: 2em auto; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #bbb; padding: 3px 9px; text-align: right; font-variant-numeric: tabular-nums; }}\n\
         th {{ background: #eee; }}\n\
         pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}\n\
         figure {{ margin: 1.5em 0; }} figcaption {{ color: #555; }}\n\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(h) => {
                let _ = writeln!(out, "<h2>{}</h2>", escape(h));
            }
            Block::Text(t) => {
                let _ = writeln!(out, "<p>{}</p>", escape(t));
            }
            Block::Pre(t) => {
                let _ = writeln!(out, "<pre>{}</pre>", escape(t));
            }
            Block::Table(head, rows) => {
                out.push_str("<table>\n<tr>");
                for h in head {
                    let _ = write!(out, "<th>{}</th>", escape(h));
                }
                out.push_str("</tr>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", escape(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Figure(svg, caption) => {
                let _ = writeln!(
                    out,
                    "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
                    inline_svg(svg),
                    escape(caption)
                );
            }
        }
    }
    let _ = writeln!(out, "<p><small>frflow {}</small></p>\n</body>\n</html>", env!("CARGO_PKG_VERSION"));
    out
}
