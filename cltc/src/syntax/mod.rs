//! The parser: `.clt` text to an [`ast::File`] and syntax diagnostics.
//!
//! The source is split into top-level chunks at lines that start an item
//! (`domain NAME {`, `node`, `link`, `policy`), and each chunk is parsed with
//! the pest grammar in `clt.pest`. A syntax error loses only its chunk: the
//! items before and after it are still parsed and checked.

use crate::ast::*;
use crate::diag::{Code, Diagnostic, Diagnostics, Span};
use pest::Parser as _;
use pest::iterators::Pair;

#[derive(pest_derive::Parser)]
#[grammar = "syntax/clt.pest"]
struct CltParser;

/// Parses a whole file. Never fails: what cannot be parsed is reported.
pub fn parse(src: &str, diags: &mut Diagnostics) -> File {
    let mut file = File::default();
    for (start, end) in split(src) {
        let chunk = &src[start..end];
        match CltParser::parse(Rule::chunk, chunk) {
            Ok(mut pairs) => {
                let Some(chunk_pair) = pairs.next() else {
                    continue;
                };
                let b = Builder { offset: start };
                for pair in chunk_pair.into_inner() {
                    if let Some(item) = b.item(pair) {
                        file.items.push(item);
                    }
                }
            }
            Err(e) => {
                diags.push(syntax_error(&e, start, chunk));
                let mut words = chunk
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or(""))
                    .flat_map(str::split_whitespace);
                if let (Some(kw), Some(name)) = (words.next(), words.next()) {
                    file.lost.push((kw.to_string(), name.to_string()));
                }
            }
        }
    }
    file
}

/// Byte ranges of the top-level chunks. Every byte belongs to one chunk.
fn split(src: &str) -> Vec<(usize, usize)> {
    let mut cuts = vec![0];
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        if offset > 0 && starts_item(line) {
            cuts.push(offset);
        }
        offset += line.len();
    }
    cuts.push(src.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Whether a line starts a top-level item. `domain NAME` without a brace is
/// the policy statement (or the node statement `domain A, B`), not an item.
fn starts_item(line: &str) -> bool {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("node" | "link" | "policy") => true,
        Some("domain") => {
            let rest: String = words.collect::<Vec<_>>().join(" ");
            rest.contains('{')
        }
        _ => false,
    }
}

fn syntax_error(e: &pest::error::Error<Rule>, offset: usize, chunk: &str) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    // Point at the whole offending token, not just its first byte.
    let rest = &chunk[pos.min(chunk.len())..];
    let tok_len = rest
        .find(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == ',')
        .unwrap_or(rest.len());
    let tok_len = if tok_len == 0 {
        rest.chars().next().map_or(0, char::len_utf8)
    } else {
        tok_len
    };
    let span = Span::new(offset + pos, offset + pos + tok_len);
    let found = if rest.is_empty() {
        "the end of the item (is a `}` missing?)".to_string()
    } else {
        format!("`{}`", &rest[..tok_len])
    };
    let (message, hint) = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(|r| rule_name(*r)).collect();
            names.sort_unstable();
            names.dedup();
            let expected = match names.len() {
                0 => "a valid item".to_string(),
                1 => names[0].to_string(),
                _ => {
                    let (last, init) = names.split_last().map_or(("", &[][..]), |(l, i)| (*l, i));
                    format!("{} or {}", init.join(", "), last)
                }
            };
            (
                format!("syntax error: expected {expected}, found {found}"),
                hint_for(positives),
            )
        }
        ErrorVariant::CustomError { message } => (format!("syntax error: {message}"), None),
    };
    let d = Diagnostic::new(Code::E0001Syntax, span, message);
    match hint {
        Some(h) => d.hint(h),
        None => d.hint("this item is skipped; checking continues with the next `domain`, `node`, `link` or `policy`"),
    }
}

