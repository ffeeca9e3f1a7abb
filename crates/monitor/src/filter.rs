//! Filter rules: reports the operator does not want (signal vs noise).
//!
//! A filtered report is never silently lost: it is moved to `failed/` with
//! `metadata.filtered` naming the rule and `failure = "filtered: <rule>"`,
//! counted and logged, and no uploader sends it. Annotation rules apply at
//! capture time (no dump is written); signature rules apply after
//! symbolication (the dump is kept in `failed/`).

use std::collections::BTreeMap;

/// Which reports to ignore. Plain data: the CLI maps flags and config keys
/// onto it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterRules {
    /// Crash signatures to ignore (the `signature` of the symbolicated
    /// report). `*` matches any run of characters, so `"libfoo::*"` ignores
    /// every crash whose top frame is in `libfoo`.
    pub ignore_signatures: Vec<String>,
    /// Annotations to ignore: a report whose annotations have `key` set to
    /// `value` (`*` wildcards allowed in the value) is not dumped.
    pub ignore_annotations: Vec<(String, String)>,
}

impl FilterRules {
    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.ignore_signatures.is_empty() && self.ignore_annotations.is_empty()
    }

    /// The first annotation rule matching `annotations`, as text
    /// (`annotation key=value`).
    pub fn match_annotations(&self, annotations: &BTreeMap<String, String>) -> Option<String> {
        self.ignore_annotations.iter().find_map(|(k, pattern)| {
            let value = annotations.get(k)?;
            glob_match(pattern, value).then(|| format!("annotation {k}={pattern}"))
        })
    }

    /// The first signature rule matching `signature`, as text
    /// (`signature <pattern>`).
    pub fn match_signature(&self, signature: &str) -> Option<String> {
        self.ignore_signatures.iter().find(|p| glob_match(p, signature)).map(|p| format!("signature {p}"))
    }

    /// Parse `KEY=VALUE` (the command-line form of an annotation rule).
    pub fn parse_annotation_rule(rule: &str) -> Result<(String, String), String> {
        match rule.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("annotation rule {rule:?} must be KEY=VALUE")),
        }
    }
}

/// `*`-only glob: `*` matches any run of characters, everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = parts.split_last().expect("split yields at least one part");
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("a*", "abcd"));
        assert!(glob_match("*d", "abcd"));
        assert!(glob_match("a*c*e", "abXcYe"));
        assert!(!glob_match("a*c*e", "abXcY"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn rules_name_what_matched() {
        let rules = FilterRules {
            ignore_signatures: vec!["crashmon_demo::*".into()],
            ignore_annotations: vec![("env".into(), "test*".into())],
        };
        let mut a = BTreeMap::new();
        a.insert("env".to_owned(), "prod".to_owned());
        assert_eq!(rules.match_annotations(&a), None);
        a.insert("env".to_owned(), "testing".to_owned());
        assert_eq!(rules.match_annotations(&a).as_deref(), Some("annotation env=test*"));
        assert_eq!(
            rules.match_signature("crashmon_demo::trigger::segv").as_deref(),
            Some("signature crashmon_demo::*")
        );
        assert_eq!(rules.match_signature("main"), None);
        assert_eq!(FilterRules::parse_annotation_rule("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert!(FilterRules::parse_annotation_rule("=v").is_err());
    }
}
