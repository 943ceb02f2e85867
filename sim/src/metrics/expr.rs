//! The PromQL subset the embedded source evaluates: sums and differences of
//! `sum(increase(metric{matchers}[range]))`, or of `sum(increase(a{..}[r]) or increase(b{..}[r]))`
//! for selectors that cannot match the same series, the shape of every builtin query and of the
//! usual success/trial templates. Parsing follows the PromQL lexer (Go string escapes,
//! fully anchored RE2 regexes, `#` comments), so both sources read the same query alike.

use std::time::Duration;

use regex::Regex;

/// A label matcher, as in `{code=~"5.."}`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
}

#[derive(Clone, Debug)]
pub enum MatchOp {
    Equal(String),
    NotEqual(String),
    /// Anchored at both ends, as Prometheus does.
    Regex(Regex),
    NotRegex(Regex),
}

impl Matcher {
    /// Whether a series' label value matches; pass `""` for a label the series lacks
    /// (Prometheus treats a missing label as the empty value).
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(v) => value == v,
            MatchOp::NotEqual(v) => value != v,
            MatchOp::Regex(r) => r.is_match(value),
            MatchOp::NotRegex(r) => !r.is_match(value),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        let key = |m: &Matcher| -> (u8, String) {
            match &m.op {
                MatchOp::Equal(v) => (0, v.clone()),
                MatchOp::NotEqual(v) => (1, v.clone()),
                MatchOp::Regex(r) => (2, r.as_str().to_string()),
                MatchOp::NotRegex(r) => (3, r.as_str().to_string()),
            }
        };
        self.label == other.label && key(self) == key(other)
    }
}

/// `increase(metric{matchers}[range])`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
    pub range: Duration,
}

impl Selector {
    /// Whether no series can match both: different metrics, or `label="x"` on one side against a
    /// matcher of the same label that refuses `x` on the other (`label="y"`, `label=~"y|z"`,
    /// `label!="x"`).
    fn disjoint(&self, other: &Selector) -> bool {
        let excludes = |a: &Selector, b: &Selector| {
            a.matchers.iter().any(|m| match &m.op {
                MatchOp::Equal(v) => b.matchers.iter().any(|n| n.label == m.label && !n.matches(v)),
                _ => false,
            })
        };
        self.metric != other.metric || excludes(self, other) || excludes(other, self)
    }
}

/// `sum(s1 or s2 or ...)` of increases, added or subtracted. The selectors of one term never
/// match the same series, so the sum of the union is the sum of their sums.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub negative: bool,
    pub selectors: Vec<Selector>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Range(String),
    Punct(&'static str),
}

const PUNCT: [&str; 11] = ["=~", "!~", "!=", "=", "(", ")", "{", "}", ",", "+", "-"];

/// Parses a query of the subset; the error says what was expected where.
pub fn parse(query: &str) -> Result<Vec<Term>, String> {
    let tokens = tokenize(query)?;
    let mut p = Parser { tokens: &tokens, at: 0 };
    let mut terms = vec![p.term(false)?];
    while let Some(Token::Punct(op @ ("+" | "-"))) = p.peek() {
        let negative = *op == "-";
        p.at += 1;
        terms.push(p.term(negative)?);
    }
    match p.peek() {
        None => Ok(terms),
        Some(t) => Err(format!("unexpected {t:?} after a complete expression")),
    }
}

fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if c == '#' {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if c == '[' {
            let end = rest.find(']').ok_or("unclosed `[`")?;
            out.push(Token::Range(rest[1..end].trim().to_string()));
            rest = &rest[end + 1..];
        } else if matches!(c, '"' | '\'' | '`') {
            let (value, len) = string(rest)?;
            out.push(Token::Str(value));
            rest = &rest[len..];
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            out.push(Token::Ident(rest[..len].to_string()));
            rest = &rest[len..];
        } else if let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) {
            out.push(Token::Punct(p));
            rest = &rest[p.len()..];
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

/// Reads one string literal at the start of `text`: its value and its length in bytes.
pub(crate) fn string(text: &str) -> Result<(String, usize), String> {
    let quote = text.chars().next().ok_or("expected a string")?;
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, i + 1)),
            '\n' if quote != '`' => return Err("newline in a quoted string".into()),
            '\\' if quote != '`' => {
                let (_, e) = chars.next().ok_or("unterminated escape")?;
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    e if e == quote => Some(e),
                    _ => None,
                };
                let c = match (simple, e) {
                    (Some(c), _) => c,
                    (None, 'x' | 'u' | 'U') => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next().map(|(_, h)| h)).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == n)
                            .and_then(char::from_u32)
                            .ok_or(format!("bad escape \\{e}{hex}"))?
                    }
                    _ => return Err(format!("unknown escape \\{e}")),
                };
                value.push(c);
            }
            c => value.push(c),
        }
    }
    Err("unterminated string".into())
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, what: &str) -> Result<Token, String> {
        let t = self.tokens.get(self.at).cloned().ok_or_else(|| format!("expected {what}, found the end"))?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Token) -> Result<(), String> {
        match self.next(&format!("{want:?}"))? {
            t if t == want => Ok(()),
            t => Err(format!("expected {want:?}, found {t:?}")),
        }
    }

    fn term(&mut self, negative: bool) -> Result<Term, String> {
        self.expect(Token::Ident("sum".into()))?;
        self.expect(Token::Punct("("))?;
        let mut selectors = vec![self.increase()?];
        while self.peek() == Some(&Token::Ident("or".into())) {
            self.at += 1;
            let next = self.increase()?;
            if let Some(s) = selectors.iter().find(|s| !s.disjoint(&next)) {
                return Err(format!(
                    "`{}{{..}} or {}{{..}}` may match the same series: give both a label `=` two different values",
                    s.metric, next.metric
                ));
            }
            selectors.push(next);
        }
        self.expect(Token::Punct(")"))?;
        Ok(Term { negative, selectors })
    }

    fn increase(&mut self) -> Result<Selector, String> {
        self.expect(Token::Ident("increase".into()))?;
        self.expect(Token::Punct("("))?;
        let metric = match self.next("a metric name")? {
            Token::Ident(name) => name,
            t => return Err(format!("expected a metric name, found {t:?}")),
        };
        let matchers = if self.peek() == Some(&Token::Punct("{")) { self.matchers()? } else { Vec::new() };
        let range = match self.next("a range")? {
            Token::Range(r) => forklane_core::api::duration::parse(&r).map_err(|e| format!("range: {e}"))?,
            t => return Err(format!("expected a range like [5m], found {t:?}")),
        };
        self.expect(Token::Punct(")"))?;
        Ok(Selector { metric, matchers, range })
    }

    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        self.expect(Token::Punct("{"))?;
        let mut out = Vec::new();
        loop {
            let label = match self.next("a label or `}`")? {
                Token::Punct("}") => return Ok(out),
                Token::Ident(label) => label,
                t => return Err(format!("expected a label, found {t:?}")),
            };
            let op = self.next("a match operator")?;
            let value = match self.next("a string")? {
                Token::Str(v) => v,
                t => return Err(format!("expected a string after `{label}`, found {t:?}")),
            };
            let regex = || anchored(&value).map_err(|e| format!("regex for `{label}`: {e}"));
            let op = match op {
                Token::Punct("=") => MatchOp::Equal(value.clone()),
                Token::Punct("!=") => MatchOp::NotEqual(value.clone()),
                Token::Punct("=~") => MatchOp::Regex(regex()?),
                Token::Punct("!~") => MatchOp::NotRegex(regex()?),
                t => return Err(format!("expected =, !=, =~ or !~ after `{label}`, found {t:?}")),
            };
            out.push(Matcher { label, op });
            match self.next("`,` or `}`")? {
                Token::Punct(",") => {}
                Token::Punct("}") => return Ok(out),
                t => return Err(format!("expected `,` or `}}`, found {t:?}")),
            }
        }
    }
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;

/// Distinct patterns kept per thread; past this the cache starts over, so a server answering
/// arbitrary queries cannot grow it without bound.
const COMPILED_PATTERNS: usize = 256;

thread_local! {
    static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Regex>> = Default::default();
}

/// The label regex anchored as PromQL anchors it, compiled once per thread: the same few
/// matchers come back at every look, and compiling dominated the study's run time.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    COMPILED.with(|cache| {
        if let Some(re) = cache.borrow().get(pattern) {
            return Ok(re.clone());
        }
        let re = Regex::new(&format!("^(?:{pattern})$"))?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= COMPILED_PATTERNS {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re.clone());
        Ok(re)
    })
}
