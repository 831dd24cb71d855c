//! The generic netlink family `IOAM6` (`include/uapi/linux/ioam6_genl.h`):
//! IOAM namespaces and opaque-state schemas.
//!
//! A message is a 4-byte generic netlink header (`cmd`, `version`, 2 reserved
//! bytes) followed by attributes. [`NamespaceRepr`] and [`SchemaRepr`] are the
//! typed forms; both parse what the kernel dumps and emit the same bytes.

use super::attr::{NlaIter, NlaWriter};
use crate::Error;

/// The family name to resolve through `nlctrl`.
pub const FAMILY_NAME: &str = "IOAM6";
/// `IOAM6_GENL_VERSION`.
pub const VERSION: u8 = 1;

/// Commands (`IOAM6_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    AddNamespace,
    DelNamespace,
    DumpNamespaces,
    AddSchema,
    DelSchema,
    DumpSchemas,
    NsSetSchema,
    Other(u8),
}

impl From<u8> for Cmd {
    fn from(v: u8) -> Cmd {
        match v {
            1 => Cmd::AddNamespace,
            2 => Cmd::DelNamespace,
            3 => Cmd::DumpNamespaces,
            4 => Cmd::AddSchema,
            5 => Cmd::DelSchema,
            6 => Cmd::DumpSchemas,
            7 => Cmd::NsSetSchema,
            other => Cmd::Other(other),
        }
    }
}

impl From<Cmd> for u8 {
    fn from(c: Cmd) -> u8 {
        match c {
            Cmd::AddNamespace => 1,
            Cmd::DelNamespace => 2,
            Cmd::DumpNamespaces => 3,
            Cmd::AddSchema => 4,
            Cmd::DelSchema => 5,
            Cmd::DumpSchemas => 6,
            Cmd::NsSetSchema => 7,
            Cmd::Other(v) => v,
        }
    }
}

/// Attributes (`IOAM6_ATTR_*`).
pub mod attr {
    /// u16
    pub const NS_ID: u16 = 1;
    /// u32
    pub const NS_DATA: u16 = 2;
    /// u64
    pub const NS_DATA_WIDE: u16 = 3;
    /// u32
    pub const SC_ID: u16 = 4;
    /// binary, at most 255 * 4 bytes
    pub const SC_DATA: u16 = 5;
    /// flag
    pub const SC_NONE: u16 = 6;
    /// alignment padding for u64 attributes
    pub const PAD: u16 = 7;
}

/// Longest opaque-state schema data the kernel accepts.
pub const MAX_SCHEMA_DATA_LEN: usize = 255 * 4;

/// The generic netlink header.
pub fn genl_header(cmd: Cmd) -> [u8; 4] {
    [cmd.into(), VERSION, 0, 0]
}

/// Splits a generic netlink payload into its command and attributes.
pub fn split(payload: &[u8]) -> Result<(Cmd, NlaIter<'_>), Error> {
    match payload {
        [cmd, _version, _, _, attrs @ ..] => Ok((Cmd::from(*cmd), NlaIter::new(attrs))),
        _ => Err(Error::Malformed(format!(
            "generic netlink payload of {} bytes, header needs 4",
            payload.len()
        ))),
    }
}

/// One IOAM namespace as `ip ioam namespace show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRepr {
    pub id: u16,
    /// Absent when the kernel holds the "unavailable" value (all ones).
    pub data: Option<u32>,
    pub data_wide: Option<u64>,
    /// The schema bound to the namespace.
    pub schema: Option<u32>,
}

impl NamespaceRepr {
    /// Parses one message of a namespace dump (or an add request).
    pub fn parse(payload: &[u8]) -> Result<NamespaceRepr, Error> {
        let (_, attrs) = split(payload)?;
        let (mut id, mut data, mut data_wide, mut schema) = (None, None, None, None);
        for a in attrs {
            let a = a?;
            match a.kind {
                attr::NS_ID => id = Some(a.u16()?),
                attr::NS_DATA => data = Some(a.u32()?),
                attr::NS_DATA_WIDE => data_wide = Some(a.u64()?),
                attr::SC_ID => schema = Some(a.u32()?),
                _ => {} // PAD and attributes of newer kernels
            }
        }
        Ok(NamespaceRepr {
            id: id.ok_or_else(|| Error::Malformed("namespace without IOAM6_ATTR_NS_ID".into()))?,
            data,
            data_wide,
            schema,
        })
    }

