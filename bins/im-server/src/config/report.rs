//! Error reporting: [`ConfigIssue`]s tied to the key they concern and to
//! where its value came from, and figment's errors turned into them.

use std::fmt;
use std::path::PathBuf;

use super::env_var_name;

/// One problem with the configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key, e.g. `database.type`.
    pub key: String,
    /// What is wrong, e.g. `expected sqlite|postgres|mysql, got 'oracle'`.
    pub message: String,
    /// Where the offending value came from (a file or an environment
    /// variable), when known.
    pub source: Option<String>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {} not found", .0.display())]
    FileNotFound(PathBuf),
    /// Values that could not be parsed or that failed validation.
    #[error("{}", Issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems (empty for [`ConfigError::FileNotFound`]).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Invalid(issues) => issues,
            Self::FileNotFound(_) => &[],
        }
    }
}

struct Issues<'a>(&'a [ConfigIssue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for issue in many {
                    write!(f, "\n  - {issue}")?;
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Figment errors -> readable issues
// ---------------------------------------------------------------------------

pub(super) fn issues_from_figment(err: figment::Error) -> Vec<ConfigIssue> {
    use figment::error::Kind;
    err.into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            // Figment usually puts the offending field at the end of the
            // path already; add it when it does not.
            let mut ends_with = |name: &str| {
                if path.last().map(String::as_str) != Some(name) {
                    path.push(name.to_owned());
                }
            };
            let message = match &e.kind {
                Kind::UnknownField(name, expected) => {
                    ends_with(name);
                    unknown_key_message(name, expected)
                }
                Kind::MissingField(name) => {
                    ends_with(name);
                    "missing required key".to_owned()
                }
                Kind::DuplicateField(name) => {
                    ends_with(name);
                    "given more than once".to_owned()
                }
                Kind::UnknownVariant(got, expected) => {
                    format!("expected {}, got '{got}'", expected.join("|"))
                }
                Kind::InvalidType(actual, expected) => {
                    format!("expected {}, got {actual}", readable_expected(expected))
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("expected {}, got {actual}", readable_expected(expected))
                }
                Kind::Message(msg) => msg.clone(),
                other => other.to_string(),
            };
            let key = path.join(".");
            let source = e.metadata.as_ref().map(|md| describe_source(md, &key));
            ConfigIssue {
                key,
                message,
                source,
            }
        })
        .collect()
}

/// Serde's names of primitive types, in words.
fn readable_expected(expected: &str) -> String {
    let words = match expected {
        "u8" => "an integer 0..=255",
        "u16" => "an integer 0..=65535",
        "u32" => "an integer 0..=4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i64" => "an integer",
        "a boolean" => "true or false",
        other if other.starts_with("struct ") => "a map of keys",
        other => other,
    };
    words.to_owned()
}

fn unknown_key_message(name: &str, expected: &[&str]) -> String {
    let best = expected
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .min();
    match best {
        Some((d, candidate)) if d <= 2.max(name.len() / 3) => {
            format!("unknown key (did you mean '{candidate}'?)")
        }
        _ if expected.is_empty() => "unknown key".to_owned(),
        _ => format!("unknown key; expected one of: {}", expected.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

pub(super) fn describe_source(md: &figment::Metadata, key: &str) -> String {
    if md.name.contains("environment variable") {
        return format!("environment variable {}", env_var_name(key));
    }
    match &md.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ => md.name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("http_prot", "http_port"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