fn hint_for(positives: &[Rule]) -> Option<String> {
    let has = |r: Rule| positives.contains(&r);
    if has(Rule::kw_domain) && has(Rule::kw_node) {
        Some("a file is a list of `domain`, `node`, `link` and `policy` items".into())
    } else if has(Rule::kw_namespace) {
        Some(
            "a domain holds `namespace`, `trace`, `context`, `max_hops`, `collector` and `schema`"
                .into(),
        )
    } else if has(Rule::kw_interface) {
        Some("a node holds `id`, `interface`, `port`, `p4runtime` and `domain`".into())
    } else if has(Rule::kw_address) {
        Some("an interface or port holds `id`, `address`, `mac` and `mtu`".into())
    } else if has(Rule::kw_from) {
        Some("a policy holds `domain`, `from A to B`, `match ...` and `sample K/N`".into())
    } else if has(Rule::kw_dst) {
        Some("match on `dst PFX`, `src PFX`, `proto tcp|udp|icmpv6`, `dport N`, `sport N`".into())
    } else if has(Rule::endpoint) {
        Some("a link joins two interfaces: `link NODE.IF -- NODE.IF`".into())
    } else {
        None
    }
}

fn rule_name(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::ident | Rule::trace_field => "a name",
        Rule::ifname => "an interface name",
        Rule::number => "a number",
        Rule::prefix => "an IPv6 prefix",
        Rule::mac => "a MAC address",
        Rule::hostport => "`host:port`",
        Rule::string => "a quoted string",
        Rule::endpoint => "`node.interface`",
        Rule::EOI => "end of file",
        Rule::kw_domain | Rule::policy_domain | Rule::node_domain_stmt => "`domain`",
        Rule::kw_node => "`node`",
        Rule::kw_link => "`link`",
        Rule::kw_policy => "`policy`",
        Rule::kw_namespace => "`namespace`",
        Rule::kw_data => "`data`",
        Rule::kw_wide | Rule::wide => "`wide`",
        Rule::kw_trace => "`trace`",
        Rule::kw_context => "`context`",
        Rule::kw_max_hops => "`max_hops`",
        Rule::kw_collector => "`collector`",
        Rule::kw_schema => "`schema`",
        Rule::kw_id => "`id`",
        Rule::kw_interface => "`interface`",
        Rule::kw_port => "`port`",
        Rule::kw_p4runtime => "`p4runtime`",
        Rule::kw_device => "`device`",
        Rule::kw_address => "`address`",
        Rule::kw_mac => "`mac`",
        Rule::kw_mtu => "`mtu`",
        Rule::kw_from => "`from`",
        Rule::kw_to => "`to`",
        Rule::kw_match => "`match`",
        Rule::kw_sample => "`sample`",
        Rule::kw_dst => "`dst`",
        Rule::kw_src => "`src`",
        Rule::kw_proto => "`proto`",
        Rule::kw_dport => "`dport`",
        Rule::kw_sport => "`sport`",
        _ => return None,
    })
}

fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::kw_domain
            | Rule::kw_node
            | Rule::kw_link
            | Rule::kw_policy
            | Rule::kw_namespace
            | Rule::kw_data
            | Rule::kw_wide
            | Rule::kw_trace
            | Rule::kw_context
            | Rule::kw_max_hops
            | Rule::kw_collector
            | Rule::kw_schema
            | Rule::kw_id
            | Rule::kw_interface
            | Rule::kw_port
            | Rule::kw_p4runtime
            | Rule::kw_device
            | Rule::kw_address
            | Rule::kw_mac
            | Rule::kw_mtu
            | Rule::kw_from
            | Rule::kw_to
            | Rule::kw_match
            | Rule::kw_sample
            | Rule::kw_dst
            | Rule::kw_src
            | Rule::kw_proto
            | Rule::kw_dport
            | Rule::kw_sport
    )
}

/// Builds AST nodes from pest pairs of one chunk (spans shifted by `offset`).
struct Builder {
    offset: usize,
}

