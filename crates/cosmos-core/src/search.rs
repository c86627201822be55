//! The prompt search language, parsed once and rendered for each store's full-text engine.
//!
//! Plain input is literal: every word is searched as written, so `robot-arm`, `it's` or a
//! stray `AND` at the end never turn into syntax errors. The syntax applies only where the user
//! writes it: `"quoted phrases"`, `AND`/`OR`/`NOT` between two terms, a trailing `*` for a
//! prefix, `name:`/`text:`/`negative:` before a term, and parentheses. A real mistake (an
//! unclosed quote or parenthesis, `NOT` with nothing before it) is one message naming the token.

use std::fmt::Write as _;

/// The fields a term may be limited to, as users write them.
pub const FIELDS: [&str; 3] = ["name", "text", "negative"];

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Words that must appear in this order (one word is a phrase of one).
    Phrase {
        words: String,
        prefix: bool,
    },
    /// A term limited to one field.
    Field(&'static str, Box<Query>),
    And(Vec<Query>),
    Or(Vec<Query>),
    /// Matches of the left that do not match the right.
    Not(Box<Query>, Box<Query>),
}

/// Why a query could not be understood, naming the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query has no words to search for (only punctuation)")]
    NoWords,
    #[error("the quote opened at `{0}` is never closed")]
    UnclosedQuote(String),
    #[error("`(` is never closed")]
    UnclosedParen,
    #[error("`)` closes nothing")]
    StrayParen,
    #[error("`()` holds nothing to search for")]
    EmptyGroup,
    #[error("`NOT` excludes from what comes before it: write `robot NOT kitchen`")]
    LeadingNot,
    #[error("`{0}:` needs a term after it, e.g. `{0}:robot`")]
    EmptyField(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Field(&'static str),
    Term { words: String, prefix: bool },
}

impl Token {
    /// Whether a term can end just before this token's right neighbour.
    fn ends_operand(&self) -> bool {
        matches!(self, Token::Close | Token::Term { .. })
    }
    fn starts_operand(&self) -> bool {
        matches!(self, Token::Open | Token::Field(_) | Token::Term { .. })
    }
}

/// Whether `s` holds anything a full-text tokenizer would index.
fn has_words(s: &str) -> bool {
    s.chars().any(char::is_alphanumeric)
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        match c {
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let body_start = start + 1;
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some(_) => {}
                        None => {
                            let shown: String = input[start..].chars().take(20).collect();
                            return Err(QueryError::UnclosedQuote(shown));
                        }
                    }
                };
                let prefix = chars.peek().is_some_and(|&(_, c)| c == '*');
                if prefix {
                    chars.next();
                }
                let words = &input[body_start..end];
                if has_words(words) {
                    tokens.push(Token::Term {
                        words: words.to_owned(),
                        prefix,
                    });
                }
            }
            _ => {
                let mut end = input.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '"') {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                push_word(&input[start..end], &mut tokens);
            }
        }
    }
    Ok(tokens)
}

/// A bare word: an operator, a field prefix (with or without its term), or literal text.
fn push_word(word: &str, tokens: &mut Vec<Token>) {
    match word {
        "AND" => return tokens.push(Token::And),
        "OR" => return tokens.push(Token::Or),
        "NOT" => return tokens.push(Token::Not),
        _ => {}
    }
    let mut rest = word;
    if let Some((field, after)) = word.split_once(':')
        && let Some(known) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(field))
    {
        tokens.push(Token::Field(known));
        rest = after;
        if rest.is_empty() {
            return;
        }
    }
    let (words, prefix) = match rest.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (rest, false),
    };
    if has_words(words) {
        tokens.push(Token::Term {
            words: words.to_owned(),
            prefix,
        });
    }
}

