// CLT for Tofino (TNA): IPv6 forwarding, IOAM encapsulation, transit and
// decapsulation for the domains of one node.
//
// The same pipeline as p4src/v1model/clt.p4, over TNA's intrinsic metadata:
// ingress decides and bridges its decision to egress, egress fills the entry.
// `cltc` specialises this file for one node: lines `// @clt:NAME` are replaced
// by generated code (p4src/README.md lists them).
//
// Checked with p4c's front end (p4test) against Intel's published TNA headers
// (bmv2-tests/tests/tna.rs); never compiled with bf-p4c. p4src/README.md
// ("How TNA differs") lists what bf-p4c would check beyond that.

#include <core.p4>
#include <tna.p4>

// @clt:common

// `out` metadata: the parser sets every scalar; the digest structs are written
// only by DecapDn, before the deparser packs them, so p4c's "may be
// uninitialized" about `meta` is about fields nothing reads unset.
@noWarn("uninitialized-out-param")
parser CltIngressParser(packet_in pkt,
                        out headers_t hdr,
                        out clt_meta_t meta,
                        out ingress_intrinsic_metadata_t ig_intr_md) {
    CltParser() clt_parser;

    // CltParser takes `hdr` inout (the egress parser has extracted the bridge
    // header first): p4c sees the copy-in as a read of the invalid headers.
    @noWarn("uninitialized-use")
    state start {
        pkt.extract(ig_intr_md);
        // No resubmit: the port metadata (PORT_METADATA_SIZE) always follows.
        pkt.advance(PORT_METADATA_SIZE);
        meta.domain = 8w0;
        meta.l4_proto = 8w0;
        meta.l4_src_port = 16w0;
        meta.l4_dst_port = 16w0;
        meta.role = ROLE_NONE;
        meta.fill = 1w0;
        meta.encap_domain = 8w0;
        meta.sample_slot = 32w0;
        meta.sample_k = 32w0;
        meta.sample_n = 32w0;
        meta.egress_port = 9w0;
        clt_parser.apply(pkt, hdr, meta);
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
        if (!hdr.ipv6.isValid() || hdr.ipv6.hop_limit <= 8w1) {
            drop();
        } else if (ipv6_route.apply().hit) {
            ioam_policy.apply();

            if (meta.role == ROLE_ENCAP && !hdr.hbh.isValid()) {
                bit<1> sampled = sample_next.execute(meta.sample_slot);
                if (sampled == 1w1) {
                    // @clt:encap_dispatch
                }
            } else if (meta.role == ROLE_TRANSIT && meta.domain != 8w0) {
                meta.fill = 1w1;
            } else if (meta.role == ROLE_DECAP && meta.domain != 8w0) {
                // The last hop fills its entry with what ingress knows, reports
                // the trace (digest, in the deparser) and removes it. Tofino
                // has no wall clock in the data plane: no timestamps.
                hop_fields_t f;
                f.hop_limit = hdr.ipv6.hop_limit;
                f.ingress_if = if_id(ig_intr_md.ingress_port);
                f.egress_if = if_id(meta.egress_port);
                f.ts_secs = U32_UNAVAILABLE;
                f.ts_frac = U32_UNAVAILABLE;
                f.transit_delay = U32_UNAVAILABLE;
                f.queue_depth = U32_UNAVAILABLE;
                // @clt:decap_dispatch
            }
        }

        hdr.bridge.setValid();
        hdr.bridge.domain = meta.domain;
        hdr.bridge._pad = 7w0;
        hdr.bridge.fill = meta.fill;
        hdr.bridge.ingress_if = if_id(ig_intr_md.ingress_port);
        // The global timestamp, not ingress_mac_tstamp: egress subtracts it
        // from its own global timestamp, the same counter.
        hdr.bridge.ingress_tstamp = ig_prsr_md.global_tstamp;
    }
}

control CltIngressDeparser(packet_out pkt,
                           inout headers_t hdr,
                           in clt_meta_t meta,
                           in ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md) {
    // @clt:tna_digests

    apply {
        // @clt:tna_digest_pack
        pkt.emit(hdr);
    }
}

@noWarn("uninitialized-out-param")
parser CltEgressParser(packet_in pkt,
                       out headers_t hdr,
                       out clt_meta_t meta,
                       out egress_intrinsic_metadata_t eg_intr_md) {
    CltParser() clt_parser;

    @noWarn("uninitialized-use")
    state start {
        pkt.extract(eg_intr_md);
        pkt.extract(hdr.bridge);
        meta.domain = 8w0;
        meta.l4_proto = 8w0;
        meta.l4_src_port = 16w0;
        meta.l4_dst_port = 16w0;
        meta.role = ROLE_NONE;
        meta.fill = hdr.bridge.fill;
        meta.encap_domain = 8w0;
        meta.sample_slot = 32w0;
        meta.sample_k = 32w0;
        meta.sample_n = 32w0;
        meta.egress_port = 9w0;
        clt_parser.apply(pkt, hdr, meta);
        transition accept;
    }
}

control CltEgress(inout headers_t hdr,
                  inout clt_meta_t meta,
                  in egress_intrinsic_metadata_t eg_intr_md,
                  in egress_intrinsic_metadata_from_parser_t eg_prsr_md,
                  inout egress_intrinsic_metadata_for_deparser_t eg_dprsr_md,
                  inout egress_intrinsic_metadata_for_output_port_t eg_oport_md) {
    // @clt:egress_instances

    apply {
        if (meta.fill == 1w1 && meta.domain != 8w0) {
            hop_fields_t f;
            f.hop_limit = hdr.ipv6.hop_limit;
            f.ingress_if = hdr.bridge.ingress_if;
            f.egress_if = if_id(eg_intr_md.egress_port);
            f.ts_secs = U32_UNAVAILABLE;
            f.ts_frac = U32_UNAVAILABLE;
            // Nanoseconds from the ingress parser to the egress parser (queue
            // included): two readings of the global 48-bit nanosecond clock,
            // subtracted in their low 32 bits (modulo 2^32; no 48-bit
            // arithmetic in a Tofino action).
            f.transit_delay = eg_prsr_md.global_tstamp[31:0] - hdr.bridge.ingress_tstamp[31:0];
            // deq_qdepth: 19 bits, in 80-byte cells on Tofino 1 (Linux: bytes
            // in the qdisc).
            f.queue_depth = (bit<32>) eg_intr_md.deq_qdepth;
            // @clt:fill_dispatch
        }
        hdr.bridge.setInvalid();
    }
}

control CltEgressDeparser(packet_out pkt,
                          inout headers_t hdr,
                          in clt_meta_t meta,
                          in egress_intrinsic_metadata_for_deparser_t eg_dprsr_md) {
    apply {
        pkt.emit(hdr);
    }
}

Pipeline(CltIngressParser(),
         CltIngress(),
         CltIngressDeparser(),
         CltEgressParser(),
         CltEgress(),
         CltEgressDeparser()) pipe;

Switch(pipe) main;
