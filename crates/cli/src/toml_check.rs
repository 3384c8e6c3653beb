//! Every syntax and type problem of a TOML file in one run, each with its line. The TOML parser
//! and serde stop at the first problem, so the line of each one found is set aside (blanked,
//! keeping the line numbers) and the rest is read again, until the file reads or nothing more can
//! be learnt.

use serde::de::DeserializeOwned;
use std::fmt;

/// At most this many problems are collected; a file with more has bigger trouble.
const MAX_PROBLEMS: usize = 50;

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlProblem {
    /// 1-based line; 0 when the parser could not say.
    pub line: usize,
    /// What is wrong, in the parser's or serde's words (enum values as the file writes them).
    pub message: String,
}

impl fmt::Display for TomlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.message),
            n => write!(f, "line {n}: {}", self.message),
        }
    }
}

/// Every problem found reading `text` as a `T` (empty when it reads).
pub fn problems<T: DeserializeOwned>(text: &str) -> Vec<TomlProblem> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut out: Vec<TomlProblem> = Vec::new();
    let mut set_aside: Vec<String> = Vec::new();
    while out.len() < MAX_PROBLEMS {
        let joined = lines.join("\n");
        let e = match toml::from_str::<T>(&joined) {
            Ok(_) => break,
            Err(e) => e,
        };
        let message = e.message().trim().replace('\n', " ");
        let Some(span) = e.span() else {
            out.push(TomlProblem { line: 0, message });
            break;
        };
        // A field missing only because its line was set aside is not a problem of its own.
        if message.starts_with("missing field")
            && set_aside
                .iter()
                .any(|k| message.contains(&format!("`{k}`")))
        {
            break;
        }
        let at = joined
            .get(..span.start.min(joined.len()))
            .map_or(0, |before| before.matches('\n').count());
        let found = TomlProblem {
            line: at + 1,
            message,
        };
        // The same problem again: setting its line aside did not help; nothing more to learn.
        if out.contains(&found) {
            break;
        }
        out.push(found);
        let Some(line) = lines.get_mut(at) else { break };
        let trimmed = line.trim_start();
        // A problem with a whole table (its header line) or on a line already set aside: the
        // rest of the file cannot be read past it.
        if trimmed.is_empty() || trimmed.starts_with('[') {
            break;
        }
        if let Some((key, _)) = trimmed.split_once('=') {
            set_aside.push(key.trim().trim_matches('"').to_string());
        }
        line.clear();
    }
    // Serde reports in the order it reads fields, not the file's: in file order for a person.
    out.sort_by_key(|p| p.line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        style: Option<Style>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Style {
        RefreshToken,
        SelfRefresh,
    }

    #[test]
    fn every_problem_is_found_with_its_line() {
        let text = "name = \"x\"\nport = \"eighty\"\ncolour = \"red\"\nstyle = \"RefreshToken\"\ntags = [1]\n";
        let found = problems::<Demo>(text);
        let lines: Vec<usize> = found.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{found:?}");
        assert!(found[1].message.contains("colour"), "{found:?}");
        assert!(
            found[2].message.contains("`refresh_token`"),
            "enum values as the file writes them: {found:?}"
        );
    }

    #[test]
    fn syntax_problems_are_found_past_the_first() {
        let text = "name = \"x\"\nport = = 3\ntags = [\"a\"\nstyle = \"self_refresh\"\nbad line\n";
        let found = problems::<Demo>(text);
        let lines: Vec<usize> = found.iter().map(|p| p.line).collect();
        assert!(lines.contains(&2) && lines.contains(&5), "{found:?}");
        assert!(found.iter().all(|p| p.line > 0), "{found:?}");
    }

    #[test]
    fn a_good_file_has_none_and_a_missing_field_is_one() {
        assert!(problems::<Demo>("name = \"x\"\nport = 8080\n").is_empty());
        let found = problems::<Demo>("port = 8080\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("name"), "{found:?}");
    }
}
