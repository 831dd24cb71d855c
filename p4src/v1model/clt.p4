// CLT for bmv2 simple_switch (v1model): IPv6 forwarding, IOAM encapsulation,
// transit and decapsulation for the domains of one node.
//
// `cltc` specialises this file for one node: lines `// @clt:NAME` are replaced
// by generated code (p4src/README.md lists them). P4Runtime ids are fixed by
// @id annotations; the P4Info that cltc writes beside the program uses the same.

#include <core.p4>
#include <v1model.p4>

// @clt:common

// bmv2 counts time in microseconds since the switch started. IOAM timestamps
// (RFC 9197, POSIX format as Linux writes it) are seconds and microseconds:
// the division by 10^6 is a multiplication by ceil(2^64 / 10^6) and a shift,
// exact for any time below 4.1 * 10^13 us (475 days) of switch uptime.
const bit<96> USEC_PER_SEC_RECIPROCAL = 96w18446744073710;

void usec_to_posix(in bit<48> usec, out bit<32> secs, out bit<32> frac) {
    bit<96> scaled = ((bit<96>) usec) * USEC_PER_SEC_RECIPROCAL;
    bit<48> whole = (bit<48>) (scaled >> 64);
    secs = (bit<32>) whole;
    frac = (bit<32>) (usec - whole * 48w1000000);
}

parser CltV1Parser(packet_in pkt,
                   out headers_t hdr,
                   inout clt_meta_t meta,
                   inout standard_metadata_t standard_metadata) {
    CltParser() clt_parser;

    // `hdr` is an `out` parameter (every header invalid) and CltParser takes
    // it `inout`, as TNA's egress parser needs; p4c sees the copy-in as a
    // read of uninitialised fields, but CltParser extracts before it reads.
    @noWarn("uninitialized-use")
    state start {
        clt_parser.apply(pkt, hdr, meta);
        transition accept;
    }
}

control CltVerifyChecksum(inout headers_t hdr, inout clt_meta_t meta) {
    apply { }
}

control CltIngress(inout headers_t hdr,
                   inout clt_meta_t meta,
                   inout standard_metadata_t standard_metadata) {
    // One k-of-n sampling counter per encapsulating policy.
    @id(0x16000001)
    register<bit<32>>(SAMPLE_SLOTS) sample_count;

    @id(0x01000001)
    action drop() {
        mark_to_drop(standard_metadata);
    }

    @id(0x01000002)
    action route(port_t port, mac_addr_t src_mac, mac_addr_t dst_mac) {
        standard_metadata.egress_spec = port;
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
        size = IPV6_ROUTE_SIZE;
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

    // Policy classification: which flows this node encapsulates, fills or
    // decapsulates. `domain` is 0 for packets without a CLT trace (encap
    // entries) and the domain's number for packets that carry one.
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
            return;
        }
        if (!ipv6_route.apply().hit) {
            return;
        }
        ioam_policy.apply();

        if (meta.role == ROLE_ENCAP && !hdr.hbh.isValid()) {
            // k of every n: the first k packets of each round of n.
            bit<32> count;
            sample_count.read(count, meta.sample_slot);
            bool sampled = count < meta.sample_k;
            if (count + 32w1 >= meta.sample_n) {
                count = 32w0;
            } else {
                count = count + 32w1;
            }
            sample_count.write(meta.sample_slot, count);
            if (sampled) {
                // @clt:encap_dispatch
            }
        } else if (meta.role != ROLE_DECAP && meta.domain != 8w0) {
            // Like a Linux transit node: every packet of a namespace this
            // node knows gets its entry, whether or not a policy named
            // the flow (reverse traffic, other ports of a marked socket).
            // An encap entry never matches here: it keys on domain 0.
            meta.fill = 1w1;
        } else if (meta.role == ROLE_DECAP && meta.domain != 8w0) {
            // The last hop fills its entry with what ingress knows (no queue
            // yet, like a Linux destination), reports the trace and removes it.
            hop_fields_t f;
            f.hop_limit = hdr.ipv6.hop_limit;
            f.ingress_if = if_id(standard_metadata.ingress_port);
            f.egress_if = if_id(meta.egress_port);
            usec_to_posix(standard_metadata.ingress_global_timestamp, f.ts_secs, f.ts_frac);
            f.transit_delay = U32_UNAVAILABLE;
            f.queue_depth = U32_UNAVAILABLE;
            // @clt:decap_dispatch
        }
    }
}

control CltEgress(inout headers_t hdr,
                  inout clt_meta_t meta,
                  inout standard_metadata_t standard_metadata) {
    // @clt:egress_instances

    apply {
        if (meta.fill == 1w1) {
            hop_fields_t f;
            f.hop_limit = hdr.ipv6.hop_limit;
            f.ingress_if = if_id(standard_metadata.ingress_port);
            f.egress_if = if_id(standard_metadata.egress_port);
            usec_to_posix(standard_metadata.ingress_global_timestamp, f.ts_secs, f.ts_frac);
            // Time from ingress to egress (pipeline and queue), us -> ns.
            f.transit_delay = ((bit<32>) (standard_metadata.egress_global_timestamp
                                          - standard_metadata.ingress_global_timestamp)) * 32w1000;
            // bmv2 counts packets in the egress queue (Linux: bytes in the qdisc).
            f.queue_depth = (bit<32>) standard_metadata.deq_qdepth;
            // @clt:fill_dispatch
        }
    }
}

control CltComputeChecksum(inout headers_t hdr, inout clt_meta_t meta) {
    apply { }
}

control CltDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        // Every valid header, in the order of headers_t.
        pkt.emit(hdr);
    }
}

V1Switch(CltV1Parser(),
         CltVerifyChecksum(),
         CltIngress(),
         CltEgress(),
         CltComputeChecksum(),
         CltDeparser()) main;
