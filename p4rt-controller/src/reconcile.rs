//! Reconciliation: the difference between the entries a device has and the
//! entries it should have, as the fewest updates.
//!
//! Entries are identified by their key: table, match fields (by field id,
//! values compared in canonical form) and priority, as P4Runtime does. Two
//! entries with the same key differ when their action differs. The switch's
//! own entries (`const`) and default entries are never deleted.

use std::collections::{HashMap, HashSet};

use crate::p4info::strip_leading_zeros;
use crate::proto::p4::v1 as p4;
use p4::field_match::FieldMatchType;

/// The identity of a table entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    pub table_id: u32,
    pub is_default: bool,
    pub priority: i32,
    matches: Vec<(u32, MatchKey)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum MatchKey {
    Exact(Vec<u8>),
    Ternary(Vec<u8>, Vec<u8>),
    Lpm(Vec<u8>, i32),
    Range(Vec<u8>, Vec<u8>),
    Optional(Vec<u8>),
    Other(String, Vec<u8>),
    Unset,
}

fn canon(b: &[u8]) -> Vec<u8> {
    strip_leading_zeros(b).to_vec()
}

impl EntryKey {
    pub fn of(entry: &p4::TableEntry) -> EntryKey {
        let mut matches: Vec<_> = entry
            .r#match
            .iter()
            .map(|m| {
                let key = match &m.field_match_type {
                    Some(FieldMatchType::Exact(e)) => MatchKey::Exact(canon(&e.value)),
                    Some(FieldMatchType::Ternary(t)) => {
                        MatchKey::Ternary(canon(&t.value), canon(&t.mask))
                    }
                    Some(FieldMatchType::Lpm(l)) => MatchKey::Lpm(canon(&l.value), l.prefix_len),
                    Some(FieldMatchType::Range(r)) => {
                        MatchKey::Range(canon(&r.low), canon(&r.high))
                    }
                    Some(FieldMatchType::Optional(o)) => MatchKey::Optional(canon(&o.value)),
                    Some(FieldMatchType::Other(a)) => {
                        MatchKey::Other(a.type_url.clone(), a.value.clone())
                    }
                    None => MatchKey::Unset,
                };
                (m.field_id, key)
            })
            .collect();
        matches.sort();
        EntryKey {
            table_id: entry.table_id,
            is_default: entry.is_default_action,
            priority: entry.priority,
            matches,
        }
    }
}

/// The action of an entry in canonical form, for comparison.
fn action_of(entry: &p4::TableEntry) -> Option<CanonAction> {
    use p4::table_action::Type;
    Some(match entry.action.as_ref()?.r#type.as_ref()? {
        Type::Action(a) => {
            let mut params: Vec<_> = a
                .params
                .iter()
                .map(|p| (p.param_id, canon(&p.value)))
                .collect();
            params.sort();
            CanonAction::Direct(a.action_id, params)
        }
        Type::ActionProfileMemberId(m) => CanonAction::Member(*m),
        Type::ActionProfileGroupId(g) => CanonAction::Group(*g),
        Type::ActionProfileActionSet(set) => CanonAction::Set(format!("{set:?}")),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum CanonAction {
    Direct(u32, Vec<(u32, Vec<u8>)>),
    Member(u32),
    Group(u32),
    Set(String),
}

/// What to write to go from the installed entries to the desired ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub delete: Vec<p4::TableEntry>,
    pub modify: Vec<p4::TableEntry>,
    pub insert: Vec<p4::TableEntry>,
    /// Desired entries already installed as they should be.
    pub unchanged: usize,
    /// Desired entries whose key appeared earlier in the list (the first wins).
    pub duplicates: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.modify.is_empty() && self.insert.is_empty()
    }

    pub fn len(&self) -> usize {
        self.delete.len() + self.modify.len() + self.insert.len()
    }

    /// The updates in a safe order: deletions first (freeing table room),
    /// then modifications, then insertions.
    pub fn into_updates(self) -> Vec<p4::Update> {
        use p4::update::Type;
        let wrap = |ty: Type, e: p4::TableEntry| p4::Update {
            r#type: ty as i32,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(e)),
            }),
        };
        let mut out = Vec::with_capacity(self.len());
        out.extend(
            self.delete
                .into_iter()
                .map(|e| wrap(Type::Delete, key_only(e))),
        );
        out.extend(self.modify.into_iter().map(|e| wrap(Type::Modify, e)));
        out.extend(self.insert.into_iter().map(|e| wrap(Type::Insert, e)));
        out
    }
}

/// A deletion only needs the key; servers reject some read-only fields.
fn key_only(e: p4::TableEntry) -> p4::TableEntry {
    p4::TableEntry {
        table_id: e.table_id,
        r#match: e.r#match,
        priority: e.priority,
        ..Default::default()
    }
}

/// Computes the plan. `installed` is what a wildcard read returned (plus any
/// default entries read explicitly), `desired` the compiled entries.
pub fn diff(installed: &[p4::TableEntry], desired: &[p4::TableEntry]) -> Plan {
    let mut plan = Plan::default();
    let have: HashMap<EntryKey, &p4::TableEntry> =
        installed.iter().map(|e| (EntryKey::of(e), e)).collect();
    // The first of entries with the same key wins; visit in compiled order.
    let mut first: HashMap<EntryKey, usize> = HashMap::new();
    for (i, e) in desired.iter().enumerate() {
        first.entry(EntryKey::of(e)).or_insert(i);
    }
    plan.duplicates = desired.len() - first.len();
    let mut order: Vec<(usize, EntryKey)> = first.into_iter().map(|(k, i)| (i, k)).collect();
    order.sort_by_key(|(i, _)| *i);
    for (i, key) in &order {
        let entry = &desired[*i];
        match have.get(key) {
            Some(installed) if action_of(installed) == action_of(entry) => plan.unchanged += 1,
            Some(_) => plan.modify.push(entry.clone()),
            None if entry.is_default_action => plan.modify.push(entry.clone()),
            None => plan.insert.push(entry.clone()),
        }
    }
    let wanted: HashSet<&EntryKey> = order.iter().map(|(_, k)| k).collect();
    for e in installed {
        if e.is_default_action || e.r#const {
            continue;
        }
        if !wanted.contains(&EntryKey::of(e)) {
            plan.delete.push(e.clone());
        }
    }
    plan
}
