//! Writing to stdout: JSON for `--json`, aligned tables and colour (only on a terminal) for
//! people. Every write returns `io::Result`, so a closed pipe ends the command quietly.

use std::io::{self, Write};

use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use cosmos_core::RunStatus;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn status(&self, status: RunStatus) -> String {
        let code = match status {
            RunStatus::Succeeded => "32",
            RunStatus::Failed => "31",
            RunStatus::Cancelled => "33",
            RunStatus::Queued => "2",
            _ => "36",
        };
        self.paint(code, status.as_str())
    }
}

pub fn json<T: Serialize>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

/// Visible width, ignoring ANSI colour sequences.
fn width(text: &str) -> usize {
    let mut w = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => w += c.width().unwrap_or(0),
        }
    }
    w
}

/// Cuts `text` to `max` columns, ending with `…` when cut; newlines become spaces.
/// Text a user wrote, safe to print for people: control characters and escape sequences
/// are shown (`\e`, `\x07`, `\r`) instead of acting on the terminal; line breaks stay, each
/// continued under `indent` spaces.
pub fn visible(text: &str, indent: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
            }
            '\t' => out.push('\t'),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

pub fn truncate(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.width() <= max {
        return flat;
    }
    let mut out = String::new();
    let mut w = 0;
    for c in flat.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// A table printed with columns aligned.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self, out: &mut dyn Write, style: Style) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let line = |cells: Vec<String>| -> String {
            let last = cells.len().saturating_sub(1);
            let mut s = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let pad = if i == last {
                    0
                } else {
                    widths[i] - width(&cell) + 2
                };
                s.push_str(&cell);
                s.push_str(&" ".repeat(pad));
            }
            s.trim_end().to_owned()
        };
        let header: Vec<String> = self.headers.iter().map(|h| style.dim(h)).collect();
        writeln!(out, "{}", line(header))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.clone()))?;
        }
        Ok(())
    }
}

/// `3m ago`, `2h ago`, `5d ago`: how long before `now`.
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - at).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A timestamp in the local zone, to the second.
pub fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_wide_characters_and_colour() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "东京".into()]);
        t.row(vec![Style { color: true }.bold("22"), "x".into()]);
        let mut buf = Vec::new();
        t.print(&mut buf, Style { color: false }).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  NAME");
        assert_eq!(lines[1], "1   东京");
        assert!(
            lines[2].starts_with("\x1b[1m22\x1b[0m  x"),
            "{:?}",
            lines[2]
        );
    }

    #[test]
    fn truncation_counts_columns() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a long line of text", 8), "a long …");
        assert_eq!(truncate("two\nlines", 20), "two lines");
        assert_eq!(width(&truncate("东京东京东京", 5)), 5);
    }

    #[test]
    fn ages_pick_a_unit() {
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::seconds(5), now), "5s ago");
        assert_eq!(age(now - chrono::Duration::minutes(7), now), "7m ago");
        assert_eq!(age(now - chrono::Duration::hours(3), now), "3h ago");
        assert_eq!(age(now - chrono::Duration::days(4), now), "4d ago");
    }
}

#[cfg(test)]
mod visible_tests {
    use super::visible;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            visible("red\u{1b}[31m cup\u{7}\r\nnext", 2),
            "red\\e[31m cup\\x07\\r\n  next"
        );
        assert_eq!(visible("café 港口", 0), "café 港口");
    }
}
