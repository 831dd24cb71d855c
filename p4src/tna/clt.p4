// CLT for Tofino (TNA): IPv6 forwarding, IOAM encapsulation, transit and
// decapsulation for the domains of one node.
//
// The same pipeline as p4src/v1model/clt.p4, over TNA's intrinsic metadata:
// ingress decides and bridges its decision to egress, egress fills the entry.
// `cltc` specialises this file for one node: lines `// @clt:NAME` are replaced
// by generated code (p4src/README.md lists them).
//
// Compiled with bf-p4c (Tofino 1) and p4test by bmv2-tests/tests/tna.rs;
// p4src/README.md ("How TNA differs") says why it is shaped as it is.

#include <core.p4>
#include <tna.p4>

// What ingress tells egress, in front of the packet: the domain and entry
// whose egress-only fields (queue depth, transit delay) egress writes, and
// the layout, so that the egress parser selects on nothing but these two
// bytes and reads no further than that entry (Tofino 1's egress parser
// reads at most 160 bytes).
header tna_bridge_h {
    bit<8> domain;  // 0: egress changes nothing
    bit<7> entry;   // the entry's index, in wire order
    bit<1> clt;     // 1: the CLT option comes first
}

// For a transit delay: ingress's global timestamp, low 32 bits.
header tna_tstamp_h {
    bit<32> ingress_tstamp;
}

// @clt:common

// `out` metadata: the parser sets the scalars the ingress reads; the digest
// structs are written only by DecapDn, before the deparser packs them.
//
// The states of CltParser (p4src/common), rewritten for Tofino's parser:
// `meta.l4_proto` is set by the ingress control (a parser may assign a
// field once), and the choice to parse the TCP/UDP ports is made on
// `hbh.next_hdr` before the trace (state suffix `_l4`).
@noWarn("uninitialized-out-param")
parser CltIngressParser(packet_in pkt,
                        out headers_t hdr,
                        out clt_meta_t meta,
                        out ingress_intrinsic_metadata_t ig_intr_md) {
    state start {
        pkt.extract(ig_intr_md);
        // No resubmit: the port metadata (PORT_METADATA_SIZE) always follows.
        pkt.advance(PORT_METADATA_SIZE);
        meta.domain = 8w0;
        meta.l4_src_port = 16w0;
        meta.l4_dst_port = 16w0;
        meta.role = ROLE_NONE;
        meta.fill = 1w0;
        meta.encap_domain = 8w0;
        meta.sample_slot = 32w0;
        meta.sample_k = 32w0;
        meta.sample_n = 32w0;
        meta.egress_port = 9w0;
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV6 : parse_ipv6;
            default        : accept;
        }
    }

    state parse_ipv6 {
        pkt.extract(hdr.ipv6);
        transition select(hdr.ipv6.next_hdr) {
            IPPROTO_HOPOPTS : parse_hbh;
            IPPROTO_TCP     : parse_l4;
            IPPROTO_UDP     : parse_l4;
            default         : accept;
        }
    }

    // PadN(2) then an IOAM option, or the CLT option (24 bits of lookahead,
    // as CltParser's masks), and whether TCP or UDP follows the header.
    state parse_hbh {
        pkt.extract(hdr.hbh);
        transition select(hdr.hbh.next_hdr, pkt.lookahead<bit<24>>()) {
            (IPPROTO_TCP, IPV6_OPT_PADN ++ 8w0 ++ IPV6_OPT_IOAM) : parse_ioam_plain_l4;
            (IPPROTO_UDP, IPV6_OPT_PADN ++ 8w0 ++ IPV6_OPT_IOAM) : parse_ioam_plain_l4;
            (IPPROTO_TCP, IPV6_OPT_CLT ++ CLT_OPT_DATA_LEN ++ 8w0 &&& 24w0xffff00) : parse_clt_l4;
            (IPPROTO_UDP, IPV6_OPT_CLT ++ CLT_OPT_DATA_LEN ++ 8w0 &&& 24w0xffff00) : parse_clt_l4;
            (_, IPV6_OPT_PADN ++ 8w0 ++ IPV6_OPT_IOAM) : parse_ioam_plain;
            (_, IPV6_OPT_CLT ++ CLT_OPT_DATA_LEN ++ 8w0 &&& 24w0xffff00) : parse_clt;
            default : accept;
        }
    }

    // @clt:tna_ingress_states

    state parse_l4 {
        pkt.extract(hdr.l4);
        meta.l4_src_port = hdr.l4.src_port;
        meta.l4_dst_port = hdr.l4.dst_port;
        transition accept;
    }
}

