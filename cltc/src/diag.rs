//! Diagnostics: errors and warnings with a stable code, a span and a hint.
//!
//! The front end collects every diagnostic instead of stopping at the first;
//! only the CLI turns them into an exit status. [`Diagnostics::render`] prints
//! them the way rustc does (`file:line:col`, the source line, a caret line and
//! the hint), without colour so the output is stable in snapshots.
//!
//! The renderer is hand-written rather than codespan-reporting or
//! annotate-snippets: its exact text is a tested contract (snapshots), and it
//! is a few dozen lines.

use serde::Serialize;
use std::fmt::{self, Write as _};

/// A byte range in the source file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. Never renumber: tools and docs refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Code {
    /// The grammar does not accept the text.
    E0001Syntax,
    /// A literal (address, MAC, `host:port`, schema text) is malformed.
    E0002BadLiteral,
    /// A name that is not declared.
    E0003Unknown,
    /// A name declared twice.
    E0004Duplicate,
    /// Two nodes with the same IOAM id in a domain.
    E0005DuplicateNodeId,
    /// Two interfaces or ports of one node with the same IOAM id.
    E0006DuplicateIfaceId,
    /// An interface or port in more than one link.
    E0007LinkedTwice,
    /// A number out of range.
    E0008Range,
    /// `sample K/N` with `N = 0`, `K = 0` or `K > N`.
    E0009Sample,
    /// An unknown trace field.
    E0010TraceField,
    /// A trace with no fields.
    E0011EmptyTrace,
    /// No path between a policy's `from` and `to`.
    E0012NoPath,
    /// A node on a policy's path that is not in the policy's domain.
    E0013NotInDomain,
    /// Pre-allocated trace larger than 244 bytes (RFC 9486).
    E0014TraceTooLarge,
    /// Pre-allocated trace does not fit the path's smallest MTU.
    E0015Mtu,
    /// A bmv2/tofino node without `p4runtime`.
    E0016NoP4Runtime,
    /// A linux node with ports, or a switch with interfaces.
    E0017WrongIfaceKind,
    /// A link to an undeclared interface or port.
    E0018UnknownEndpoint,
    /// A required statement is missing.
    E0019Missing,
    /// A statement given twice.
    E0020DuplicateStmt,
    /// An unknown node kind.
    E0021UnknownKind,
    /// A statement that does not belong where it is.
    E0022Misplaced,
    /// A next hop that needs a MAC address and has none.
    E0023NextHopMac,
    /// A link whose ends cannot talk IPv6 (different prefixes, same node).
    E0024BadLink,
    /// An unknown `context` kind.
    E0025Context,
    /// A node id that does not fit the traced field.
    E0027IdWidth,
    /// The same prefix on two links.
    E0028DuplicatePrefix,
    /// A policy whose `from` and `to` are the same node.
    E0030SameEnds,
    /// Two domains with the same IOAM-Namespace-ID.
    E0031DuplicateNamespace,
    /// A Tofino decapsulates a domain whose trace does not fit a TNA
    /// learning digest (bf-p4c: 48 bytes).
    E0032DigestTooLarge,
    /// A Tofino decapsulates a domain whose number does not fit the 3-bit
    /// TNA digest type.
    E0033DigestType,
    /// A node kind cannot fill a traced field (it writes all-ones).
    W0001CannotFill,
    /// A schema without `opaque_state` in the trace, or the reverse.
    W0002Schema,
    /// A policy's `dst` is not an address of its `to` node.
    W0003DstNotAtTo,
    /// `max_hops` smaller than a policy path: the trace overflows.
    W0004Overflow,
    /// A Tofino's egress cannot reach some entries to write the queue
    /// depth or transit delay (they keep all-ones).
    W0005TofinoEgressReach,
}

impl Code {
    /// The short form, `E0001`.
    pub fn as_str(self) -> &'static str {
        let s: &'static str = match self {
            Code::E0001Syntax => "E0001",
            Code::E0002BadLiteral => "E0002",
            Code::E0003Unknown => "E0003",
            Code::E0004Duplicate => "E0004",
            Code::E0005DuplicateNodeId => "E0005",
            Code::E0006DuplicateIfaceId => "E0006",
            Code::E0007LinkedTwice => "E0007",
            Code::E0008Range => "E0008",
            Code::E0009Sample => "E0009",
            Code::E0010TraceField => "E0010",
            Code::E0011EmptyTrace => "E0011",
            Code::E0012NoPath => "E0012",
            Code::E0013NotInDomain => "E0013",
            Code::E0014TraceTooLarge => "E0014",
            Code::E0015Mtu => "E0015",
            Code::E0016NoP4Runtime => "E0016",
            Code::E0017WrongIfaceKind => "E0017",
            Code::E0018UnknownEndpoint => "E0018",
            Code::E0019Missing => "E0019",
            Code::E0020DuplicateStmt => "E0020",
            Code::E0021UnknownKind => "E0021",
            Code::E0022Misplaced => "E0022",
            Code::E0023NextHopMac => "E0023",
            Code::E0024BadLink => "E0024",
            Code::E0025Context => "E0025",
            Code::E0027IdWidth => "E0027",
            Code::E0028DuplicatePrefix => "E0028",
            Code::E0030SameEnds => "E0030",
            Code::E0031DuplicateNamespace => "E0031",
            Code::E0032DigestTooLarge => "E0032",
            Code::E0033DigestType => "E0033",
            Code::W0001CannotFill => "W0001",
            Code::W0002Schema => "W0002",
            Code::W0003DstNotAtTo => "W0003",
            Code::W0004Overflow => "W0004",
            Code::W0005TofinoEgressReach => "W0005",
        };
        s
    }

    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// One error or warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub span: Span,
    /// Lowercase, no trailing full stop.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// A second place worth showing (e.g. the first declaration).
    pub related: Option<(Span, String)>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            span,
            message: message.into(),
            hint: None,
            related: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related = Some((span, label.into()));
        self
    }
}

