//! Protobuf text format helpers: quoted byte strings and P4Runtime's
//! canonical bytestrings.

use std::fmt::Write;

/// A protobuf text-format string literal with every byte hex-escaped
/// (`"\x0a\x01"`), so binary values stay readable and unambiguous.
pub fn bytes_literal(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 4 + 2);
    s.push('"');
    for b in bytes {
        let _ = write!(s, "\\x{b:02x}");
    }
    s.push('"');
    s
}

/// A text-format string literal for plain text (names, annotations).
pub fn str_literal(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// P4Runtime's canonical bytestring of an unsigned value (P4Runtime spec,
/// section 8.3): big-endian, without leading zero bytes; zero is one byte.
pub fn canonical(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0);
    match first {
        Some(i) => bytes[i..].to_vec(),
        None => vec![0],
    }
}

/// The canonical bytestring of an integer.
pub fn canonical_u128(value: u128) -> Vec<u8> {
    canonical(&value.to_be_bytes())
}

/// A canonical bytestring of at most 16 bytes, kept on the stack: what
/// [`canonical`] and [`canonical_u128`] return, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canon {
    buf: [u8; 16],
    start: u8,
}

impl Canon {
    pub fn of_u128(value: u128) -> Canon {
        let buf = value.to_be_bytes();
        let start = buf.iter().position(|b| *b != 0).unwrap_or(15);
        Canon {
            buf,
            start: start as u8,
        }
    }

    /// The canonical form of a big-endian value of at most 16 bytes (longer
    /// input keeps only its last 16).
    pub fn of_bytes(bytes: &[u8]) -> Canon {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        let mut v: u128 = 0;
        for &b in tail {
            v = (v << 8) | u128::from(b);
        }
        Canon::of_u128(v)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strips_leading_zeros() {
        assert_eq!(canonical_u128(0), vec![0]);
        assert_eq!(canonical_u128(443), vec![0x01, 0xbb]);
        assert_eq!(canonical(&[0, 0, 0x80, 0]), vec![0x80, 0]);
    }

    #[test]
    fn canon_matches_canonical() {
        for v in [0u128, 1, 0xff, 0x100, 443, u128::MAX, 1 << 127] {
            assert_eq!(Canon::of_u128(v).as_slice(), canonical_u128(v).as_slice());
        }
        let mac = [0, 0, 0x80, 0, 1, 2];
        assert_eq!(Canon::of_bytes(&mac).as_slice(), canonical(&mac).as_slice());
        assert_eq!(Canon::of_bytes(&[0; 6]).as_slice(), &[0]);
    }

    #[test]
    fn field_bytes_is_bytes_literal() {
        let mut w = TextWriter::new();
        w.open("m");
        w.field_bytes("value", &[0x0a, 0xff, 0]);
        w.field("value", bytes_literal(&[0x0a, 0xff, 0]));
        w.close();
        let out = w.finish();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], lines[2]);
        assert_eq!(lines[1], r#"  value: "\x0a\xff\x00""#);
    }

    #[test]
    fn literals_escape() {
        assert_eq!(bytes_literal(&[0x0a, 0xff]), r#""\x0a\xff""#);
        assert_eq!(str_literal(r#"@name("x")"#), r#""@name(\"x\")""#);
    }
}

/// Writes nested text-format messages with two-space indentation.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
    depth: usize,
}

impl TextWriter {
    pub fn new() -> TextWriter {
        TextWriter::default()
    }

    /// A writer whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> TextWriter {
        TextWriter {
            out: String::with_capacity(bytes),
            depth: 0,
        }
    }

    /// `name: "\x.."`: [`bytes_literal`] written in place, no allocation.
    pub fn field_bytes(&mut self, name: &str, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.indent();
        self.out.reserve(name.len() + 5 + bytes.len() * 4);
        self.out.push_str(name);
        self.out.push_str(": \"");
        for &b in bytes {
            self.out.push_str("\\x");
            self.out.push(char::from(HEX[usize::from(b >> 4)]));
            self.out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        self.out.push_str("\"\n");
    }

    /// A `# comment` line from format arguments, written in place.
    pub fn comment_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        self.indent();
        self.out.push_str("# ");
        let _ = self.out.write_fmt(args);
        self.out.push('\n');
    }

    fn indent(&mut self) {
        const SPACES: &str = "                                ";
        let n = self.depth * 2;
        if n <= SPACES.len() {
            self.out.push_str(&SPACES[..n]);
        } else {
            for _ in 0..self.depth {
                self.out.push_str("  ");
            }
        }
    }

    /// `name {`, then everything up to the matching [`TextWriter::close`].
    pub fn open(&mut self, name: &str) {
        self.indent();
        self.out.push_str(name);
        self.out.push_str(" {\n");
        self.depth += 1;
    }

    pub fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("}\n");
    }

    /// `name: value`, the value already rendered.
    pub fn field(&mut self, name: &str, value: impl std::fmt::Display) {
        self.indent();
        let _ = writeln!(self.out, "{name}: {value}");
    }

