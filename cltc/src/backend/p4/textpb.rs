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

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    /// `name {`, then everything up to the matching [`TextWriter::close`].
    pub fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.out, "{name} {{");
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
