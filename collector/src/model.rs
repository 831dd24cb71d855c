//! The collector's own types: an IOAM report as received, and an output span
//! (what is exported over OTLP or kept in the embedded store).

use std::borrow::Cow;
use std::net::Ipv6Addr;

use clt_proto::ioam_api::{IoamNode, IoamTrace};
use serde::{Deserialize, Serialize};

/// The CLT join key: W3C trace id and span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanKey {
    pub trace_id: u128,
    pub span_id: u64,
}

impl SpanKey {
    /// `None` for the all-zero ids of plain IOAM (W3C: zero ids are invalid).
    pub fn new(trace_id: u128, span_id: u64) -> Option<SpanKey> {
        (trace_id != 0 && span_id != 0).then_some(SpanKey { trace_id, span_id })
    }

    /// From OTLP byte ids (16 and 8 bytes, big endian as in traceparent).
    pub fn from_bytes(trace_id: &[u8], span_id: &[u8]) -> Option<SpanKey> {
        let t: [u8; 16] = trace_id.try_into().ok()?;
        let s: [u8; 8] = span_id.try_into().ok()?;
        SpanKey::new(u128::from_be_bytes(t), u64::from_be_bytes(s))
    }
}

/// The flow a captured packet belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Upper-layer protocol number (6 TCP, 17 UDP, 58 ICMPv6).
    pub protocol: u8,
}

/// One IOAM trace as reported to the collector (one packet).
#[derive(Debug, Clone, PartialEq)]
pub struct IoamReport {
    pub key: Option<SpanKey>,
    pub namespace_id: u16,
    /// The 24-bit trace type, right-aligned.
    pub trace_type: u32,
    /// As carried in the packet: the last hop first.
    pub nodes: Vec<IoamNode>,
    pub flow: Option<Flow>,
    /// Capture time, ns since the Unix epoch (0: unknown).
    pub capture_time_ns: u64,
    pub reporter: String,
}

impl IoamReport {
    /// From the public API message (no flow, no capture time).
    pub fn from_ioam(t: IoamTrace) -> IoamReport {
        let trace_id = (u128::from(t.trace_id_high) << 64) | u128::from(t.trace_id_low);
        IoamReport {
            key: SpanKey::new(trace_id, t.span_id),
            namespace_id: t.namespace_id as u16,
            trace_type: t.bit_field >> 8,
            nodes: t.nodes,
            flow: None,
            capture_time_ns: 0,
            reporter: String::new(),
        }
    }

    /// From CLT's richer message.
    pub fn from_clt(c: clt_proto::clt_api::CltTrace) -> IoamReport {
        let mut r = IoamReport::from_ioam(c.trace.unwrap_or_default());
        let addr = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from);
        if let (Some(src), Some(dst)) = (addr(&c.src_addr), addr(&c.dst_addr)) {
            r.flow = Some(Flow {
                src,
                dst,
                src_port: c.src_port as u16,
                dst_port: c.dst_port as u16,
                protocol: c.protocol as u8,
            });
        }
        r.capture_time_ns = c.capture_time_unix_nano;
        r.reporter = if c.interface.is_empty() {
            c.reporter
        } else {
            format!("{}/{}", c.reporter, c.interface)
        };
        r
    }

    /// A rough size in memory, for the pending-bytes bound.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<IoamReport>()
            + self.nodes.len() * std::mem::size_of::<IoamNode>()
            + self.reporter.len()
    }
}

/// An attribute value of an output span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<u32> for AttrValue {
    fn from(v: u32) -> Self {
        AttrValue::Int(i64::from(v))
    }
}
impl From<u64> for AttrValue {
    fn from(v: u64) -> Self {
        // OTLP has no unsigned type; values above i64::MAX wrap (documented).
        AttrValue::Int(v as i64)
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_owned())
    }
}

/// Attribute names are mostly fixed strings (see `enrich`): borrowed, not
/// allocated per span.
pub type Attributes = Vec<(Cow<'static, str>, AttrValue)>;

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutEvent {
    pub name: String,
    pub time_ns: u64,
    pub attributes: Attributes,
}

/// OTLP span kinds (the values of the OTLP enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// A span on its way out: an application span passed through, or a network
/// span the collector made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutSpan {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub name: Cow<'static, str>,
    pub kind: OutKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes,
    pub events: Vec<OutEvent>,
    /// 0 unset, 1 ok, 2 error (OTLP status codes).
    pub status_code: u8,
    pub status_message: String,
    pub resource: Attributes,
    pub scope_name: Cow<'static, str>,
    pub scope_version: Cow<'static, str>,
}

impl OutSpan {
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A rough size in memory, for the export buffer's byte bound.
    pub fn approx_bytes(&self) -> usize {
        let attrs = |a: &Attributes| {
            a.iter()
                .map(|(k, v)| {
                    k.len()
                        + 32
                        + match v {
                            AttrValue::Str(s) => s.len(),
                            _ => 0,
                        }
                })
                .sum::<usize>()
        };
        std::mem::size_of::<OutSpan>()
            + self.name.len()
            + attrs(&self.attributes)
            + attrs(&self.resource)
            + self
                .events
                .iter()
                .map(|e| 64 + e.name.len() + attrs(&e.attributes))
                .sum::<usize>()
    }
}
