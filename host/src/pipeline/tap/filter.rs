//! The tap's filter: a small expression over a record as `flowgate test` prints it.
//!
//! ```text
//! expr  := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | test
//! test  := path [op value]          a path alone: the field is present, not null, not ""
//! op    := "==" | "!=" | "~" (contains) | "!~" (does not contain) | "<" | "<=" | ">" | ">="
//! value := "text" | 'text' | word   (a word: letters, digits and - _ . / : * @)
//! path  := word
//! ```
//!
//! A path is looked up in the record (`severity`, `body.Key.action`, `attributes.x`), then in its body
//! (`startTime`), then in the body's `Key` (`action`, `sourceNamespace`), then as one attribute key (dots are part
//! of attribute keys: `flowgate.transforms`). `<`, `>` compare numbers (numeric text counts); `==` compares
//! text (a number or boolean as JSON writes it). Example: `action == Deny and sourceNamespace ~ prod`.

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(String),
    Compare(String, Op, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A filter that does not parse: what was expected, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filter {text:?}: {message} at character {at}")]
pub struct FilterError {
    pub text: String,
    pub message: String,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let err = |at: usize, message: &str| FilterError { text: text.to_string(), message: message.to_string(), at };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let (token, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            ('=', Some('=')) => (Token::Op(Op::Eq), 2),
            ('!', Some('=')) => (Token::Op(Op::Ne), 2),
            ('!', Some('~')) => (Token::Op(Op::NotContains), 2),
            ('~', _) => (Token::Op(Op::Contains), 1),
            ('<', Some('=')) => (Token::Op(Op::Le), 2),
            ('>', Some('=')) => (Token::Op(Op::Ge), 2),
            ('<', _) => (Token::Op(Op::Lt), 1),
            ('>', _) => (Token::Op(Op::Gt), 1),
            ('"' | '\'', _) => {
                let end = chars[i + 1..].iter().position(|(_, q)| *q == c).ok_or_else(|| err(at, "unclosed quote"))?;
                let s: String = chars[i + 1..i + 1 + end].iter().map(|(_, c)| c).collect();
                (Token::Quoted(s), end + 2)
            }
            (c, _) if word_char(c) => {
                let end = chars[i..].iter().position(|(_, c)| !word_char(*c)).unwrap_or(chars.len() - i);
                (Token::Word(chars[i..i + end].iter().map(|(_, c)| c).collect()), end)
            }
            _ => return Err(err(at, &format!("unexpected {c:?}"))),
        };
        out.push((at, token));
        i += len;
    }
    Ok(out)
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || "-_./:*@".contains(c)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> FilterError {
        let at = self.tokens.get(self.pos).map_or(self.text.len(), |(at, _)| *at);
        FilterError { text: self.text.to_string(), message: message.to_string(), at }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == k) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expr(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.expr()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.err("expected )"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Word(path)) => {
                self.pos += 1;
                let Some(Token::Op(op)) = self.peek().cloned() else { return Ok(Filter::Present(path)) };
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Token::Word(v) | Token::Quoted(v)) => {
                        self.pos += 1;
                        Ok(Filter::Compare(path, op, v))
                    }
                    _ => Err(self.err("expected a value")),
                }
            }
            _ => Err(self.err("expected a field name, not, or (")),
        }
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser { text, tokens: tokens(text)?, pos: 0 };
        let f = p.expr()?;
        if p.pos < p.tokens.len() {
            return Err(p.err("expected and, or, or the end"));
        }
        Ok(f)
    }

    /// Whether `record` (as `flowgate test` prints it) passes.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Filter::Or(a, b) => a.matches(record) || b.matches(record),
            Filter::And(a, b) => a.matches(record) && b.matches(record),
            Filter::Not(a) => !a.matches(record),
            Filter::Present(path) => {
                lookup(record, path).is_some_and(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.is_empty()))
            }
            Filter::Compare(path, op, want) => {
                let Some(v) = lookup(record, path) else { return *op == Op::Ne || *op == Op::NotContains };
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let numbers = || Some((text.parse::<f64>().ok()?, want.parse::<f64>().ok()?));
                match op {
                    Op::Eq => text == *want,
                    Op::Ne => text != *want,
                    Op::Contains => text.contains(want.as_str()),
                    Op::NotContains => !text.contains(want.as_str()),
                    Op::Lt => numbers().is_some_and(|(a, b)| a < b),
                    Op::Le => numbers().is_some_and(|(a, b)| a <= b),
                    Op::Gt => numbers().is_some_and(|(a, b)| a > b),
                    Op::Ge => numbers().is_some_and(|(a, b)| a >= b),
                }
            }
        }
    }
}

fn walk<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn lookup<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    walk(record, path)
        .or_else(|| record.get("body").and_then(|b| walk(b, path)))
        .or_else(|| record.get("body").and_then(|b| b.get("Key")).and_then(|k| walk(k, path)))
        .or_else(|| record.get("attributes").and_then(|a| a.get(path)))
        .or_else(|| path.strip_prefix("attributes.").and_then(|k| record.get("attributes")?.get(k)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record() -> Value {
        json!({
            "severity": "INFO",
            "attributes": {"flowgate.transforms": "redact@sha256:abc", "k8s.namespace.name": "prod-a"},
            "body": {"Key": {"action": "Deny", "source_namespace": "prod-a", "dest_port": 443}, "startTime": "1800000000", "bytesIn": "12"}
        })
    }

    #[test]
    fn the_grammar_as_documented() {
        let r = record();
        let yes = [
            "action == Deny",
            "action == \"Deny\" and source_namespace ~ prod",
            "body.Key.dest_port == 443",
            "dest_port >= 443 and dest_port < 444",
            "startTime > 1799999999",
            "flowgate.transforms ~ redact",
            "attributes.k8s.namespace.name == 'prod-a'",
            "not (action == Allow) and severity == INFO",
            "action == Allow or bytesIn > 10",
            "source_namespace",
            "missing != x",
        ];
        for f in yes {
            assert!(Filter::parse(f).unwrap().matches(&r), "{f} should match");
        }
        let no =
            ["action == Allow", "source_namespace !~ prod", "missing", "bytesIn > 12", "dest_port < x", "missing == x"];
        for f in no {
            assert!(!Filter::parse(f).unwrap().matches(&r), "{f} should not match");
        }
    }

    #[test]
    fn a_filter_that_does_not_parse_says_where() {
        let e = Filter::parse("action == ").unwrap_err();
        assert_eq!((e.message.as_str(), e.at), ("expected a value", 10));
        let e = Filter::parse("(action == Deny").unwrap_err();
        assert_eq!(e.message, "expected )");
        let e = Filter::parse("action == Deny Allow").unwrap_err();
        assert_eq!((e.message.as_str(), e.at), ("expected and, or, or the end", 15));
        assert_eq!(Filter::parse("a == 'x").unwrap_err().message, "unclosed quote");
        assert!(Filter::parse("a == $").unwrap_err().message.starts_with("unexpected"));
    }
}
