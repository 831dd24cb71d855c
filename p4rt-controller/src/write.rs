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
