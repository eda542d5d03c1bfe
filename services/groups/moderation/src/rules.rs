//! Screening rules: case-insensitive word and phrase lists and regular expressions, each rule with
//! a category (a `reason` of `content.flagged`) and a severity.
//!
//! Words and phrases are matched here on whole words (`spam` does not match `spammer`; a phrase
//! matches its words in sequence, whatever the spacing and punctuation between them). Regular
//! expressions are PostgreSQL advanced regular expressions, matched case-insensitively (`~*`) by
//! the database the group already uses, so the group needs no regex engine of its own; they are
//! checked when the group starts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use serde::Deserialize;

/// How serious a match is; becomes the `score` of the automated flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// The flag's confidence score (0 to 1).
    pub fn score(self) -> f64 {
        match self {
            Severity::Low => 0.3,
            Severity::Medium => 0.6,
            Severity::High => 0.9,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// The rules file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    category: String,
    severity: Severity,
    #[serde(default)]
    words: Vec<String>,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    regexes: Vec<String>,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub category: String,
    pub severity: Severity,
    words: HashSet<String>,
    /// Each phrase as its lowercase words.
    phrases: Vec<Vec<String>>,
    pub regexes: Vec<String>,
}

/// Every rule of the file.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// One rule that matched a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    /// The word, phrase or pattern that matched.
    pub matched: String,
}

/// The flag to raise for one category: the highest severity among its hits.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryFlag {
    pub category: String,
    pub severity: Severity,
    pub details: String,
}

/// Longest `details` of a flag (the schema has no bound; reviewers need a summary, not a dump).
const MAX_DETAILS: usize = 500;

