//! The control-plane objects of the generated program: tables, actions,
//! registers and digests, with their P4Runtime ids and names.
//!
//! This is the single source of the ids: `p4src/` carries the same values in
//! its `@id` annotations (a test checks every generated program against the
//! P4Info built from here), p4info.rs and entries.rs read them from here.
//!
//! TNA: the P4Info is the one bf-p4c writes with
//! `--p4runtime-force-std-externs` (standard `registers` and `digests`, as
//! Stratum needs): names without the pipe (`CltIngress.ipv6_route`), and the
//! `Register` and `Digest` ids derived from their names, because bf-p4c
//! ignores `@id` on TNA externs ([`tna_extern_id`]).

use super::Target;
use super::layout::DomainLayout;

/// P4Runtime id prefixes (p4info.proto, `P4Ids.Prefix`): the top byte of an id.
pub const PREFIX_ACTION: u32 = 0x01;
pub const PREFIX_TABLE: u32 = 0x02;
pub const PREFIX_REGISTER: u32 = 0x16;
pub const PREFIX_DIGEST: u32 = 0x17;
/// bf-p4c's Tofino prefixes (barefoot/p4info.proto `P4Ids`) of the TNA
/// externs it names and numbers itself, before the conversion to standard
/// P4Info.
pub const PREFIX_TNA_REGISTER: u32 = 0x8B;
pub const PREFIX_TNA_DIGEST: u32 = 0x8E;
/// The pipeline instance of `p4src/tna/clt.p4` (`Pipeline(...) pipe;`).
pub const TNA_PIPE: &str = "pipe";

pub const TABLE_IPV6_ROUTE: u32 = 0x0200_0001;
pub const TABLE_IOAM_POLICY: u32 = 0x0200_0002;
pub const ACTION_DROP: u32 = 0x0100_0001;
pub const ACTION_ROUTE: u32 = 0x0100_0002;
pub const ACTION_NO_IOAM: u32 = 0x0100_0003;
pub const ACTION_IOAM_ENCAP: u32 = 0x0100_0004;
pub const ACTION_IOAM_TRANSIT: u32 = 0x0100_0005;
pub const ACTION_IOAM_DECAP: u32 = 0x0100_0006;
pub const REGISTER_SAMPLE_COUNT: u32 = 0x1600_0001;

/// Sizes declared in p4src: `ipv6_route` on Tofino (`p4src/tna`) and
/// `ioam_policy` on both targets.
pub const IPV6_ROUTE_SIZE: u32 = 4096;
pub const IOAM_POLICY_SIZE: u32 = 1024;
/// The smallest `ipv6_route` of a bmv2 program. bmv2 keeps its tables in
/// memory and a size is only a limit (about 100 bytes an entry), so the
/// default leaves room for a 10,000-route fabric.
pub const BMV2_IPV6_ROUTE_FLOOR: u32 = 16_384;

