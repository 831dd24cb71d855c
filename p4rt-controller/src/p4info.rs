//! An index over a P4Info: ids to names and widths, used to describe entries
//! and errors by name and to decode digests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use crate::proto::p4::config::v1 as cfg;
use crate::proto::p4::v1 as p4;
use p4::field_match::FieldMatchType;

/// A P4Info with lookups by id and by name (full name or alias).
#[derive(Debug, Clone)]
pub struct P4InfoIndex {
    p4info: cfg::P4Info,
    tables: HashMap<u32, usize>,
    actions: HashMap<u32, usize>,
    digests: HashMap<u32, usize>,
    names: HashMap<String, u32>,
}

fn preamble_id(p: &Option<cfg::Preamble>) -> u32 {
    p.as_ref().map_or(0, |p| p.id)
}

fn preamble_name(p: &Option<cfg::Preamble>) -> &str {
    p.as_ref().map_or("", |p| p.name.as_str())
}

impl P4InfoIndex {
    pub fn new(p4info: cfg::P4Info) -> P4InfoIndex {
        let mut names = HashMap::new();
        let mut index = |preamble: &Option<cfg::Preamble>| {
            if let Some(p) = preamble {
                names.entry(p.name.clone()).or_insert(p.id);
                if !p.alias.is_empty() {
                    names.entry(p.alias.clone()).or_insert(p.id);
                }
            }
        };
        let mut tables = HashMap::new();
        for (i, t) in p4info.tables.iter().enumerate() {
            tables.insert(preamble_id(&t.preamble), i);
            index(&t.preamble);
        }
        let mut actions = HashMap::new();
        for (i, a) in p4info.actions.iter().enumerate() {
            actions.insert(preamble_id(&a.preamble), i);
            index(&a.preamble);
        }
        let mut digests = HashMap::new();
        for (i, d) in p4info.digests.iter().enumerate() {
            digests.insert(preamble_id(&d.preamble), i);
            index(&d.preamble);
        }
        P4InfoIndex {
            p4info,
            tables,
            actions,
            digests,
            names,
        }
    }

    pub fn p4info(&self) -> &cfg::P4Info {
        &self.p4info
    }

    pub fn into_p4info(self) -> cfg::P4Info {
        self.p4info
    }

    pub fn table(&self, id: u32) -> Option<&cfg::Table> {
        self.tables.get(&id).map(|&i| &self.p4info.tables[i])
    }

    pub fn action(&self, id: u32) -> Option<&cfg::Action> {
        self.actions.get(&id).map(|&i| &self.p4info.actions[i])
    }

    pub fn digest(&self, id: u32) -> Option<&cfg::Digest> {
        self.digests.get(&id).map(|&i| &self.p4info.digests[i])
    }

    /// The id of a table, action or digest by full name or alias.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied()
    }

    /// Ids of the tables the controller may write (not `const`).
    pub fn writable_tables(&self) -> impl Iterator<Item = u32> + '_ {
        self.p4info
            .tables
            .iter()
            .filter(|t| !t.is_const_table)
            .map(|t| preamble_id(&t.preamble))
    }

    pub fn table_name(&self, id: u32) -> String {
        match self.table(id) {
            Some(t) => preamble_name(&t.preamble).to_string(),
            None => format!("<table {id:#x}>"),
        }
    }

    pub fn action_name(&self, id: u32) -> String {
        match self.action(id) {
            Some(a) => preamble_name(&a.preamble).to_string(),
            None => format!("<action {id:#x}>"),
        }
    }

    /// A readable, stable description of an entry, e.g.
    /// `ingress.ipv6_lpm[hdr.ipv6.dst_addr=2001:db8::/32] -> set_nexthop(port=1)`.
    pub fn describe(&self, entry: &p4::TableEntry) -> String {
        let table = self.table(entry.table_id);
        let mut s = self.table_name(entry.table_id);
        if entry.is_default_action {
            s.push_str("[default]");
        } else {
            s.push('[');
            for (i, m) in entry.r#match.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let field = table.and_then(|t| t.match_fields.iter().find(|f| f.id == m.field_id));
                let (name, width) = match field {
                    Some(f) => (f.name.clone(), f.bitwidth),
                    None => (format!("<field {}>", m.field_id), 0),
                };
                let _ = write!(s, "{name}={}", describe_match(m, width));
            }
            s.push(']');
        }
        if entry.priority != 0 {
            let _ = write!(s, " priority {}", entry.priority);
        }
        if let Some(p4::table_action::Type::Action(a)) =
            entry.action.as_ref().and_then(|a| a.r#type.as_ref())
        {
            let _ = write!(s, " -> {}(", self.action_name(a.action_id));
            let def = self.action(a.action_id);
            for (i, p) in a.params.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let param = def.and_then(|d| d.params.iter().find(|q| q.id == p.param_id));
                match param {
                    Some(q) => {
                        let _ = write!(s, "{}={}", q.name, format_value(&p.value, q.bitwidth));
                    }
                    None => {
                        let _ = write!(s, "<param {}>={}", p.param_id, format_value(&p.value, 0));
                    }
                }
            }
            s.push(')');
        }
        s
    }
}

fn describe_match(m: &p4::FieldMatch, width: i32) -> String {
    match &m.field_match_type {
        Some(FieldMatchType::Exact(e)) => format_value(&e.value, width),
        Some(FieldMatchType::Lpm(l)) => {
            format!("{}/{}", format_value(&l.value, width), l.prefix_len)
        }
        Some(FieldMatchType::Ternary(t)) => {
            format!(
                "{}&&&{}",
                format_value(&t.value, width),
                format_value(&t.mask, width)
            )
        }
        Some(FieldMatchType::Range(r)) => {
            format!(
                "{}..{}",
                format_value(&r.low, width),
                format_value(&r.high, width)
            )
        }
        Some(FieldMatchType::Optional(o)) => format_value(&o.value, width),
        Some(FieldMatchType::Other(a)) => format!("<{}>", a.type_url),
        None => "<none>".to_string(),
    }
}

/// Formats a P4Runtime bytestring: an IPv6 address for 128-bit values, a MAC
/// for 48-bit ones, decimal for small ones, hex otherwise.
pub fn format_value(bytes: &[u8], width: i32) -> String {
    let stripped = strip_leading_zeros(bytes);
    match width {
        128 if stripped.len() <= 16 => {
            let mut b = [0u8; 16];
            b[16 - stripped.len()..].copy_from_slice(stripped);
            Ipv6Addr::from(b).to_string()
        }
        48 if stripped.len() <= 6 => {
            let mut b = [0u8; 6];
            b[6 - stripped.len()..].copy_from_slice(stripped);
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }
        _ if stripped.len() <= 8 => {
            let v = stripped
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            v.to_string()
        }
        _ => {
            let mut s = String::from("0x");
            for b in stripped {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
    }
}

/// The bytestring without its leading zero bytes (P4Runtime's canonical form
/// keeps none, except that servers may send `\x00` for zero).
pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}
