//! Terminal text: ANSI colours when wanted, and aligned tables whose padding ignores them.

use std::io::IsTerminal;

/// Whether output is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is unset or empty (no-color.org).
    pub fn for_stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style { color: std::io::stdout().is_terminal() && !no_color }
    }

    pub(crate) fn paint(self, text: &str, color: Color) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let code = match color {
            Color::Plain => return text.to_string(),
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Cyan => "36",
            Color::Dim => "2",
            Color::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Color {
    Plain,
    Green,
    Red,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

/// A table cell: its text and colour.
pub(crate) type Cell = (String, Color);

pub(crate) fn plain(text: impl Into<String>) -> Cell {
    (text.into(), Color::Plain)
}

/// Rows of cells in columns two spaces apart, each line prefixed by `indent`; the header dim.
/// Columns are as wide as their widest text (counted in characters, before colouring).
pub(crate) fn table(style: Style, indent: &str, header: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (text, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let line = |cells: Vec<Cell>| {
        let last = cells.len() - 1;
        let mut out = indent.to_string();
        for (i, (text, color)) in cells.into_iter().enumerate() {
            let pad = if i == last { 0 } else { widths[i] - text.chars().count() + 2 };
            out.push_str(&style.paint(&text, color));
            out.push_str(&" ".repeat(pad));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| (h.to_string(), Color::Dim)).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}
