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

/// The multicast group of trace events (`IOAM6_GENL_EV_GRP_NAME`; joining
/// it needs CAP_NET_ADMIN).
pub const EVENTS_GROUP: &str = "ioam6_events";

/// `IOAM6_EVENT_TRACE`: the generic netlink command of a trace event. Event
/// types (`enum ioam6_event_type`) are numbered apart from [`Cmd`]s.
pub const EVENT_TRACE: u8 = 1;

/// Attributes of a trace event (`IOAM6_EVENT_ATTR_TRACE_*`).
pub mod event_attr {
    /// u16
    pub const TRACE_NAMESPACE: u16 = 1;
    /// u8, in 4-byte units
    pub const TRACE_NODELEN: u16 = 2;
    /// u32, the 24-bit trace type in the low bits
    pub const TRACE_TYPE: u16 = 3;
    /// binary: the filled part of the trace's data
    pub const TRACE_DATA: u16 = 4;
}

/// One `IOAM6_EVENT_TRACE`: what the kernel multicasts after a node
/// processed a pre-allocated trace (`ipv6_hop_ioam` in
/// `net/ipv6/exthdrs.c`, after its own fill). `data` is the filled part of
/// the trace's node data only (from `RemainingLen * 4` to the end), the
/// entry this node just wrote first; the event carries neither the
/// RemainingLen, the flags nor anything else of the packet. Borrows from
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEventRepr<'a> {
    pub namespace: u16,
    /// NodeLen, in 4-byte units.
    pub node_len: u8,
    /// The trace type (bit 0 is the most significant of the 24).
    pub trace_type: u32,
    pub data: &'a [u8],
}

impl<'a> TraceEventRepr<'a> {
    /// Parses a generic netlink payload (after the 16-byte netlink header).
    /// Every attribute is length-checked; a missing one is an error.
    pub fn parse(payload: &'a [u8]) -> Result<TraceEventRepr<'a>, Error> {
        let Some((&cmd, _)) = payload.split_first() else {
            return Err(Error::Malformed("empty ioam6 event".into()));
        };
        if cmd != EVENT_TRACE {
            return Err(Error::Malformed(format!(
                "ioam6 event type {cmd}, expected {EVENT_TRACE} (trace)"
            )));
        }
        let (_, attrs) = split(payload)?;
        let (mut namespace, mut node_len, mut trace_type, mut data) = (None, None, None, None);
        for a in attrs {
            let a = a?;
            match a.kind {
                event_attr::TRACE_NAMESPACE => namespace = Some(a.u16()?),
                event_attr::TRACE_NODELEN => node_len = Some(a.u8()?),
                event_attr::TRACE_TYPE => trace_type = Some(a.u32()?),
                event_attr::TRACE_DATA => data = Some(a.payload),
                _ => {} // attributes of newer kernels
            }
        }
        let missing = |what: &str| Error::Malformed(format!("ioam6 trace event without {what}"));
        Ok(TraceEventRepr {
            namespace: namespace.ok_or_else(|| missing("IOAM6_EVENT_ATTR_TRACE_NAMESPACE"))?,
            node_len: node_len.ok_or_else(|| missing("IOAM6_EVENT_ATTR_TRACE_NODELEN"))?,
            trace_type: trace_type.ok_or_else(|| missing("IOAM6_EVENT_ATTR_TRACE_TYPE"))?,
            data: data.ok_or_else(|| missing("IOAM6_EVENT_ATTR_TRACE_DATA"))?,
        })
    }

    /// The payload the kernel sends for this event.
    pub fn emit(&self) -> Vec<u8> {
        let mut w = NlaWriter::new(&[EVENT_TRACE, VERSION, 0, 0]);
        w.u16(event_attr::TRACE_NAMESPACE, self.namespace);
        w.u8(event_attr::TRACE_NODELEN, self.node_len);
        w.u32(event_attr::TRACE_TYPE, self.trace_type);
        w.put(event_attr::TRACE_DATA, self.data);
        w.finish()
    }
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

    #[test]
    fn trace_events_round_trip_and_are_checked() {
        let data = [
            0x3f, 0, 0, 3, 0, 0x1f, 0xff, 0xff, 0x40, 0, 0, 1, 0xff, 0xff, 0, 0x0b,
        ];
        let ev = TraceEventRepr {
            namespace: 123,
            node_len: 2,
            trace_type: 0xc0_0000,
            data: &data,
        };
        let bytes = ev.emit();
        assert_eq!(&bytes[..4], &[EVENT_TRACE, VERSION, 0, 0]);
        assert_eq!(TraceEventRepr::parse(&bytes).unwrap(), ev);
        // Every truncation is an error or a shorter valid event, never a panic.
        for n in 0..bytes.len() {
            let _ = TraceEventRepr::parse(&bytes[..n]);
        }
        assert!(TraceEventRepr::parse(&bytes[..bytes.len() - 20]).is_err());
        // A namespace message is not a trace event.
        assert!(TraceEventRepr::parse(&NS_123).is_err());
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(TraceEventRepr::parse(&other).is_err());
        // A wrongly sized attribute is an error.
        let mut w = NlaWriter::new(&[EVENT_TRACE, VERSION, 0, 0]);
        w.u32(event_attr::TRACE_NAMESPACE, 123);
        w.u8(event_attr::TRACE_NODELEN, 2);
        w.u32(event_attr::TRACE_TYPE, 0xc0_0000);
        w.put(event_attr::TRACE_DATA, &data);
        assert!(TraceEventRepr::parse(&w.finish()).is_err());
    }

    /// An `IOAM6_EVENT_TRACE` received on this machine (kernel 6.18) in the
    /// server namespace of `collector/tests/e2e_netns.rs`: namespace 123,
    /// trace type 0xf20000 (the attribute holds the 32-bit word after
    /// RemainingLen: the type shifted left by 8, the reserved byte below),
    /// three 20-byte entries, the server's (node 3, ingress 31) first.
    const EVENT: [u8; 92] = [
        0x01, 0x01, 0x00, 0x00, 0x06, 0x00, 0x01, 0x00, 0x7b, 0x00, 0x00, 0x00, 0x05, 0x00, 0x02,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0xf2, 0x40, 0x00,
        0x04, 0x00, 0x3e, 0x00, 0x00, 0x03, 0x00, 0x1f, 0xff, 0xff, 0x6b, 0x09, 0x0c, 0xca, 0x00,
        0x00, 0x65, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00, 0x00, 0x02, 0x00, 0x15, 0x00, 0x16,
        0x6b, 0x09, 0x0c, 0xca, 0x00, 0x00, 0x65, 0xe9, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00,
        0x01, 0xff, 0xff, 0x00, 0x0b, 0x6b, 0x09, 0x0c, 0xca, 0x00, 0x00, 0x65, 0xb7, 0xff, 0xff,
        0xff, 0xff,
    ];

    #[test]
    fn a_kernel_trace_event_parses_and_round_trips() {
        let ev = TraceEventRepr::parse(&EVENT).unwrap();
        assert_eq!(ev.namespace, 123);
        assert_eq!(ev.node_len, 5);
        assert_eq!(ev.trace_type, 0xf2_0000 << 8);
        assert_eq!(ev.data.len(), 60);
        assert_eq!(&ev.data[..4], &[0x3e, 0, 0, 3], "hop limit 62, node 3");
        assert_eq!(ev.emit(), EVENT);
    }
}