    /// The payload of a dump reply (`cmd` = dump) or, with
    /// [`Cmd::AddNamespace`], of an add request (the schema is bound with a
    /// separate [`Cmd::NsSetSchema`]).
    pub fn emit(&self, cmd: Cmd) -> Vec<u8> {
        let mut w = NlaWriter::new(&genl_header(cmd));
        w.u16(attr::NS_ID, self.id);
        if let Some(d) = self.data {
            w.u32(attr::NS_DATA, d);
        }
        if let Some(d) = self.data_wide {
            w.u64(attr::NS_DATA_WIDE, d);
        }
        if let (true, Some(s)) = (cmd != Cmd::AddNamespace, self.schema) {
            w.u32(attr::SC_ID, s);
        }
        w.finish()
    }
}

/// One opaque-state schema as `ip ioam schema show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRepr {
    pub id: u32,
    /// The data, padded by the kernel to a multiple of 4 bytes.
    pub data: Vec<u8>,
    /// The namespace the schema is bound to.
    pub namespace: Option<u16>,
}

impl SchemaRepr {
    pub fn parse(payload: &[u8]) -> Result<SchemaRepr, Error> {
        let (_, attrs) = split(payload)?;
        let (mut id, mut data, mut namespace) = (None, None, None);
        for a in attrs {
            let a = a?;
            match a.kind {
                attr::SC_ID => id = Some(a.u32()?),
                attr::SC_DATA => data = Some(a.payload.to_vec()),
                attr::NS_ID => namespace = Some(a.u16()?),
                _ => {}
            }
        }
        Ok(SchemaRepr {
            id: id.ok_or_else(|| Error::Malformed("schema without IOAM6_ATTR_SC_ID".into()))?,
            data: data.unwrap_or_default(),
            namespace,
        })
    }

    pub fn emit(&self, cmd: Cmd) -> Vec<u8> {
        let mut w = NlaWriter::new(&genl_header(cmd));
        w.u32(attr::SC_ID, self.id);
        w.put(attr::SC_DATA, &self.data);
        if let (true, Some(ns)) = (cmd != Cmd::AddSchema, self.namespace) {
            w.u16(attr::NS_ID, ns);
        }
        w.finish()
    }
}

/// `IOAM6_CMD_DEL_NAMESPACE`.
pub fn del_namespace(id: u16) -> Vec<u8> {
    let mut w = NlaWriter::new(&genl_header(Cmd::DelNamespace));
    w.u16(attr::NS_ID, id);
    w.finish()
}

/// `IOAM6_CMD_DEL_SCHEMA`.
pub fn del_schema(id: u32) -> Vec<u8> {
    let mut w = NlaWriter::new(&genl_header(Cmd::DelSchema));
    w.u32(attr::SC_ID, id);
    w.finish()
}

/// `IOAM6_CMD_NS_SET_SCHEMA`: binds `schema` to namespace `ns`, or unbinds.
pub fn set_schema(ns: u16, schema: Option<u32>) -> Vec<u8> {
    let mut w = NlaWriter::new(&genl_header(Cmd::NsSetSchema));
    w.u16(attr::NS_ID, ns);
    match schema {
        Some(s) => w.u32(attr::SC_ID, s),
        None => w.flag(attr::SC_NONE),
    };
    w.finish()
}

/// A dump request: the header alone.
pub fn dump(cmd: Cmd) -> Vec<u8> {
    genl_header(cmd).to_vec()
}

#[cfg(test)]
mod tests {
    //! Bytes captured on this machine (kernel 6.18, x86_64) with
    //! `strace -xx ip -n X ioam namespace show` / `ioam schema show` after
    //! `ip ioam namespace add 123 data 0xdeadbeef wide 0x0102030405060708`,
    //! `ip ioam namespace add 9`, `ip ioam schema add 7 "abcd"`,
    //! `ip ioam namespace set 123 schema 7`. The netlink header (16 bytes) is
    //! framed by neli; these are the payloads that follow it.
    use super::*;

