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
    // Each key is computed once: keys allocate, and this runs on every
    // reconcile of every device.
    let installed_keys: Vec<EntryKey> = installed.iter().map(EntryKey::of).collect();
    let have: HashMap<&EntryKey, &p4::TableEntry> = installed_keys.iter().zip(installed).collect();
    let mut wanted: HashSet<EntryKey> = HashSet::with_capacity(desired.len());
    for entry in desired {
        let key = EntryKey::of(entry);
        // The first of entries with the same key wins.
        if wanted.contains(&key) {
            plan.duplicates += 1;
            continue;
        }
        match have.get(&key) {
            Some(installed) if action_of(installed) == action_of(entry) => plan.unchanged += 1,
            Some(_) => plan.modify.push(entry.clone()),
            None if entry.is_default_action => plan.modify.push(entry.clone()),
            None => plan.insert.push(entry.clone()),
        }
        wanted.insert(key);
    }
    for (e, key) in installed.iter().zip(&installed_keys) {
        if !e.is_default_action && !e.r#const && !wanted.contains(key) {
            plan.delete.push(e.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use p4::field_match::Lpm;

    fn entry(prefix: &[u8], len: i32, port: &[u8]) -> p4::TableEntry {
        p4::TableEntry {
            table_id: 7,
            r#match: vec![p4::FieldMatch {
                field_id: 1,
                field_match_type: Some(FieldMatchType::Lpm(Lpm {
                    value: prefix.to_vec(),
                    prefix_len: len,
                })),
            }],
            action: Some(p4::TableAction {
                r#type: Some(p4::table_action::Type::Action(p4::Action {
                    action_id: 3,
                    params: vec![p4::action::Param {
                        param_id: 1,
                        value: port.to_vec(),
                    }],
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn values_compare_in_canonical_form() {
        // A server returns canonical bytestrings; a compiler may pad.
        let padded = entry(&[0, 0, 0x20, 0x01], 16, &[0, 1]);
        let canonical = entry(&[0x20, 0x01], 16, &[1]);
        assert_eq!(EntryKey::of(&padded), EntryKey::of(&canonical));
        let plan = diff(&[canonical], &[padded]);
        assert_eq!((plan.len(), plan.unchanged), (0, 1));
    }

    #[test]
    fn match_order_does_not_matter_but_priority_does() {
        let mut a = entry(&[1], 8, &[1]);
        a.r#match.push(p4::FieldMatch {
            field_id: 2,
            field_match_type: Some(FieldMatchType::Exact(p4::field_match::Exact {
                value: vec![6],
            })),
        });
        let mut b = a.clone();
        b.r#match.reverse();
        assert_eq!(EntryKey::of(&a), EntryKey::of(&b));
        b.priority = 10;
        assert_ne!(EntryKey::of(&a), EntryKey::of(&b));
    }

    #[test]
    fn plan_deletes_modifies_and_inserts_in_that_order() {
        let installed = [
            entry(&[1], 8, &[1]),
            entry(&[2], 8, &[1]),
            entry(&[3], 8, &[1]),
        ];
        let desired = [
            entry(&[1], 8, &[1]), // unchanged
            entry(&[2], 8, &[2]), // new port
            entry(&[4], 8, &[1]), // new
            entry(&[4], 8, &[9]), // duplicate key: the first wins
        ];
        let plan = diff(&installed, &desired);
        assert_eq!((plan.unchanged, plan.duplicates), (1, 1));
        assert_eq!(plan.delete, vec![installed[2].clone()]);
        assert_eq!(plan.modify, vec![desired[1].clone()]);
        assert_eq!(plan.insert, vec![desired[2].clone()]);
        let types: Vec<i32> = plan.into_updates().iter().map(|u| u.r#type).collect();
        use p4::update::Type;
        assert_eq!(
            types,
            vec![
                Type::Delete as i32,
                Type::Modify as i32,
                Type::Insert as i32
            ]
        );
    }

    #[test]
    fn const_and_default_entries_are_never_deleted() {
        let mut c = entry(&[1], 8, &[1]);
        c.r#const = true;
        let mut d = p4::TableEntry {
            table_id: 7,
            is_default_action: true,
            ..Default::default()
        };
        let plan = diff(&[c, d.clone()], &[]);
        assert!(plan.is_empty());
        // A desired default entry that differs is a MODIFY, never an INSERT.
        d.action = entry(&[1], 8, &[5]).action;
        let plan = diff(&[], &[d.clone()]);
        assert_eq!((plan.modify.len(), plan.insert.len()), (1, 0));
    }

    #[test]
    fn deletions_carry_only_the_key() {
        let mut e = entry(&[1], 8, &[1]);
        e.metadata = b"cookie".to_vec();
        e.idle_timeout_ns = 5;
        let updates = diff(&[e.clone()], &[]).into_updates();
        let Some(p4::entity::Entity::TableEntry(t)) =
            updates[0].entity.as_ref().and_then(|e| e.entity.clone())
        else {
            panic!("not a table entry")
        };
        assert_eq!(
            (t.table_id, t.r#match.clone(), t.action.clone()),
            (7, e.r#match, None)
        );
        assert!(t.metadata.is_empty());
    }
}
