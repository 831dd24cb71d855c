//! Per-update errors of a P4Runtime Write.
//!
//! A Write that fails returns a gRPC status whose binary details
//! (`grpc-status-details-bin`) are a `google.rpc.Status`; its `details` hold
//! one `p4.v1.Error` per update of the batch, in order, with code OK for the
//! updates that were applied.

use std::fmt;

use prost::Message;

use crate::p4info::P4InfoIndex;
use crate::proto::google::rpc;
use crate::proto::p4::v1 as p4;

/// One failed update, described by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError {
    /// INSERT, MODIFY or DELETE.
    pub op: &'static str,
    /// The table's name (or `<table 0x..>` when the P4Info does not know it).
    pub table: String,
    /// The whole entry, described with names (see [`P4InfoIndex::describe`]).
    pub entry: String,
    pub code: tonic::Code,
    pub message: String,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {:?}: {}",
            self.op, self.entry, self.code, self.message
        )
    }
}

/// Decodes the per-update errors from a failed Write's status. Returns
/// `None` when the status carries no P4Runtime details (then the whole batch
/// failed for the status's reason).
pub fn per_update_errors(status: &tonic::Status) -> Option<Vec<p4::Error>> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let rpc_status = rpc::Status::decode(details).ok()?;
    let errors: Vec<p4::Error> = rpc_status
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("/p4.v1.Error") || any.type_url == "p4.v1.Error")
        .filter_map(|any| p4::Error::decode(any.value.as_slice()).ok())
        .collect();
    (!errors.is_empty()).then_some(errors)
}

/// Encodes per-update errors the way servers do (used by test servers).
pub fn status_with_errors(code: tonic::Code, message: &str, errors: &[p4::Error]) -> tonic::Status {
    let details = rpc::Status {
        code: code as i32,
        message: message.to_string(),
        details: errors
            .iter()
            .map(|e| prost_types::Any {
                type_url: "type.googleapis.com/p4.v1.Error".to_string(),
                value: e.encode_to_vec(),
            })
            .collect(),
    };
    tonic::Status::with_details(code, message, details.encode_to_vec().into())
}

pub(crate) fn op_name(ty: i32) -> &'static str {
    match p4::update::Type::try_from(ty) {
        Ok(p4::update::Type::Insert) => "INSERT",
        Ok(p4::update::Type::Modify) => "MODIFY",
        Ok(p4::update::Type::Delete) => "DELETE",
        _ => "UPDATE",
    }
}

/// Names the failed updates of a batch. When the status has per-update
/// details they are matched to the updates by position; otherwise every
/// update of the batch is reported with the status's code and message.
pub fn describe_failures(
    info: &P4InfoIndex,
    updates: &[p4::Update],
    status: &tonic::Status,
) -> Vec<UpdateError> {
    let describe = |u: &p4::Update, code: tonic::Code, message: String| {
        let (table, entry) = match u.entity.as_ref().and_then(|e| e.entity.as_ref()) {
            Some(p4::entity::Entity::TableEntry(t)) => {
                (info.table_name(t.table_id), info.describe(t))
            }
            Some(other) => ("<entity>".to_string(), format!("{other:?}")),
            None => ("<none>".to_string(), "<empty update>".to_string()),
        };
        UpdateError {
            op: op_name(u.r#type),
            table,
            entry,
            code,
            message,
        }
    };
    match per_update_errors(status) {
        Some(errors) => updates
            .iter()
            .zip(errors)
            .filter(|(_, e)| e.canonical_code != 0)
            .map(|(u, e)| describe(u, tonic::Code::from(e.canonical_code), e.message))
            .collect(),
        None => updates
            .iter()
            .map(|u| describe(u, status.code(), status.message().to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::p4::config::v1 as cfg;

    fn info() -> P4InfoIndex {
        P4InfoIndex::new(cfg::P4Info {
            tables: vec![cfg::Table {
                preamble: Some(cfg::Preamble {
                    id: 5,
                    name: "ingress.port_map".into(),
                    ..Default::default()
                }),
                match_fields: vec![cfg::MatchField {
                    id: 1,
                    name: "port".into(),
                    bitwidth: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn update(port: u8) -> p4::Update {
        p4::Update {
            r#type: p4::update::Type::Insert as i32,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                    table_id: 5,
                    r#match: vec![p4::FieldMatch {
                        field_id: 1,
                        field_match_type: Some(p4::field_match::FieldMatchType::Exact(
                            p4::field_match::Exact { value: vec![port] },
                        )),
                    }],
                    ..Default::default()
                })),
            }),
        }
    }

    #[test]
    fn per_update_errors_round_trip_through_status_details() {
        let errors = [
            p4::Error::default(),
            p4::Error {
                canonical_code: tonic::Code::AlreadyExists as i32,
                message: "exists".into(),
                ..Default::default()
            },
        ];
        let status = status_with_errors(tonic::Code::Unknown, "batch failed", &errors);
        assert_eq!(per_update_errors(&status).unwrap(), errors);
        let named = describe_failures(&info(), &[update(1), update(2)], &status);
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].entry, "ingress.port_map[port=2]");
        assert_eq!(named[0].code, tonic::Code::AlreadyExists);
        assert_eq!(
            named[0].to_string(),
            "INSERT ingress.port_map[port=2]: AlreadyExists: exists"
        );
    }

    #[test]
    fn a_status_without_details_fails_every_update_of_the_batch() {
        let status = tonic::Status::unavailable("switch gone");
        assert!(per_update_errors(&status).is_none());
        let named = describe_failures(&info(), &[update(1), update(2)], &status);
        assert_eq!(named.len(), 2);
        assert!(
            named
                .iter()
                .all(|e| e.code == tonic::Code::Unavailable && e.message == "switch gone")
        );
    }

    #[test]
    fn garbage_details_are_not_trusted() {
        let status =
            tonic::Status::with_details(tonic::Code::Unknown, "x", vec![0xff, 0xff, 0xff].into());
        assert!(per_update_errors(&status).is_none());
    }
}
