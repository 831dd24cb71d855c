//! The syntax tree of a `.clt` file: what was written, with spans.
//!
//! Nothing here is checked beyond the grammar: names are unresolved, numbers
//! are not range-checked and addresses are raw text. The checker
//! ([`crate::model`]) turns this into a checked model or diagnostics.

use crate::diag::Span;
use std::fmt;

/// A name as written, with where.
#[derive(Clone, PartialEq, Eq)]
pub struct Ident {
    pub text: String,
    pub span: Span,
}

/// A number as written: `value` is `None` when it does not fit 64 bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Num {
    pub value: Option<u64>,
    pub span: Span,
}

/// Raw text to be validated by the checker (an address, a MAC, `host:port`).
pub type Text = Ident;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub items: Vec<Item>,
    /// Names of items lost to syntax errors (`node`/`domain`/`policy`, name),
    /// so the checker does not report them as unknown.
    pub lost: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Domain(Domain),
    Node(Node),
    Link(Link),
    Policy(Policy),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub name: Ident,
    pub span: Span,
    pub stmts: Vec<DomainStmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DomainStmt {
    Namespace {
        id: Num,
        data: Option<Num>,
        wide: Option<Num>,
        span: Span,
    },
    Trace {
        fields: Vec<Ident>,
        span: Span,
    },
    Context {
        kind: Ident,
        span: Span,
    },
    MaxHops {
        value: Num,
        span: Span,
    },
    Collector {
        address: Text,
        span: Span,
    },
    /// `schema ID "DATA"`: the opaque state snapshot; `data` excludes quotes.
    Schema {
        id: Num,
        data: Text,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: Ident,
    pub kind: Ident,
    pub span: Span,
    pub stmts: Vec<NodeStmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeStmt {
    Id {
        wide: bool,
        value: Num,
        span: Span,
    },
    Interface(Iface),
    Port(Iface),
    P4Runtime {
        address: Text,
        device: Num,
        span: Span,
    },
    /// `domain D, E`: restricts the node to these domains.
    Domains {
        names: Vec<Ident>,
        span: Span,
    },
}

/// `interface IF { ... }` or `port P { ... }` (then `name` is the number).
#[derive(Debug, Clone, PartialEq)]
pub struct Iface {
    pub name: Ident,
    pub span: Span,
    pub stmts: Vec<IfaceStmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IfaceStmt {
    Id { wide: bool, value: Num, span: Span },
    Address { text: Text, span: Span },
    Mac { text: Text, span: Span },
    Mtu { value: Num, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
    pub span: Span,
}

/// `node.interface` in a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub node: Ident,
    pub iface: Ident,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: Ident,
    pub span: Span,
    pub stmts: Vec<PolicyStmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyStmt {
    Domain {
        name: Ident,
        span: Span,
    },
    FromTo {
        from: Ident,
        to: Ident,
        span: Span,
    },
    Match {
        clauses: Vec<MatchClause>,
        span: Span,
    },
    Sample {
        k: Num,
        n: Num,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatchClause {
    Dst(Text),
    Src(Text),
    Proto(Ident),
    Dport(Num),
    Sport(Num),
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} @{:?}", self.text, self.span)
    }
}

impl fmt::Debug for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{v} @{:?}", self.span),
            None => write!(f, "<too large> @{:?}", self.span),
        }
    }
}
