//! Python literals of the `args = (...)` line of a `[handler_*]` section: strings, integers,
//! tuples and dotted names (`sys.stdout`, `handlers.SysLogHandler.LOG_LOCAL0`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyValue {
    Str(String),
    Int(i64),
    /// A dotted name, or `None`/`True`/`False`.
    Name(String),
    Tuple(Vec<PyValue>),
}

/// Parses `args`; a single non-tuple value is returned as a one-item tuple, like `(x)`.
pub fn parse_args(text: &str) -> Result<Vec<PyValue>, String> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.chars.len() {
        return Err(format!("unexpected text after the arguments in {text:?}"));
    }
    Ok(match value {
        PyValue::Tuple(items) => items,
        other => vec![other],
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<PyValue, String> {
        self.skip_ws();
        match self.chars.get(self.pos).copied() {
            Some('(') | Some('[') => {
                let close = if self.chars[self.pos] == '(' {
                    ')'
                } else {
                    ']'
                };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.chars.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value()?);
                    self.skip_ws();
                    match self.chars.get(self.pos) {
                        Some(',') => self.pos += 1,
                        Some(c) if *c == close => {}
                        _ => return Err("expected ',' or a closing bracket".into()),
                    }
                }
                Ok(PyValue::Tuple(items))
            }
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.chars.get(self.pos).copied() {
                        None => return Err("unterminated string".into()),
                        Some('\\') => {
                            let c = self.chars.get(self.pos + 1).copied().ok_or("bad escape")?;
                            s.push(match c {
                                'n' => '\n',
                                't' => '\t',
                                c => c,
                            });
                            self.pos += 2;
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(PyValue::Str(s))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                self.pos += 1;
                while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                text.parse()
                    .map(PyValue::Int)
                    .map_err(|_| format!("bad integer {text:?}"))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    self.pos += 1;
                }
                Ok(PyValue::Name(self.chars[start..self.pos].iter().collect()))
            }
            other => Err(format!("unexpected {other:?} in handler arguments")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PyValue::*;

    #[test]
    fn handler_arguments() {
        assert_eq!(
            parse_args("(sys.stdout,)").unwrap(),
            [Name("sys.stdout".into())]
        );
        assert_eq!(
            parse_args("(('localhost', 514), handlers.SysLogHandler.LOG_LOCAL0)").unwrap(),
            [
                Tuple(vec![Str("localhost".into()), Int(514)]),
                Name("handlers.SysLogHandler.LOG_LOCAL0".into())
            ]
        );
        assert_eq!(
            parse_args("('http://public:secret@example.com/1',)").unwrap(),
            [Str("http://public:secret@example.com/1".into())]
        );
        assert_eq!(parse_args("()").unwrap(), []);
        assert_eq!(
            parse_args("\"/dev/log\"").unwrap(),
            [Str("/dev/log".into())]
        );
        assert!(parse_args("('a',").is_err());
        assert!(parse_args("('a') x").is_err());
    }
}