control CltIngress(inout headers_t hdr,
                   inout clt_meta_t meta,
                   in ingress_intrinsic_metadata_t ig_intr_md,
                   in ingress_intrinsic_metadata_from_parser_t ig_prsr_md,
                   inout ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md,
                   inout ingress_intrinsic_metadata_for_tm_t ig_tm_md) {
    // One k-of-n sampling counter per encapsulating policy. No @id: bf-p4c
    // ignores @id on TNA externs and derives the id from the name
    // (cltc/src/backend/p4/objects.rs, `tna_extern_id`).
    Register<bit<32>, bit<32>>(SAMPLE_SLOTS, 32w0) sample_count;

    // k of every n: the first k packets of each round of n. One stateful ALU:
    // two conditions (register - PHV, register - PHV + constant), two
    // predicated updates of the register, a predicated 1-bit output.
    RegisterAction<bit<32>, bit<32>, bit<1>>(sample_count) sample_next = {
        void apply(inout bit<32> count, out bit<1> sampled) {
            if (count < meta.sample_k) {
                sampled = 1w1;
            } else {
                sampled = 1w0;
            }
            if (count + 32w1 >= meta.sample_n) {
                count = 32w0;
            } else {
                count = count + 32w1;
            }
        }
    };

    @id(0x01000001)
    action drop() {
        ig_dprsr_md.drop_ctl = 3w1;
    }

    @id(0x01000002)
    action route(port_t port, mac_addr_t src_mac, mac_addr_t dst_mac) {
        ig_tm_md.ucast_egress_port = port;
        meta.egress_port = port;
        hdr.ethernet.src_addr = src_mac;
        hdr.ethernet.dst_addr = dst_mac;
        hdr.ipv6.hop_limit = hdr.ipv6.hop_limit - 8w1;
    }

    // IPv6 forwarding: routes computed by cltc from the links.
    @id(0x02000001)
    table ipv6_route {
        key = {
            hdr.ipv6.dst_addr : lpm @name("dst_addr");
        }
        actions = {
            route;
            @defaultonly drop;
        }
        default_action = drop();
        size = 4096;
    }

    @id(0x01000003)
    action no_ioam() {
        meta.role = ROLE_NONE;
    }

    @id(0x01000004)
    action ioam_encap(bit<8> domain, bit<32> slot, bit<32> k, bit<32> n) {
        meta.role = ROLE_ENCAP;
        meta.encap_domain = domain;
        meta.sample_slot = slot;
        meta.sample_k = k;
        meta.sample_n = n;
    }

    @id(0x01000005)
    action ioam_transit() {
        meta.role = ROLE_TRANSIT;
    }

    @id(0x01000006)
    action ioam_decap() {
        meta.role = ROLE_DECAP;
    }

    // Policy classification, as on v1model.
    @id(0x02000002)
    table ioam_policy {
        key = {
            meta.domain       : exact   @name("domain");
            hdr.ipv6.dst_addr : ternary @name("dst_addr");
            hdr.ipv6.src_addr : ternary @name("src_addr");
            meta.l4_proto     : ternary @name("proto");
            meta.l4_dst_port  : ternary @name("dst_port");
            meta.l4_src_port  : ternary @name("src_port");
        }
        actions = {
            ioam_encap;
            ioam_transit;
            ioam_decap;
            @defaultonly no_ioam;
        }
        default_action = no_ioam();
        size = 1024;
    }

    // @clt:ingress_instances

    apply {
        hdr.tna_bridge.setValid();
        hdr.tna_bridge.domain = 8w0;
        hdr.tna_bridge.entry = 7w0;
        hdr.tna_bridge.clt = 1w0;
        if (hdr.clt.isValid()) {
            hdr.tna_bridge.clt = 1w1;
        }
        if (!hdr.ipv6.isValid() || hdr.ipv6.hop_limit <= 8w1) {
            drop();
        } else if (ipv6_route.apply().hit) {
            // The Hop-by-Hop header's length (the parser matched the rest).
            // @clt:tna_length_check
            if (hdr.hbh.isValid()) {
                meta.l4_proto = hdr.hbh.next_hdr;
            } else {
                meta.l4_proto = hdr.ipv6.next_hdr;
            }
            ioam_policy.apply();

            // This hop's values as ingress knows them. Tofino has no wall
            // clock in the data plane: no timestamps. The queue depth and
            // transit delay are egress's: it writes them where its parser
            // reaches the entry (tna_bridge), else they stay all-ones.
            hop_fields_t f;
            f.hop_limit = hdr.ipv6.hop_limit;
            f.ingress_if = if_id(ig_intr_md.ingress_port);
            f.egress_if = if_id(meta.egress_port);
            f.ts_secs = U32_UNAVAILABLE;
            f.ts_frac = U32_UNAVAILABLE;
            f.transit_delay = U32_UNAVAILABLE;
            f.queue_depth = U32_UNAVAILABLE;

            if (meta.role == ROLE_DECAP && meta.domain != 8w0) {
                // The last hop fills its entry, reports the trace (digest,
                // in the deparser) and removes it.
                // @clt:decap_dispatch
            } else {
                if (meta.role == ROLE_ENCAP && !hdr.hbh.isValid()) {
                    bit<1> sampled = sample_next.execute(meta.sample_slot);
                    if (sampled == 1w1) {
                        // @clt:encap_dispatch
                    }
                } else if (meta.domain != 8w0) {
                    // As on v1model and Linux: every packet of a namespace
                    // this node knows gets its entry, whether or not a
                    // policy named the flow. An encap entry never matches
                    // here: it keys on domain 0.
                    meta.fill = 1w1;
                }
                if (meta.fill == 1w1) {
                    // @clt:tna_fill_dispatch
                }
            }
            // @clt:tna_bridge_tstamp
        }
    }
}