type P<'i> = Pair<'i, Rule>;

impl Builder {
    fn span(&self, p: &P<'_>) -> Span {
        let s = p.as_span();
        Span::new(self.offset + s.start(), self.offset + s.end())
    }

    fn ident(&self, p: P<'_>) -> Ident {
        Ident {
            text: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn num(&self, p: P<'_>) -> Num {
        let s = p.as_str();
        let value = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        };
        Num {
            value,
            span: self.span(&p),
        }
    }

    /// The meaningful children of a pair (keywords dropped).
    fn args<'i>(&self, p: P<'i>) -> Vec<P<'i>> {
        p.into_inner()
            .filter(|c| !is_keyword(c.as_rule()))
            .collect()
    }

    fn item(&self, p: P<'_>) -> Option<Item> {
        let span = self.span(&p);
        Some(match p.as_rule() {
            Rule::domain => {
                let mut it = self.args(p).into_iter();
                let name = self.ident(it.next()?);
                let stmts = it.filter_map(|s| self.domain_stmt(s)).collect();
                Item::Domain(Domain { name, span, stmts })
            }
            Rule::node => {
                let mut it = self.args(p).into_iter();
                let name = self.ident(it.next()?);
                let kind = self.ident(it.next()?);
                let stmts = it.filter_map(|s| self.node_stmt(s)).collect();
                Item::Node(Node {
                    name,
                    kind,
                    span,
                    stmts,
                })
            }
            Rule::link => {
                let mut it = self.args(p).into_iter();
                let a = self.endpoint(it.next()?)?;
                let b = self.endpoint(it.next()?)?;
                Item::Link(Link { a, b, span })
            }
            Rule::policy => {
                let mut it = self.args(p).into_iter();
                let name = self.ident(it.next()?);
                let stmts = it.filter_map(|s| self.policy_stmt(s)).collect();
                Item::Policy(Policy { name, span, stmts })
            }
            _ => return None,
        })
    }

    fn domain_stmt(&self, p: P<'_>) -> Option<DomainStmt> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = self.args(p).into_iter();
        Some(match rule {
            Rule::namespace_stmt => {
                let id = self.num(it.next()?);
                let (mut data, mut wide) = (None, None);
                for extra in it {
                    let rule = extra.as_rule();
                    let n = self.num(self.args(extra).into_iter().next()?);
                    match rule {
                        Rule::ns_data => data = Some(n),
                        _ => wide = Some(n),
                    }
                }
                DomainStmt::Namespace {
                    id,
                    data,
                    wide,
                    span,
                }
            }
            Rule::trace_stmt => DomainStmt::Trace {
                fields: it.map(|f| self.ident(f)).collect(),
                span,
            },
            Rule::context_stmt => DomainStmt::Context {
                kind: self.ident(it.next()?),
                span,
            },
            Rule::max_hops_stmt => DomainStmt::MaxHops {
                value: self.num(it.next()?),
                span,
            },
            Rule::collector_stmt => DomainStmt::Collector {
                address: self.ident(it.next()?),
                span,
            },
            Rule::schema_stmt => {
                let id = self.num(it.next()?);
                let s = it.next()?;
                let sp = self.span(&s);
                let raw = s.as_str();
                let data = Ident {
                    text: raw[1..raw.len() - 1].to_string(),
                    span: Span::new(sp.start + 1, sp.end - 1),
                };
                DomainStmt::Schema { id, data, span }
            }
            _ => return None,
        })
    }

    fn node_stmt(&self, p: P<'_>) -> Option<NodeStmt> {
        let span = self.span(&p);
        Some(match p.as_rule() {
            Rule::id_stmt => {
                let (wide, value) = self.id_stmt(p)?;
                NodeStmt::Id { wide, value, span }
            }
            Rule::interface => NodeStmt::Interface(self.iface(p)?),
            Rule::port => NodeStmt::Port(self.iface(p)?),
            Rule::p4runtime_stmt => {
                let mut it = self.args(p).into_iter();
                NodeStmt::P4Runtime {
                    address: self.ident(it.next()?),
                    device: self.num(it.next()?),
                    span,
                }
            }
            Rule::node_domain_stmt => NodeStmt::Domains {
                names: self.args(p).into_iter().map(|n| self.ident(n)).collect(),
                span,
            },
            _ => return None,
        })
    }

    fn id_stmt(&self, p: P<'_>) -> Option<(bool, Num)> {
        let mut wide = false;
        let mut value = None;
        for c in self.args(p) {
            match c.as_rule() {
                Rule::wide => wide = true,
                _ => value = Some(self.num(c)),
            }
        }
        Some((wide, value?))
    }

    fn iface(&self, p: P<'_>) -> Option<Iface> {
        let span = self.span(&p);
        let mut it = self.args(p).into_iter();
        let name = self.ident(it.next()?);
        let mut stmts = Vec::new();
        for s in it {
            let span = self.span(&s);
            let stmt = match s.as_rule() {
                Rule::id_stmt => {
                    let (wide, value) = self.id_stmt(s)?;
                    IfaceStmt::Id { wide, value, span }
                }
                Rule::address_stmt => IfaceStmt::Address {
                    text: self.ident(self.args(s).into_iter().next()?),
                    span,
                },
                Rule::mac_stmt => IfaceStmt::Mac {
                    text: self.ident(self.args(s).into_iter().next()?),
                    span,
                },
                Rule::mtu_stmt => IfaceStmt::Mtu {
                    value: self.num(self.args(s).into_iter().next()?),
                    span,
                },
                _ => continue,
            };
            stmts.push(stmt);
        }
        Some(Iface { name, span, stmts })
    }

    fn endpoint(&self, p: P<'_>) -> Option<Endpoint> {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let node = self.ident(it.next()?);
        let iface = self.ident(it.next()?);
        Some(Endpoint { node, iface, span })
    }

    fn policy_stmt(&self, p: P<'_>) -> Option<PolicyStmt> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = self.args(p).into_iter();
        Some(match rule {
            Rule::policy_domain => PolicyStmt::Domain {
                name: self.ident(it.next()?),
                span,
            },
            Rule::from_to => PolicyStmt::FromTo {
                from: self.ident(it.next()?),
                to: self.ident(it.next()?),
                span,
            },
            Rule::match_stmt => {
                let mut clauses = Vec::new();
                for c in it {
                    let rule = c.as_rule();
                    let arg = self.args(c).into_iter().next()?;
                    clauses.push(match rule {
                        Rule::match_dst => MatchClause::Dst(self.ident(arg)),
                        Rule::match_src => MatchClause::Src(self.ident(arg)),
                        Rule::match_proto => MatchClause::Proto(self.ident(arg)),
                        Rule::match_dport => MatchClause::Dport(self.num(arg)),
                        Rule::match_sport => MatchClause::Sport(self.num(arg)),
                        _ => continue,
                    });
                }
                PolicyStmt::Match { clauses, span }
            }
            Rule::sample_stmt => PolicyStmt::Sample {
                k: self.num(it.next()?),
                n: self.num(it.next()?),
                span,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_policy_domain_inside_the_policy() {
        let src = "policy p {\n  domain d\n}\ndomain d {\n}\nlink a.b -- c.d\n";
        let chunks = split(src);
        assert_eq!(chunks.len(), 3);
        assert!(src[chunks[0].0..chunks[0].1].contains("domain d\n}"));
    }

    #[test]
    fn a_syntax_error_loses_only_its_item() {
        let src = "node a linux {\n  id 1 2\n}\nnode b linux {\n  id 2\n}\n";
        let mut d = Diagnostics::default();
        let f = parse(src, &mut d);
        assert_eq!(d.len(), 1);
        assert_eq!(f.items.len(), 1);
    }
}