    /// `name: value  # comment`.
    pub fn field_commented(&mut self, name: &str, value: impl std::fmt::Display, comment: &str) {
        self.indent();
        let _ = writeln!(self.out, "{name}: {value}  # {comment}");
    }

    /// A `# comment` line.
    pub fn comment(&mut self, text: &str) {
        self.indent();
        let _ = writeln!(self.out, "# {text}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A field value of a parsed text-format message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextValue {
    /// A number or enum name, as written.
    Scalar(String),
    /// A string literal, unescaped to bytes.
    Bytes(Vec<u8>),
    Message(TextMessage),
}

/// A parsed protobuf text-format message: its fields in order, without a
/// schema. Enough to read back what this backend writes (tests, tools).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextMessage {
    pub fields: Vec<(String, TextValue)>,
}

impl TextMessage {
    /// Parses text format: `name: value`, `name { ... }`, `# comments`.
    pub fn parse(text: &str) -> Result<TextMessage, String> {
        let tokens = tokenize(text)?;
        let mut at = 0;
        let msg = parse_fields(&tokens, &mut at)?;
        match tokens.get(at) {
            None => Ok(msg),
            Some(t) => Err(format!("unexpected {t:?} at top level")),
        }
    }

    /// Every value of field `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextValue> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every sub-message of field `name`.
    pub fn messages<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextMessage> + 'a {
        self.all(name).filter_map(|v| match v {
            TextValue::Message(m) => Some(m),
            _ => None,
        })
    }

    /// The first sub-message of field `name`.
    pub fn message<'a>(&'a self, name: &'a str) -> Option<&'a TextMessage> {
        self.messages(name).next()
    }

    /// The first scalar of field `name`, as written.
    pub fn scalar<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).find_map(|v| match v {
            TextValue::Scalar(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first scalar of field `name` as an unsigned number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.scalar(name).and_then(|s| s.parse().ok())
    }

    /// The first string of field `name`.
    pub fn bytes<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.all(name).find_map(|v| match v {
            TextValue::Bytes(b) => Some(b.as_slice()),
            _ => None,
        })
    }

    /// The first string of field `name` as UTF-8.
    pub fn string<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.bytes(name).and_then(|b| std::str::from_utf8(b).ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(Vec<u8>),
    Colon,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b':' => {
                tokens.push(Token::Colon);
                i += 1;
            }
            b'{' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b'}' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let (s, next) = string_token(bytes, i + 1)?;
                tokens.push(Token::Str(s));
                i = next;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t' | b'\r' | b'\n' | b':' | b'{' | b'}' | b'"' | b'#'
                    )
                {
                    i += 1;
                }
                tokens.push(Token::Word(text[start..i].to_string()));
            }
        }
    }
    Ok(tokens)
}

/// Reads a string literal body starting after its opening quote.
fn string_token(bytes: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let esc = *bytes.get(i + 1).ok_or("unterminated escape")?;
                i += 2;
                match esc {
                    b'x' => {
                        let hex = bytes.get(i..i + 2).ok_or("short \\x escape")?;
                        let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                        out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut value = u32::from(esc - b'0');
                        for _ in 0..2 {
                            match bytes.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(u8::try_from(value).map_err(|e| e.to_string())?);
                    }
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err("unterminated string".to_string())
}

fn parse_fields(tokens: &[Token], at: &mut usize) -> Result<TextMessage, String> {
    let mut msg = TextMessage::default();
    while let Some(Token::Word(name)) = tokens.get(*at) {
        *at += 1;
        if tokens.get(*at) == Some(&Token::Colon) {
            *at += 1;
        }
        let value = match tokens.get(*at) {
            Some(Token::Open) => {
                *at += 1;
                let inner = parse_fields(tokens, at)?;
                if tokens.get(*at) != Some(&Token::Close) {
                    return Err(format!("missing }} after {name}"));
                }
                *at += 1;
                TextValue::Message(inner)
            }
            Some(Token::Str(s)) => {
                *at += 1;
                TextValue::Bytes(s.clone())
            }
            Some(Token::Word(w)) => {
                *at += 1;
                TextValue::Scalar(w.clone())
            }
            other => return Err(format!("no value for {name}: {other:?}")),
        };
        msg.fields.push((name.clone(), value));
    }
    Ok(msg)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn round_trips_what_the_writer_writes() {
        let mut w = TextWriter::new();
        w.comment("hello");
        w.field("device_id", 1);
        w.open("updates");
        w.field("type", "INSERT");
        w.field("value", bytes_literal(&[0, 0xff, b'"']));
        w.close();
        let msg = TextMessage::parse(&w.finish()).unwrap();
        assert_eq!(msg.number("device_id"), Some(1));
        let u = msg.message("updates").unwrap();
        assert_eq!(u.scalar("type"), Some("INSERT"));
        assert_eq!(u.bytes("value"), Some(&[0, 0xff, b'"'][..]));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(TextMessage::parse("a {").is_err());
        assert!(TextMessage::parse("a: \"x").is_err());
        assert!(TextMessage::parse("}").is_err());
        assert!(TextMessage::parse("a: \"\\x").is_err());
    }
}