/// Operators without a term on both sides are words like any other (`robot AND` searches for
/// both words); only `NOT` at the very start is refused, since its meaning there is clear and
/// cannot be expressed.
fn demote_stray_operators(tokens: Vec<Token>) -> Result<Vec<Token>, QueryError> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for i in 0..tokens.len() {
        let t = &tokens[i];
        let word = match t {
            Token::And => "AND",
            Token::Or => "OR",
            Token::Not => "NOT",
            _ => {
                out.push(t.clone());
                continue;
            }
        };
        let left = out.last().is_some_and(Token::ends_operand);
        let right = tokens
            .get(i + 1)
            .is_some_and(|n| n.starts_operand() || (*n == Token::Not && *t != Token::Not));
        if left && right {
            out.push(t.clone());
        } else if *t == Token::Not && right && out.is_empty() {
            return Err(QueryError::LeadingNot);
        } else {
            out.push(Token::Term {
                words: word.to_owned(),
                prefix: false,
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn eat(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.and()?];
        while self.eat(&Token::Or) {
            parts.push(self.and()?);
        }
        Ok(collapse(parts, Query::Or))
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.not()?];
        loop {
            if self.eat(&Token::And) || self.peek().is_some_and(Token::starts_operand) {
                parts.push(self.not()?);
            } else {
                break;
            }
        }
        Ok(collapse(parts, Query::And))
    }

    fn not(&mut self) -> Result<Query, QueryError> {
        let mut left = self.primary()?;
        while self.eat(&Token::Not) {
            let right = self.primary()?;
            left = Query::Not(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Query, QueryError> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            // Operators only survive with a term on their right, so this is an empty group.
            return Err(QueryError::EmptyGroup);
        };
        self.at += 1;
        match token {
            Token::Term { words, prefix } => Ok(Query::Phrase { words, prefix }),
            Token::Field(f) => {
                if !self.peek().is_some_and(Token::starts_operand) {
                    return Err(QueryError::EmptyField(f));
                }
                Ok(Query::Field(f, Box::new(self.primary()?)))
            }
            Token::Open => {
                match self.peek() {
                    Some(Token::Close) => return Err(QueryError::EmptyGroup),
                    None => return Err(QueryError::UnclosedParen),
                    Some(_) => {}
                }
                let inner = self.or()?;
                if !self.eat(&Token::Close) {
                    return Err(QueryError::UnclosedParen);
                }
                Ok(inner)
            }
            Token::Close => Err(QueryError::StrayParen),
            Token::And | Token::Or | Token::Not => Err(QueryError::EmptyGroup),
        }
    }
}

fn collapse(mut parts: Vec<Query>, make: fn(Vec<Query>) -> Query) -> Query {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        make(parts)
    }
}

impl Query {
    /// Parses what a user typed.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        // Control characters (a NUL from a URL, a stray escape) separate words like spaces:
        // no prompt text holds them, and the FTS5 engine refuses them.
        let input: String = input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let input = input.as_str();
        if input.trim().is_empty() {
            return Err(QueryError::Empty);
        }
        let tokens = demote_stray_operators(lex(input)?)?;
        if !tokens.iter().any(|t| matches!(t, Token::Term { .. })) {
            if let Some(Token::Field(f)) = tokens.iter().find(|t| matches!(t, Token::Field(_))) {
                return Err(QueryError::EmptyField(f));
            }
            return Err(QueryError::NoWords);
        }
        let mut p = Parser { tokens, at: 0 };
        let q = p.or()?;
        match p.peek() {
            None => Ok(q),
            Some(Token::Close) => Err(QueryError::StrayParen),
            Some(_) => Err(QueryError::UnclosedParen),
        }
    }

    /// The query as an SQLite FTS5 MATCH expression: every term is quoted, so nothing the user
    /// typed is read as FTS5 syntax.
    pub fn to_fts5(&self) -> String {
        let mut out = String::new();
        self.write_fts5(&mut out);
        out
    }

    fn write_fts5(&self, out: &mut String) {
        match self {
            Query::Phrase { words, prefix } => {
                let _ = write!(out, "\"{}\"", words.replace('"', "\"\""));
                if *prefix {
                    out.push('*');
                }
            }
            Query::Field(f, inner) => {
                let _ = write!(out, "{f} : (");
                inner.write_fts5(out);
                out.push(')');
            }
            Query::And(parts) | Query::Or(parts) => {
                let op = if matches!(self, Query::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                out.push('(');
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(op);
                    }
                    p.write_fts5(out);
                }
                out.push(')');
            }
            Query::Not(l, r) => {
                out.push('(');
                l.write_fts5(out);
                out.push_str(" NOT ");
                r.write_fts5(out);
                out.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_input_is_literal_words() {
        for (input, fts) in [
            ("robot-arm", r#""robot-arm""#),
            ("it's", r#""it's""#),
            ("robot AND", r#"("robot" AND "AND")"#),
            ("OR robot", r#"("OR" AND "robot")"#),
            ("foo:bar", r#""foo:bar""#),
            ("robot arm", r#"("robot" AND "arm")"#),
            ("a - b", r#"("a" AND "b")"#),
            ("NOT", r#""NOT""#),
            ("say \"\"hi", r#"("say" AND "hi")"#),
        ] {
            assert_eq!(
                Query::parse(input).map(|q| q.to_fts5()),
                Ok(fts.into()),
                "{input}"
            );
        }
    }

    #[test]
    fn syntax_applies_where_written() {
        for (input, fts) in [
            (r#""robot arm""#, r#""robot arm""#),
            ("snow*", r#""snow"*"#),
            ("robot NOT kitchen", r#"("robot" NOT "kitchen")"#),
            ("a OR b c", r#"("a" OR ("b" AND "c"))"#),
            (
                "(kitchen OR warehouse) robot",
                r#"(("kitchen" OR "warehouse") AND "robot")"#,
            ),
            ("name:fog", r#"name : ("fog")"#),
            ("Name: fog*", r#"name : ("fog"*)"#),
            ("text:(a OR b)", r#"text : (("a" OR "b"))"#),
            ("a NOT NOT", r#"("a" AND "NOT" AND "NOT")"#),
        ] {
            assert_eq!(
                Query::parse(input).map(|q| q.to_fts5()),
                Ok(fts.into()),
                "{input}"
            );
        }
    }

    #[test]
    fn real_mistakes_name_the_token() {
        for (input, err) in [
            ("   ", QueryError::Empty),
            ("- &", QueryError::NoWords),
            (
                "\"robot arm",
                QueryError::UnclosedQuote("\"robot arm".into()),
            ),
            ("(a OR b", QueryError::UnclosedParen),
            ("robot AND (", QueryError::UnclosedParen),
            ("a)", QueryError::StrayParen),
            ("a ()", QueryError::EmptyGroup),
            ("NOT kitchen", QueryError::LeadingNot),
            ("name:", QueryError::EmptyField("name")),
            ("robot name:", QueryError::EmptyField("name")),
        ] {
            assert_eq!(Query::parse(input), Err(err), "{input}");
        }
    }

    #[test]
    fn control_characters_separate_words() -> Result<(), QueryError> {
        assert_eq!(
            Query::parse("fog\u{0}harbour\u{1b}")?,
            Query::parse("fog harbour")?
        );
        assert_eq!(
            Query::parse("\"fog\u{0}dawn\"")?,
            Query::parse("\"fog dawn\"")?
        );
        assert!(matches!(Query::parse("\u{0}\u{7}"), Err(QueryError::Empty)));
        Ok(())
    }
}
