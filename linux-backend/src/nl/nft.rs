//! An nf_tables rule that logs IPv6 packets with a Hop-by-Hop header to an
//! nfnetlink_log group (`include/uapi/linux/netfilter/nf_tables.h`).
//!
//! The kernel fills the IOAM trace while it parses the Hop-by-Hop header
//! (`ip6_rcv_core`), before the netfilter hooks, so a rule at the input hook
//! hands user space the packet with this node's own entry filled. The rule
//! is what
//!
//! ```text
//! table ip6 <table> {            # flags owner
//!     chain input {
//!         type filter hook input priority 0; policy accept;
//!         meta iif <ifindex> ip6 nexthdr 0 log group <group> snaplen <snaplen> queue-threshold <qthreshold>
//!     }
//! }
//! ```
//!
//! means to `nft` (which `nft --debug=netlink` shows as `meta load iif =>
//! reg 1`, `cmp eq reg 1`, `payload load 1b @ network header + 6 => reg 1`,
//! `cmp eq reg 1 0x00`, `log group ...`). The table carries
//! `NFT_TABLE_F_OWNER`: the kernel deletes it when the socket that made it
//! closes, so a crashed agent leaves nothing behind.

use super::attr::{NlaIter, NlaWriter};
use super::nfnl::{
    self, MSG_BATCH_BEGIN, MSG_BATCH_END, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST, NfGenMsg, SUBSYS_NFTABLES,
};
use crate::Error;

/// `NFPROTO_IPV6`.
const NFPROTO_IPV6: u8 = 10;
/// `NFT_MSG_*`.
const NEWTABLE: u8 = 0;
const GETTABLE: u8 = 1;
const DELTABLE: u8 = 2;
const NEWCHAIN: u8 = 3;
const NEWRULE: u8 = 6;
/// `NFTA_TABLE_*`.
const TABLE_NAME: u16 = 1;
const TABLE_FLAGS: u16 = 2;
/// `NFT_TABLE_F_OWNER`.
const TABLE_F_OWNER: u32 = 0x2;
/// `NFTA_CHAIN_*`, `NFTA_HOOK_*`.
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
/// `NF_INET_LOCAL_IN`, `NF_ACCEPT`.
const NF_INET_LOCAL_IN: u32 = 1;
const NF_ACCEPT: u32 = 1;
/// `NFTA_RULE_*`, `NFTA_LIST_ELEM`, `NFTA_EXPR_*`.
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
/// `NFT_REG_1`: a 16-byte register (what `nft` uses here).
const REG_1: u32 = 1;
/// `NFTA_META_*`, `NFT_META_IIF`.
const META_DREG: u16 = 1;
const META_KEY: u16 = 2;
const META_IIF: u32 = 4;
/// `NFTA_CMP_*`, `NFT_CMP_EQ`, `NFTA_DATA_VALUE`.
const CMP_SREG: u16 = 1;
const CMP_OP: u16 = 2;
const CMP_DATA: u16 = 3;
const CMP_EQ: u32 = 0;
const DATA_VALUE: u16 = 1;
/// `NFTA_PAYLOAD_*`, `NFT_PAYLOAD_NETWORK_HEADER`.
const PAYLOAD_DREG: u16 = 1;
const PAYLOAD_BASE: u16 = 2;
const PAYLOAD_OFFSET: u16 = 3;
const PAYLOAD_LEN: u16 = 4;
const PAYLOAD_NETWORK_HEADER: u32 = 1;
/// `NFTA_LOG_*`.
const LOG_GROUP: u16 = 1;
const LOG_SNAPLEN: u16 = 3;
const LOG_QTHRESHOLD: u16 = 4;
/// The IPv6 header's Next Header field, and its value for Hop-by-Hop.
const IPV6_NEXTHDR_OFFSET: u32 = 6;
const NEXTHDR_HOP: u8 = 0;
/// The chain's name.
const CHAIN: &[u8] = b"input";
/// `NFT_NAME_MAXLEN` (with the terminator).
const NAME_MAXLEN: usize = 256;