/// The diagnostics of one compilation, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sorts by position (then code) so output does not depend on check order.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.span, d.code));
        self.0.dedup();
    }

    /// Renders every diagnostic against the source, then a summary line.
    pub fn render(&self, file_name: &str, src: &str) -> String {
        render_all(&self.0, file_name, src)
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(v)
    }
}

/// Renders `diags` against `src` (no colour), followed by a summary line.
pub fn render_all(diags: &[Diagnostic], file_name: &str, src: &str) -> String {
    let index = LineIndex::new(src);
    let mut out = String::new();
    for d in diags {
        render_one(&mut out, d, file_name, src, &index);
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    if !diags.is_empty() {
        let _ = writeln!(
            out,
            "{}: {} error{}, {} warning{}",
            file_name,
            errors,
            plural(errors),
            warnings,
            plural(warnings)
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_one(out: &mut String, d: &Diagnostic, file: &str, src: &str, index: &LineIndex) {
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{sev}[{}]: {}", d.code.as_str(), d.message);
    let (line, col) = index.line_col(src, d.span.start);
    let mut lines = vec![(d.span, line, '^', None)];
    if let Some((span, label)) = &d.related {
        let (rl, _) = index.line_col(src, span.start);
        lines.push((*span, rl, '-', Some(label.as_str())));
    }
    let width = lines
        .iter()
        .map(|l| l.1.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(width);
    let _ = writeln!(out, "{pad}--> {file}:{line}:{col}");
    let _ = writeln!(out, "{pad} |");
    for (span, line_no, mark, label) in lines {
        let text = index.line_text(src, line_no);
        let line_start = index.line_start(line_no);
        let start_col = char_count(src, line_start, span.start.min(line_start + text.len()));
        let end = span.end.min(line_start + text.len()).max(span.start);
        let len = char_count(src, span.start.min(end), end).max(1);
        let _ = writeln!(out, "{line_no:>width$} | {}", text.replace('\t', " "));
        let _ = write!(
            out,
            "{pad} | {}{}",
            " ".repeat(start_col),
            mark.to_string().repeat(len)
        );
        match label {
            Some(l) => {
                let _ = writeln!(out, " {l}");
            }
            None => out.push('\n'),
        }
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {hint}");
    }
    out.push('\n');
}

fn char_count(src: &str, from: usize, to: usize) -> usize {
    src.get(from..to)
        .map_or(to.saturating_sub(from), |s| s.chars().count())
}

/// Line starts of a source, for byte offset to line/column conversion.
#[derive(Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, src: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(src.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, char_count(src, start, offset) + 1)
    }

    fn line_start(&self, line: usize) -> usize {
        self.starts[line - 1]
    }

    fn line_text<'a>(&self, src: &'a str, line: usize) -> &'a str {
        let start = self.starts[line - 1];
        let end = self.starts.get(line).map_or(src.len(), |&e| e - 1);
        let text = src.get(start..end).unwrap_or("");
        text.strip_suffix('\r').unwrap_or(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_col_caret_and_hint() {
        let src = "domain a {\n  namespace 70000\n}\n";
        let start = src.find("70000").unwrap();
        let d = Diagnostic::new(
            Code::E0008Range,
            Span::new(start, start + 5),
            "out of range",
        )
        .hint("use 0..=65535");
        let out = render_all(&[d], "x.clt", src);
        assert_eq!(
            out,
            "error[E0008]: out of range\n --> x.clt:2:13\n  |\n2 |   namespace 70000\n  |             ^^^^^\n  = hint: use 0..=65535\n\nx.clt: 1 error, 0 warnings\n"
        );
    }

    #[test]
    fn span_at_end_of_file_does_not_panic() {
        let src = "node";
        let d = Diagnostic::new(Code::E0001Syntax, Span::new(4, 4), "eof");
        let out = render_all(&[d], "x.clt", src);
        assert!(out.contains("x.clt:1:5"), "{out}");
    }
}
