//! Terminal output: colour only on a terminal and only when `NO_COLOR` is unset
//! (https://no-color.org), and text wrapped for reading.

use std::io::IsTerminal;

/// What a piece of text is.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    Good,
    Warn,
    Bad,
    Heading,
    Dim,
    Error,
}

fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stdout gets colour.
pub fn stdout_colour() -> bool {
    colour_allowed() && std::io::stdout().is_terminal()
}

/// Whether stderr gets colour.
pub fn stderr_colour() -> bool {
    colour_allowed() && std::io::stderr().is_terminal()
}

/// `text` in `style`, when `on`.
pub fn paint(style: Style, text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let code = match style {
        Style::Good => "1;32",
        Style::Warn => "1;33",
        Style::Bad | Style::Error => "1;31",
        Style::Heading => "1",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Wraps `text` at `width` columns, each line indented by `indent` spaces.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && pad.len() + line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&pad);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&pad);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn wraps_words() {
        assert_eq!(super::wrap("aaa bbb ccc", 9, 2), "  aaa bbb\n  ccc\n");
        assert_eq!(super::wrap("", 10, 2), "");
    }
}