    /// The second message of the namespace dump (nlmsg_len 56).
    const NS_123: [u8; 40] = [
        0x03, // cmd: IOAM6_CMD_DUMP_NAMESPACES
        0x01, // version: IOAM6_GENL_VERSION
        0x00, 0x00, // reserved
        0x06, 0x00, // nla_len 6
        0x01, 0x00, // nla_type IOAM6_ATTR_NS_ID
        0x7b, 0x00, // 123
        0x00, 0x00, // padding to 4
        0x08, 0x00, // nla_len 8
        0x02, 0x00, // nla_type IOAM6_ATTR_NS_DATA
        0xef, 0xbe, 0xad, 0xde, // 0xdeadbeef (native endian)
        0x0c, 0x00, // nla_len 12
        0x03, 0x00, // nla_type IOAM6_ATTR_NS_DATA_WIDE (no PAD attribute on x86_64)
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // 0x0102030405060708
        0x08, 0x00, // nla_len 8
        0x04, 0x00, // nla_type IOAM6_ATTR_SC_ID
        0x07, 0x00, 0x00, 0x00, // schema 7
    ];

    /// The first message of the namespace dump (nlmsg_len 28): no data.
    const NS_9: [u8; 12] = [
        0x03, // cmd: IOAM6_CMD_DUMP_NAMESPACES
        0x01, // version
        0x00, 0x00, // reserved
        0x06, 0x00, // nla_len 6
        0x01, 0x00, // IOAM6_ATTR_NS_ID
        0x09, 0x00, // 9
        0x00, 0x00, // padding
    ];

    /// The schema dump's message (nlmsg_len 44).
    const SC_7: [u8; 28] = [
        0x06, // cmd: IOAM6_CMD_DUMP_SCHEMAS
        0x01, // version
        0x00, 0x00, // reserved
        0x08, 0x00, // nla_len 8
        0x04, 0x00, // IOAM6_ATTR_SC_ID
        0x07, 0x00, 0x00, 0x00, // 7
        0x08, 0x00, // nla_len 8
        0x05, 0x00, // IOAM6_ATTR_SC_DATA
        0x61, 0x62, 0x63, 0x64, // "abcd"
        0x06, 0x00, // nla_len 6
        0x01, 0x00, // IOAM6_ATTR_NS_ID
        0x7b, 0x00, // namespace 123
        0x00, 0x00, // padding
    ];

    #[test]
    fn namespace_dump_round_trips() {
        let ns = NamespaceRepr::parse(&NS_123).unwrap();
        assert_eq!(
            ns,
            NamespaceRepr {
                id: 123,
                data: Some(0xdeadbeef),
                data_wide: Some(0x0102030405060708),
                schema: Some(7),
            }
        );
        assert_eq!(ns.emit(Cmd::DumpNamespaces), NS_123);

        let ns = NamespaceRepr::parse(&NS_9).unwrap();
        assert_eq!(
            ns,
            NamespaceRepr {
                id: 9,
                data: None,
                data_wide: None,
                schema: None,
            }
        );
        assert_eq!(ns.emit(Cmd::DumpNamespaces), NS_9);
    }

    #[test]
    fn schema_dump_round_trips() {
        let sc = SchemaRepr::parse(&SC_7).unwrap();
        assert_eq!(
            sc,
            SchemaRepr {
                id: 7,
                data: b"abcd".to_vec(),
                namespace: Some(123),
            }
        );
        assert_eq!(sc.emit(Cmd::DumpSchemas), SC_7);
    }

    #[test]
    fn add_requests_leave_out_the_binding() {
        let ns = NamespaceRepr::parse(&NS_123).unwrap();
        let add = ns.emit(Cmd::AddNamespace);
        assert_eq!(add[0], 1);
        assert_eq!(&add[4..], &NS_123[4..32]);
        assert_eq!(set_schema(123, None)[12..], [4, 0, 6, 0]); // SC_NONE flag, empty
    }

    #[test]
    fn truncated_dumps_are_errors() {
        for n in 0..NS_123.len() {
            // Every prefix either parses (cut at an attribute boundary) or
            // fails with Malformed; none panics.
            match NamespaceRepr::parse(&NS_123[..n]) {
                Ok(ns) => assert_eq!(ns.id, 123),
                Err(Error::Malformed(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(NamespaceRepr::parse(&[3, 1, 0, 0]).is_err());
    }
}