/// Lowercase words of a text: runs of letters and digits (any script).
pub fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Rules {
    /// Reads and validates a rules file; `categories` are the allowed category names.
    pub fn load(path: &Path, categories: &BTreeSet<String>) -> Result<Rules, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read rules file {}: {e}", path.display()))?;
        Rules::parse(&text, categories).map_err(|e| format!("rules file {}: {e}", path.display()))
    }

    /// Parses and validates rules, reporting every problem at once.
    pub fn parse(text: &str, categories: &BTreeSet<String>) -> Result<Rules, String> {
        let raw: RawRules = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        if raw.rules.is_empty() {
            problems.push("no rules".to_string());
        }
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}] ({})", r.name);
            if r.name.trim().is_empty() {
                problems.push(format!("rules[{i}]: empty name"));
            } else if !names.insert(r.name.clone()) {
                problems.push(format!("{at}: name used twice"));
            }
            if !categories.contains(&r.category) {
                problems.push(format!(
                    "{at}: unknown category `{}` (expected one of {})",
                    r.category,
                    categories.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if r.words.is_empty() && r.phrases.is_empty() && r.regexes.is_empty() {
                problems.push(format!("{at}: no words, phrases or regexes"));
            }
            let mut words = HashSet::new();
            for w in &r.words {
                match words_of(w).as_slice() {
                    [one] => {
                        words.insert(one.clone());
                    }
                    _ => problems.push(format!(
                        "{at}: `{w}` is not a single word (put it under phrases)"
                    )),
                }
            }
            let mut phrases = Vec::new();
            for p in &r.phrases {
                let tokens = words_of(p);
                if tokens.is_empty() {
                    problems.push(format!("{at}: phrase `{p}` has no words"));
                } else {
                    phrases.push(tokens);
                }
            }
            for x in &r.regexes {
                if x.is_empty() {
                    problems.push(format!("{at}: empty regex"));
                }
            }
            rules.push(Rule {
                name: r.name,
                category: r.category,
                severity: r.severity,
                words,
                phrases,
                regexes: r.regexes,
            });
        }
        if problems.is_empty() {
            Ok(Rules { rules })
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every regex with the index of its rule, in file order.
    pub fn patterns(&self) -> Vec<(usize, String)> {
        self.rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.regexes.iter().map(move |x| (i, x.clone())))
            .collect()
    }

    /// Word and phrase matches in `text` (at most one hit per rule: the first term that matched).
    pub fn match_terms(&self, text: &str) -> Vec<Hit> {
        let tokens = words_of(text);
        let present: HashSet<&str> = tokens.iter().map(String::as_str).collect();
        let mut hits = Vec::new();
        for rule in &self.rules {
            let word = tokens.iter().find(|t| rule.words.contains(t.as_str()));
            let phrase = || {
                rule.phrases.iter().find(|phrase| {
                    // Cheap pre-check, then the words in sequence.
                    phrase.iter().all(|w| present.contains(w.as_str()))
                        && tokens.windows(phrase.len()).any(|w| w == phrase.as_slice())
                })
            };
            let matched = match word {
                Some(w) => Some(w.clone()),
                None => phrase().map(|p| p.join(" ")),
            };
            if let Some(matched) = matched {
                hits.push(self.hit(rule, matched));
            }
        }
        hits
    }

    /// The hit of rule number `index` for a matched pattern.
    pub fn regex_hit(&self, index: usize, pattern: &str) -> Option<Hit> {
        self.rules
            .get(index)
            .map(|rule| self.hit(rule, format!("/{pattern}/")))
    }

    fn hit(&self, rule: &Rule, matched: String) -> Hit {
        Hit {
            rule: rule.name.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            matched,
        }
    }
}

/// One flag per category: its highest severity, and which rules matched what.
pub fn flags_by_category(hits: &[Hit]) -> Vec<CategoryFlag> {
    let mut by_category: BTreeMap<&str, Vec<&Hit>> = BTreeMap::new();
    for hit in hits {
        by_category.entry(&hit.category).or_default().push(hit);
    }
    by_category
        .into_iter()
        .map(|(category, hits)| {
            let severity = hits
                .iter()
                .map(|h| h.severity)
                .max()
                .unwrap_or(Severity::Low);
            let mut details = hits
                .iter()
                .map(|h| format!("{} ({}): {}", h.rule, h.severity.as_str(), h.matched))
                .collect::<Vec<_>>()
                .join("; ");
            if details.len() > MAX_DETAILS {
                let mut cut = MAX_DETAILS;
                while !details.is_char_boundary(cut) {
                    cut -= 1;
                }
                details.truncate(cut);
                details.push('…');
            }
            CategoryFlag {
                category: category.to_string(),
                severity,
                details,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn categories() -> BTreeSet<String> {
        ["SPAM", "HARASSMENT", "OTHER"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    const RULES: &str = r#"
rules:
  - name: spam
    category: SPAM
    severity: medium
    words: [Viagra]
    phrases: ["buy followers"]
  - name: spam-links
    category: SPAM
    severity: low
    regexes: ['bit\.ly/\w+']
  - name: threats
    category: HARASSMENT
    severity: high
    phrases: ["I will find you"]
"#;

    #[test]
    fn words_and_phrases_match_whole_words_case_insensitively() {
        let rules = Rules::parse(RULES, &categories()).expect("valid");
        let hits = rules.match_terms("Want to BUY   followers?! Cheap VIAGRA");
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].rule, "spam");
        assert_eq!(hits[0].matched, "viagra");
        let hits = rules.match_terms("buy, followers... and i will FIND you");
        let names: Vec<_> = hits.iter().map(|h| h.rule.as_str()).collect();
        assert_eq!(names, ["spam", "threats"]);
        assert!(rules.match_terms("viagras and followers to buy").is_empty());
        assert!(rules.match_terms("").is_empty());
    }

    #[test]
    fn flags_are_one_per_category_with_the_highest_severity() {
        let rules = Rules::parse(RULES, &categories()).expect("valid");
        let mut hits = rules.match_terms("buy followers");
        hits.extend(rules.regex_hit(1, r"bit\.ly/\w+"));
        let flags = flags_by_category(&hits);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].category, "SPAM");
        assert_eq!(flags[0].severity, Severity::Medium);
        assert_eq!(
            flags[0].details,
            r"spam (medium): buy followers; spam-links (low): /bit\.ly/\w+/"
        );
        assert_eq!(rules.patterns(), vec![(1, r"bit\.ly/\w+".to_string())]);
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = r#"
rules:
  - name: a
    category: NOPE
    severity: low
    words: ["two words"]
  - name: a
    category: SPAM
    severity: high
"#;
        let e = Rules::parse(bad, &categories()).expect_err("invalid");
        assert!(e.contains("unknown category `NOPE`"), "{e}");
        assert!(e.contains("not a single word"), "{e}");
        assert!(e.contains("name used twice"), "{e}");
        assert!(e.contains("no words, phrases or regexes"), "{e}");
        let e = Rules::parse(
            "rules:\n  - name: x\n    category: SPAM\n    severity: extreme\n    words: [a]\n",
            &categories(),
        )
        .expect_err("bad severity");
        assert!(e.contains("extreme"), "{e}");
        assert!(Rules::parse("rules: []", &categories()).is_err());
        assert!(Rules::parse("rulez: []", &categories()).is_err());
    }
}