/// What [`LogRule::install`] installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRuleSpec {
    /// The `ip6` table's name (unique per namespace).
    pub table: String,
    /// The interface whose incoming packets are logged.
    pub ifindex: u32,
    /// The nfnetlink_log group ([`super::nflog::NflogSocket::open`]).
    pub group: u16,
    /// Bytes of each packet copied, from the IPv6 header (0: the group's
    /// copy range alone).
    pub snaplen: u32,
    /// Packets the kernel queues before it sends a batch (0: the group's).
    pub qthreshold: u16,
}

/// An installed rule; owns the netlink socket that made (and owns) its
/// table. Dropping it deletes the table.
#[derive(Debug)]
pub struct LogRule {
    sock: nfnl::Socket,
    table: String,
    installed: bool,
}

fn check_name(table: &str) -> Result<(), Error> {
    if table.is_empty() || table.len() >= NAME_MAXLEN || table.contains('\0') {
        return Err(Error::Plan(format!(
            "nf_tables table name {table:?}: 1 to {} bytes, no NUL",
            NAME_MAXLEN - 1
        )));
    }
    Ok(())
}

fn nft_type(msg: u8) -> u16 {
    nfnl::msg_type(SUBSYS_NFTABLES, msg)
}

/// One change of a batch: `NFT_MSG_*`, what writes its attributes, what it
/// does (for errors).
type Change<'a> = (u8, Box<dyn FnOnce(&mut NlaWriter) + 'a>, &'a str);