/// The size of `ipv6_route` for a node with `routes` compiled routes.
///
/// bmv2: at least [`BMV2_IPV6_ROUTE_FLOOR`], and twice the compiled routes
/// rounded up to a power of two, so a growing fabric does not change the
/// program (and reload the pipeline) with every new prefix. Tofino: the
/// template's fixed [`IPV6_ROUTE_SIZE`] (the table costs TCAM).
pub fn ipv6_route_size(target: Target, routes: usize) -> u32 {
    match target {
        Target::V1Model => {
            let wanted = u32::try_from(routes.saturating_mul(2))
                .unwrap_or(u32::MAX)
                .checked_next_power_of_two()
                .unwrap_or(u32::MAX);
            wanted.max(BMV2_IPV6_ROUTE_FLOOR)
        }
        Target::Tna => IPV6_ROUTE_SIZE,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Lpm,
    Ternary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchField {
    pub id: u32,
    pub name: &'static str,
    pub bits: u32,
    pub kind: MatchKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    pub id: u32,
    pub default_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub id: u32,
    pub name: String,
    pub match_fields: Vec<MatchField>,
    pub actions: Vec<ActionRef>,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub id: u32,
    pub name: &'static str,
    pub bits: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: u32,
    pub name: String,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub id: u32,
    pub name: String,
    pub bits: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub id: u32,
    pub name: String,
    /// The P4 struct carried by the digest.
    pub struct_name: String,
    /// Its members: name and bit width.
    pub members: Vec<(&'static str, u32)>,
    /// The domain number (`meta.domain`) it reports; TNA's digest type.
    pub domain: u8,
    /// The domain's name in the `.clt` file.
    pub domain_name: String,
}

/// Every control-plane object of one generated program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objects {
    pub tables: Vec<Table>,
    pub actions: Vec<Action>,
    pub registers: Vec<Register>,
    pub digests: Vec<Digest>,
}

impl Objects {
    /// The objects of a program for `target` with `domains`, `sample_slots`
    /// sampling counters and `routes` compiled routes.
    pub fn new(
        target: Target,
        domains: &[DomainLayout],
        sample_slots: u32,
        routes: usize,
    ) -> Objects {
        // The same names on both targets: bf-p4c's standard P4Info strips
        // the pipe from tables and externs, and never prefixes actions.
        let qualified = |name: &str| format!("CltIngress.{name}");
        let action = |id, name: &str, params: Vec<Param>| Action {
            id,
            name: qualified(name),
            params,
        };
        let param = |id, name, bits| Param { id, name, bits };
        let field = |id, name, bits, kind| MatchField {
            id,
            name,
            bits,
            kind,
        };
        let aref = |id, default_only| ActionRef { id, default_only };

        let tables = vec![
            Table {
                id: TABLE_IPV6_ROUTE,
                name: qualified("ipv6_route"),
                match_fields: vec![field(1, "dst_addr", 128, MatchKind::Lpm)],
                actions: vec![aref(ACTION_ROUTE, false), aref(ACTION_DROP, true)],
                size: ipv6_route_size(target, routes),
            },
            Table {
                id: TABLE_IOAM_POLICY,
                name: qualified("ioam_policy"),
                match_fields: vec![
                    field(1, "domain", 8, MatchKind::Exact),
                    field(2, "dst_addr", 128, MatchKind::Ternary),
                    field(3, "src_addr", 128, MatchKind::Ternary),
                    field(4, "proto", 8, MatchKind::Ternary),
                    field(5, "dst_port", 16, MatchKind::Ternary),
                    field(6, "src_port", 16, MatchKind::Ternary),
                ],
                actions: vec![
                    aref(ACTION_IOAM_ENCAP, false),
                    aref(ACTION_IOAM_TRANSIT, false),
                    aref(ACTION_IOAM_DECAP, false),
                    aref(ACTION_NO_IOAM, true),
                ],
                size: IOAM_POLICY_SIZE,
            },
        ];
        let actions = vec![
            action(ACTION_DROP, "drop", vec![]),
            action(
                ACTION_ROUTE,
                "route",
                vec![
                    param(1, "port", 9),
                    param(2, "src_mac", 48),
                    param(3, "dst_mac", 48),
                ],
            ),
            action(ACTION_NO_IOAM, "no_ioam", vec![]),
            action(
                ACTION_IOAM_ENCAP,
                "ioam_encap",
                vec![
                    param(1, "domain", 8),
                    param(2, "slot", 32),
                    param(3, "k", 32),
                    param(4, "n", 32),
                ],
            ),
            action(ACTION_IOAM_TRANSIT, "ioam_transit", vec![]),
            action(ACTION_IOAM_DECAP, "ioam_decap", vec![]),
        ];
        let registers = vec![Register {
            id: match target {
                Target::V1Model => REGISTER_SAMPLE_COUNT,
                Target::Tna => {
                    tna_extern_id(
                        PREFIX_TNA_REGISTER,
                        PREFIX_REGISTER,
                        &qualified("sample_count"),
                        &[],
                    )
                    .0
                }
            },
            name: qualified("sample_count"),
            bits: 32,
            size: sample_slots,
        }];

        let mut taken: Vec<u32> = tables
            .iter()
            .map(|t| t.id)
            .chain(actions.iter().map(|a| a.id))
            .chain(registers.iter().map(|r| r.id))
            .collect();
        let mut digests: Vec<Digest> = domains
            .iter()
            .map(|d| Digest {
                // Computed below: bf-p4c hashes the instance's name (TNA),
                // p4c the struct's (v1model: digests are calls).
                id: 0,
                name: match target {
                    Target::Tna => format!("CltIngressDeparser.digest_{}", d.tag),
                    Target::V1Model => digest_struct(d),
                },
                struct_name: digest_struct(d),
                members: digest_members(d, target),
                domain: d.number,
                domain_name: d.name.clone(),
            })
            .collect();
        // p4c assigns hashed ids in the sorted order of the names.
        let mut order: Vec<usize> = (0..digests.len()).collect();
        order.sort_by(|a, b| digests[*a].name.cmp(&digests[*b].name));
        let mut taken_tna = Vec::new();
        for i in order {
            digests[i].id = match target {
                Target::V1Model => {
                    let id = hashed_id(PREFIX_DIGEST, &digests[i].name, &taken);
                    taken.push(id);
                    id
                }
                Target::Tna => {
                    let (id, tna) = tna_extern_id(
                        PREFIX_TNA_DIGEST,
                        PREFIX_DIGEST,
                        &digests[i].name,
                        &taken_tna,
                    );
                    taken_tna.push(tna);
                    id
                }
            };
        }
        Objects {
            tables,
            actions,
            registers,
            digests,
        }
    }

    pub fn action(&self, id: u32) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }

    pub fn table(&self, id: u32) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    /// Every (name, id) pair, for aliases and id checks.
    pub fn names(&self) -> Vec<(&str, u32)> {
        self.tables
            .iter()
            .map(|t| (t.name.as_str(), t.id))
            .chain(self.actions.iter().map(|a| (a.name.as_str(), a.id)))
            .chain(self.registers.iter().map(|r| (r.name.as_str(), r.id)))
            .chain(self.digests.iter().map(|d| (d.name.as_str(), d.id)))
            .collect()
    }

    /// The shortest dot-separated suffix of `name` that no other object's
    /// name ends with (p4c's alias rule).
    pub fn alias(&self, name: &str) -> String {
        let names = self.names();
        let parts: Vec<&str> = name.split('.').collect();
        for n in 1..=parts.len() {
            let suffix = parts[parts.len() - n..].join(".");
            let clashes = names.iter().any(|(other, _)| {
                *other != name && {
                    let o: Vec<&str> = other.split('.').collect();
                    o.len() >= n && o[o.len() - n..].join(".") == suffix
                }
            });
            if !clashes {
                return suffix;
            }
        }
        name.to_string()
    }
}

/// The standard P4Info id bf-p4c gives the TNA extern `name` (its name
/// without the pipe), and the Tofino id it derives it from.
///
/// bf-p4c (p4c `backends/tofino/bf-p4c/control-plane`) adds TNA externs to
/// the symbol table without their `@id`, so they get p4c's hashed id of
/// `pipe.<name>` under the Tofino prefix (`taken`: the ids of that prefix
/// already given, in name order); `--p4runtime-force-std-externs` then keeps
/// the low 24 bits under the standard prefix.
pub fn tna_extern_id(tna_prefix: u32, std_prefix: u32, name: &str, taken: &[u32]) -> (u32, u32) {
    let tna = hashed_id(tna_prefix, &format!("{TNA_PIPE}.{name}"), taken);
    ((std_prefix << 24) | (tna & 0x00ff_ffff), tna)
}

/// The name of a domain's digest struct.
pub fn digest_struct(d: &DomainLayout) -> String {
    format!("trace_digest_{}_t", d.tag)
}

/// The members of a domain's digest struct, in declaration order.
pub fn digest_members(d: &DomainLayout, target: Target) -> Vec<(&'static str, u32)> {
    digest_members_for(d.data_len(), target)
}

/// The members of the digest struct of a domain with `data_len` bytes of
/// pre-allocated node data, in declaration order.
///
/// TNA: every member a whole number of bytes, so that bf-p4c, which keeps
/// a large digest's byte-sized fields in exactly their own containers
/// (`parde_phv_constraints.cpp`), sends exactly the members' bytes; and each
/// copied from a header field in a container of its own size (a Tofino
/// action moves data between containers of one size): `trace_type` is the
/// wire word (type and reserved byte), `flags` and `rem_len` are
/// zero-extended to the 16 bits of the trace header word they sit in.
pub fn digest_members_for(data_len: u32, target: Target) -> Vec<(&'static str, u32)> {
    let [trace_type, flags, rem_len, has_context] = match target {
        Target::V1Model => [24, 4, 7, 1],
        Target::Tna => [32, 16, 16, 8],
    };
    vec![
        ("namespace_id", 16),
        ("trace_type", trace_type),
        ("flags", flags),
        ("rem_len", rem_len),
        ("has_context", has_context),
        ("trace_id", 128),
        ("span_id", 64),
        ("node_data", data_len * 8),
    ]
}

/// bf-p4c's limit on a learning digest (`Device::maxDigestSizeInBytes`,
/// Tofino 1 and 2), the digest-type selector included.
pub const MAX_LEARNING_QUANTA_BYTES: u32 = 48;

/// The largest TNA digest type: `ig_dprsr_md.digest_type` is 3 bits and 0
/// means "no digest". A TNA program's digest type is the domain's number
/// (`meta.domain`, [`DomainLayout::number`]), so a Tofino reports only its
/// first 7 domains.
pub const MAX_TNA_DIGEST_TYPE: u8 = 7;

/// The learning quanta of a digest whose members are `widths` bits wide, as
/// bf-p4c counts it after PHV allocation (p4c `backends/tofino/bf-p4c/phv/
/// validate_allocation.cpp`: the bytes of the containers the digest reads,
/// the one-byte digest-type selector included). Exact for members of whole
/// bytes, which bf-p4c keeps in containers of exactly their size once a
/// digest reaches 43 bytes (9/10 of the limit, `parde_phv_constraints.cpp`),
/// as every member of a TNA digest is ([`digest_members_for`]).
pub fn learning_quanta_bytes(widths: impl IntoIterator<Item = u32>) -> u32 {
    1 + widths.into_iter().map(|bits| bits.div_ceil(8)).sum::<u32>()
}

/// The learning quanta of the TNA digest of a domain with `data_len` bytes
/// of node data (36 + `data_len`): what [`MAX_LEARNING_QUANTA_BYTES`] limits.
pub fn tna_digest_bytes(data_len: u32) -> u32 {
    learning_quanta_bytes(
        digest_members_for(data_len, Target::Tna)
            .into_iter()
            .map(|(_, bits)| bits),
    )
}

/// Bob Jenkins' one-at-a-time hash, as p4c uses it for ids without `@id`.
pub fn jenkins_one_at_a_time(key: &[u8]) -> u32 {
    let mut hash: u32 = 0;
    for &b in key {
        hash = hash.wrapping_add(u32::from(b));
        hash = hash.wrapping_add(hash << 10);
        hash ^= hash >> 6;
    }
    hash = hash.wrapping_add(hash << 3);
    hash ^= hash >> 11;
    hash = hash.wrapping_add(hash << 15);
    hash
}

/// The id p4c gives an object without `@id`: the prefix and the low 24 bits
/// of the name's hash, probing linearly past ids already taken.
pub fn hashed_id(prefix: u32, name: &str, taken: &[u32]) -> u32 {
    let mut value = jenkins_one_at_a_time(name.as_bytes());
    loop {
        let id = (prefix << 24) | (value & 0x00ff_ffff);
        if !taken.contains(&id) {
            return id;
        }
        value = value.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jenkins_matches_p4c_for_no_action() {
        // p4c gives the built-in NoAction the id 21257015 in every v1model
        // P4Info (e.g. the p4lang tutorials'): 0x01 prefix, hash of "NoAction".
        assert_eq!(hashed_id(PREFIX_ACTION, "NoAction", &[]), 21257015);
    }

    #[test]
    fn probing_skips_taken_ids() {
        let first = hashed_id(PREFIX_DIGEST, "x", &[]);
        assert_eq!(hashed_id(PREFIX_DIGEST, "x", &[first]), first + 1);
    }

    #[test]
    fn bmv2_route_tables_have_a_floor_and_double_the_routes() {
        assert_eq!(ipv6_route_size(Target::V1Model, 0), BMV2_IPV6_ROUTE_FLOOR);
        assert_eq!(ipv6_route_size(Target::V1Model, 8192), 16_384);
        assert_eq!(ipv6_route_size(Target::V1Model, 8193), 32_768);
        assert_eq!(ipv6_route_size(Target::V1Model, usize::MAX), u32::MAX);
        assert_eq!(ipv6_route_size(Target::Tna, 100_000), IPV6_ROUTE_SIZE);
    }

    #[test]
    fn tna_externs_are_numbered_from_their_names() {
        let (id, tna) = tna_extern_id(
            PREFIX_TNA_REGISTER,
            PREFIX_REGISTER,
            "CltIngress.sample_count",
            &[],
        );
        assert_eq!(tna >> 24, PREFIX_TNA_REGISTER);
        assert_eq!(id >> 24, PREFIX_REGISTER);
        assert_eq!(id & 0xff_ffff, tna & 0xff_ffff);
        assert_eq!(
            tna,
            hashed_id(PREFIX_TNA_REGISTER, "pipe.CltIngress.sample_count", &[])
        );
        let o = Objects::new(Target::Tna, &[], 1, 0);
        assert_eq!(o.registers[0].id, id);
        assert_eq!(o.registers[0].name, "CltIngress.sample_count");
        assert_eq!(o.tables[0].name, "CltIngress.ipv6_route");
        assert_eq!(o.actions[0].name, "CltIngress.drop");
    }

    #[test]
    fn ids_carry_their_prefix() {
        let o = Objects::new(Target::V1Model, &[], 1, 0);
        for t in &o.tables {
            assert_eq!(t.id >> 24, PREFIX_TABLE);
        }
        for a in &o.actions {
            assert_eq!(a.id >> 24, PREFIX_ACTION);
        }
        for r in &o.registers {
            assert_eq!(r.id >> 24, PREFIX_REGISTER);
        }
        assert_eq!(o.alias("CltIngress.ipv6_route"), "ipv6_route");
    }

    #[test]
    fn a_tna_digest_is_36_bytes_plus_the_node_data() {
        assert_eq!(learning_quanta_bytes([3, 8, 9]), 1 + 1 + 1 + 2);
        assert_eq!(tna_digest_bytes(0), 36);
        // The most node data a Tofino can report: 12 bytes (3 x 4).
        assert_eq!(tna_digest_bytes(12), MAX_LEARNING_QUANTA_BYTES);
        assert!(tna_digest_bytes(16) > MAX_LEARNING_QUANTA_BYTES);
        // Whole bytes only on TNA, v1model's widths unchanged.
        assert!(
            digest_members_for(4, Target::Tna)
                .iter()
                .all(|(_, bits)| bits % 8 == 0)
        );
        assert_eq!(digest_members_for(4, Target::V1Model)[2], ("flags", 4));
    }
}