control CltIngressDeparser(packet_out pkt,
                           inout headers_t hdr,
                           in clt_meta_t meta,
                           in ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md) {
    // @clt:tna_digests

    apply {
        // @clt:tna_digest_pack
        pkt.emit(hdr.tna_bridge);
        pkt.emit(hdr.tna_tstamp);
        // @clt:tna_emit
    }
}

// Only what egress rewrites: the bridge header says which entry of which
// domain, in which layout; the headers up to that entry are extracted, the
// rest of the packet is payload. Every other packet: nothing after the
// bridge header.
@noWarn("uninitialized-out-param")
parser CltEgressParser(packet_in pkt,
                       out headers_t hdr,
                       out clt_meta_t meta,
                       out egress_intrinsic_metadata_t eg_intr_md) {
    state start {
        pkt.extract(eg_intr_md);
        pkt.extract(hdr.tna_bridge);
        transition select(hdr.tna_bridge.domain, hdr.tna_bridge.clt, hdr.tna_bridge.entry) {
            // @clt:tna_egress_select
            default : accept;
        }
    }

    // @clt:tna_egress_states
}

control CltEgress(inout headers_t hdr,
                  inout clt_meta_t meta,
                  in egress_intrinsic_metadata_t eg_intr_md,
                  in egress_intrinsic_metadata_from_parser_t eg_prsr_md,
                  inout egress_intrinsic_metadata_for_deparser_t eg_dprsr_md,
                  inout egress_intrinsic_metadata_for_output_port_t eg_oport_md) {
    // @clt:egress_instances

    apply {
        if (hdr.ioam_trace.isValid()) {
            hop_fields_t f;
            f.hop_limit = hdr.ipv6.hop_limit;
            f.ingress_if = 16w0xffff;
            f.egress_if = if_id(eg_intr_md.egress_port);
            f.ts_secs = U32_UNAVAILABLE;
            f.ts_frac = U32_UNAVAILABLE;
            // Nanoseconds from the ingress parser to the egress parser (queue
            // included): two readings of the global 48-bit nanosecond clock,
            // subtracted in their low 32 bits (modulo 2^32; no 48-bit
            // arithmetic in a Tofino action).
            f.transit_delay = eg_prsr_md.global_tstamp[31:0] - hdr.tna_tstamp.ingress_tstamp;
            // deq_qdepth: 19 bits, in 80-byte cells on Tofino 1 (Linux: bytes
            // in the qdisc).
            f.queue_depth = (bit<32>) eg_intr_md.deq_qdepth;
            // @clt:tna_patch_dispatch
        }
        hdr.tna_bridge.setInvalid();
        hdr.tna_tstamp.setInvalid();
    }
}

control CltEgressDeparser(packet_out pkt,
                          inout headers_t hdr,
                          in clt_meta_t meta,
                          in egress_intrinsic_metadata_for_deparser_t eg_dprsr_md) {
    apply {
        // @clt:tna_emit
    }
}

Pipeline(CltIngressParser(),
         CltIngress(),
         CltIngressDeparser(),
         CltEgressParser(),
         CltEgress(),
         CltEgressDeparser()) pipe;

Switch(pipe) main;