/// Frames `changes` (each: message, attributes, description) as one
/// nf_tables batch; returns the bytes and the sequence numbers to ack.
fn batch<'a>(
    next_seq: &mut dyn FnMut() -> u32,
    changes: Vec<Change<'a>>,
) -> (Vec<u8>, Vec<(u32, &'a str)>) {
    let mut out = Vec::new();
    let subsys = NfGenMsg::new(libc::AF_UNSPEC as u8, u16::from(SUBSYS_NFTABLES));
    nfnl::push_message(
        &mut out,
        MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        next_seq(),
        subsys,
        |_| {},
    );
    let mut acks = Vec::new();
    for (msg, attrs, what) in changes {
        let seq = next_seq();
        let flags = NLM_F_REQUEST
            | NLM_F_ACK
            | if msg == DELTABLE {
                0
            } else {
                NLM_F_CREATE | NLM_F_EXCL
            };
        nfnl::push_message(
            &mut out,
            nft_type(msg),
            flags,
            seq,
            NfGenMsg::new(NFPROTO_IPV6, 0),
            attrs,
        );
        acks.push((seq, what));
    }
    nfnl::push_message(
        &mut out,
        MSG_BATCH_END,
        NLM_F_REQUEST,
        next_seq(),
        subsys,
        |_| {},
    );
    (out, acks)
}

/// One expression of a rule.
fn expr(w: &mut NlaWriter, name: &[u8], data: impl FnOnce(&mut NlaWriter)) {
    w.nested(LIST_ELEM, |w| {
        w.string(EXPR_NAME, name);
        w.nested(EXPR_DATA, data);
    });
}

/// `cmp eq reg 1 <value>`.
fn cmp_eq(w: &mut NlaWriter, value: &[u8]) {
    expr(w, b"cmp", |w| {
        w.put(CMP_SREG, &REG_1.to_be_bytes())
            .put(CMP_OP, &CMP_EQ.to_be_bytes());
        w.nested(CMP_DATA, |w| {
            w.put(DATA_VALUE, value);
        });
    });
}

/// The rule's expressions (see the module's documentation).
fn rule_expressions(w: &mut NlaWriter, spec: &LogRuleSpec) {
    expr(w, b"meta", |w| {
        w.put(META_DREG, &REG_1.to_be_bytes())
            .put(META_KEY, &META_IIF.to_be_bytes());
    });
    // meta iif is host order.
    cmp_eq(w, &spec.ifindex.to_ne_bytes());
    expr(w, b"payload", |w| {
        w.put(PAYLOAD_DREG, &REG_1.to_be_bytes())
            .put(PAYLOAD_BASE, &PAYLOAD_NETWORK_HEADER.to_be_bytes())
            .put(PAYLOAD_OFFSET, &IPV6_NEXTHDR_OFFSET.to_be_bytes())
            .put(PAYLOAD_LEN, &1u32.to_be_bytes());
    });
    cmp_eq(w, &[NEXTHDR_HOP]);
    expr(w, b"log", |w| {
        w.put(LOG_GROUP, &spec.group.to_be_bytes());
        if spec.snaplen != 0 {
            w.put(LOG_SNAPLEN, &spec.snaplen.to_be_bytes());
        }
        if spec.qthreshold != 0 {
            w.put(LOG_QTHRESHOLD, &spec.qthreshold.to_be_bytes());
        }
    });
}

/// Turns the kernel's refusal into what the operator can act on: `batch_op`
/// describes the whole batch (the kernel answers its first message when it
/// refuses all of it), `table_op` and `rule_op` two of its changes.
fn explain(e: Error, batch_op: &str, table_op: &str, rule_op: &str) -> Error {
    let Error::Kernel { op, error, detail } = e else {
        return e;
    };
    let with = |why: &str| {
        Some(
            detail
                .clone()
                .map_or(why.to_string(), |d| format!("{d}; {why}")),
        )
    };
    match error.raw_os_error() {
        Some(libc::EPERM) if op == batch_op => Error::Kernel {
            detail: with("CAP_NET_ADMIN is needed"),
            op,
            error,
        },
        Some(libc::EPERM) if op == table_op => Error::Kernel {
            detail: with(
                "the table is owned by another netlink socket (flags owner), e.g. another agent",
            ),
            op,
            error,
        },
        Some(libc::EOPNOTSUPP | libc::EPROTONOSUPPORT) => Error::Unsupported(format!(
            "{op}: the kernel has no nf_tables (CONFIG_NF_TABLES): {error}"
        )),
        Some(libc::ENOENT) if op == rule_op => Error::Unsupported(format!(
            "{op}: the kernel has no nf_tables log or meta expression (CONFIG_NFT_LOG): {error}"
        )),
        _ => Error::Kernel { op, error, detail },
    }
}

impl LogRule {
    /// In the calling thread's network namespace: table `ip6 <table>` with
    /// `NFT_TABLE_F_OWNER`, base chain `input` (filter, hook input,
    /// priority 0, policy accept) and one rule: `meta iif <ifindex> ip6
    /// nexthdr 0 log group <group> snaplen <snaplen> queue-threshold
    /// <qthreshold>`. A table of that name must not exist (`EEXIST`).
    ///
    /// A kernel without nf_tables or its log expression gives
    /// [`Error::Unsupported`]; `EPERM` says that `CAP_NET_ADMIN` is needed.
    pub fn install(spec: &LogRuleSpec) -> Result<LogRule, Error> {
        check_name(&spec.table)?;
        let mut sock = nfnl::Socket::open(8192)?;
        let name = spec.table.as_bytes();
        let table_op = format!("add nf_tables table ip6 {}", spec.table);
        let chain_op = format!("add chain ip6 {} input", spec.table);
        let rule_op = format!("add log rule to ip6 {} input", spec.table);
        let (bytes, acks) = batch(
            &mut || sock.next_seq(),
            vec![
                (
                    NEWTABLE,
                    Box::new(|w: &mut NlaWriter| {
                        w.string(TABLE_NAME, name)
                            .put(TABLE_FLAGS, &TABLE_F_OWNER.to_be_bytes());
                    }),
                    &table_op,
                ),
                (
                    NEWCHAIN,
                    Box::new(|w: &mut NlaWriter| {
                        w.string(CHAIN_TABLE, name).string(CHAIN_NAME, CHAIN);
                        w.nested(CHAIN_HOOK, |w| {
                            w.put(HOOK_HOOKNUM, &NF_INET_LOCAL_IN.to_be_bytes())
                                .put(HOOK_PRIORITY, &0i32.to_be_bytes());
                        });
                        w.put(CHAIN_POLICY, &NF_ACCEPT.to_be_bytes())
                            .string(CHAIN_TYPE, b"filter");
                    }),
                    &chain_op,
                ),
                (
                    NEWRULE,
                    Box::new(|w: &mut NlaWriter| {
                        w.string(RULE_TABLE, name).string(RULE_CHAIN, CHAIN);
                        w.nested(RULE_EXPRESSIONS, |w| rule_expressions(w, spec));
                    }),
                    &rule_op,
                ),
            ],
        );
        let batch_op = format!("install nf_tables log rule in table ip6 {}", spec.table);
        sock.transact(&bytes, &acks, &batch_op)
            .map_err(|e| explain(e, &batch_op, &table_op, &rule_op))?;
        Ok(LogRule {
            sock,
            table: spec.table.clone(),
            installed: true,
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table now.
    pub fn remove(mut self) -> Result<(), Error> {
        self.delete()
    }

    fn delete(&mut self) -> Result<(), Error> {
        if !self.installed {
            return Ok(());
        }
        self.installed = false;
        let op = format!("delete nf_tables table ip6 {}", self.table);
        let name = self.table.clone();
        let (bytes, acks) = batch(
            &mut || self.sock.next_seq(),
            vec![(
                DELTABLE,
                Box::new(|w: &mut NlaWriter| {
                    w.string(TABLE_NAME, name.as_bytes());
                }),
                &op,
            )],
        );
        self.sock.transact(&bytes, &acks, &op)
    }
}

impl Drop for LogRule {
    fn drop(&mut self) {
        // Best effort: closing the socket deletes the owned table anyway.
        let _ = self.delete();
    }
}

/// The names of the `ip6` tables in the calling thread's network namespace
/// (a `GETTABLE` dump).
pub fn tables() -> Result<Vec<String>, Error> {
    let mut sock = nfnl::Socket::open(64 * 1024)?;
    let mut req = Vec::new();
    let seq = sock.next_seq();
    nfnl::push_message(
        &mut req,
        nft_type(GETTABLE),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        NfGenMsg::new(NFPROTO_IPV6, 0),
        |_| {},
    );
    let mut names = Vec::new();
    let mut bad = None;
    sock.dump(&req, "dump nf_tables tables", |payload| {
        let name = NfGenMsg::parse(payload).and_then(|(_, attrs)| {
            for a in NlaIter::new(attrs) {
                let a = a?;
                if a.kind == TABLE_NAME {
                    return a.string().map(Some);
                }
            }
            Ok(None)
        });
        match name {
            Ok(Some(n)) => names.push(n),
            Ok(None) => {}
            Err(e) => bad = Some(e),
        }
    })
    .map_err(|e| explain(e, "dump nf_tables tables", "", ""))?;
    match bad {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nl::nfnl::{NLMSG_HDRLEN, NlMsgIter};

    fn spec() -> LogRuleSpec {
        LogRuleSpec {
            table: "clt".into(),
            ifindex: 7,
            group: 5,
            snaplen: 256,
            qthreshold: 8,
        }
    }

    /// The rule's expressions as `nft --debug=netlink` lists them for
    /// `meta iif 7 ip6 nexthdr 0 log group 5 snaplen 256 queue-threshold 8`.
    #[test]
    fn the_rule_is_what_nft_would_send() {
        let mut w = NlaWriter::default();
        rule_expressions(&mut w, &spec());
        let buf = w.finish();
        let mut seen = Vec::new();
        for elem in NlaIter::new(&buf) {
            let elem = elem.unwrap();
            assert_eq!((elem.kind, elem.nested), (LIST_ELEM, true));
            let mut it = elem.nested();
            let name = it.next().unwrap().unwrap().string().unwrap();
            let data = it.next().unwrap().unwrap();
            let fields: Vec<(u16, Vec<u8>)> = data
                .nested()
                .map(|a| {
                    let a = a.unwrap();
                    let v = if a.nested {
                        a.nested().next().unwrap().unwrap().payload.to_vec()
                    } else {
                        a.payload.to_vec()
                    };
                    (a.kind, v)
                })
                .collect();
            seen.push((name, fields));
        }
        let be = |v: u32| v.to_be_bytes().to_vec();
        assert_eq!(
            seen,
            vec![
                ("meta".into(), vec![(1, be(1)), (2, be(4))]),
                (
                    "cmp".into(),
                    vec![(1, be(1)), (2, be(0)), (3, 7u32.to_ne_bytes().to_vec())]
                ),
                (
                    "payload".into(),
                    vec![(1, be(1)), (2, be(1)), (3, be(6)), (4, be(1))]
                ),
                ("cmp".into(), vec![(1, be(1)), (2, be(0)), (3, vec![0])]),
                (
                    "log".into(),
                    vec![(1, vec![0, 5]), (3, be(256)), (4, vec![0, 8])]
                ),
            ]
        );
    }

    #[test]
    fn a_batch_is_begin_changes_end() {
        let mut seq = 0;
        let (bytes, acks) = batch(
            &mut || {
                seq += 1;
                seq
            },
            vec![(
                DELTABLE,
                Box::new(|w: &mut NlaWriter| {
                    w.string(TABLE_NAME, b"x");
                }),
                "delete",
            )],
        );
        let msgs: Vec<_> = NlMsgIter::new(&bytes).collect::<Result<_, _>>().unwrap();
        let types: Vec<_> = msgs.iter().map(|m| m.ty).collect();
        assert_eq!(types, vec![0x10, 0x0a02, 0x11]);
        assert_eq!(acks, vec![(msgs[1].seq, "delete")]);
        assert_eq!(msgs[1].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msgs[0].payload, &[0, 0, 0, 10]);
        assert_eq!(msgs[1].payload[0], NFPROTO_IPV6);
        assert_eq!(bytes.len(), 3 * NLMSG_HDRLEN + 3 * 4 + 8);
    }

    #[test]
    fn kernel_refusals_are_explained() {
        let kernel = |op: &str, errno| Error::Kernel {
            op: op.into(),
            error: std::io::Error::from_raw_os_error(errno),
            detail: None,
        };
        let explained = |op, errno| explain(kernel(op, errno), "batch", "table", "rule");
        assert!(
            matches!(explained("batch", libc::EOPNOTSUPP), Error::Unsupported(m) if m.contains("CONFIG_NF_TABLES"))
        );
        assert!(
            matches!(explained("rule", libc::ENOENT), Error::Unsupported(m) if m.contains("CONFIG_NFT_LOG"))
        );
        assert!(matches!(
            explained("table", libc::ENOENT),
            Error::Kernel { .. }
        ));
        assert!(
            explained("batch", libc::EPERM)
                .to_string()
                .contains("CAP_NET_ADMIN")
        );
        assert!(
            explained("table", libc::EPERM)
                .to_string()
                .contains("owned by another")
        );
        assert!(
            !explained("rule", libc::EPERM)
                .to_string()
                .contains("CAP_NET_ADMIN")
        );
    }

    #[test]
    fn bad_table_names_are_refused_before_the_kernel() {
        for name in ["", "a\0b", &"x".repeat(256)] {
            let s = LogRuleSpec {
                table: name.into(),
                ..spec()
            };
            assert!(
                matches!(LogRule::install(&s), Err(Error::Plan(_))),
                "{name:?}"
            );
        }
    }
}
