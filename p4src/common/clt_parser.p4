// CLT: the parser of the CLT Hop-by-Hop layouts (v1model).
//
// Part of p4src/common/clt_common.p4, at its `// @clt:common_parser`
// marker, for v1model; TNA's parsers (p4src/tna/clt.p4) are written for
// Tofino's parser instead. This comment, up to the first empty line, is
// not copied.

// Parses Ethernet, IPv6, the CLT Hop-by-Hop layout of this node's domains and
// the TCP/UDP ports. A Hop-by-Hop header of any other layout stops parsing:
// the packet is forwarded, its options untouched.
parser CltParser(packet_in pkt, inout headers_t hdr, inout clt_meta_t meta) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV6 : parse_ipv6;
            default        : accept;
        }
    }

    state parse_ipv6 {
        pkt.extract(hdr.ipv6);
        meta.l4_proto = hdr.ipv6.next_hdr;
        transition select(hdr.ipv6.next_hdr) {
            IPPROTO_HOPOPTS : parse_hbh;
            IPPROTO_TCP     : parse_l4;
            IPPROTO_UDP     : parse_l4;
            default         : accept;
        }
    }

    state parse_hbh {
        pkt.extract(hdr.hbh);
        meta.l4_proto = hdr.hbh.next_hdr;
        // PadN(2) then an IOAM option, or the CLT option. Every select here
        // matches at most 32 bits (Tofino's parser: one 16-bit and two 8-bit
        // match registers).
        transition select(pkt.lookahead<bit<32>>()) {
            32w0x01003100 &&& 32w0xffffff00 : parse_ioam_plain;
            IPV6_OPT_CLT ++ CLT_OPT_DATA_LEN ++ 16w0 &&& 32w0xffff0000 : parse_clt;
            default : accept;
        }
    }

    state parse_clt {
        pkt.extract(hdr.clt);
        // The IOAM pre-allocated trace option must follow.
        transition select(pkt.lookahead<bit<32>>()) {
            32w0x31000000 &&& 32w0xff0000ff : parse_ioam_clt;
            default                         : accept;
        }
    }

    state parse_ioam_plain {
        pkt.extract(hdr.lead_pad);
        pkt.extract(hdr.ioam_opt);
        // Only a pre-allocated trace (parse_clt checks it in its lookahead).
        transition select(hdr.ioam_opt.ioam_type) {
            IOAM_TYPE_PREALLOC : parse_trace_plain;
            default            : accept;
        }
    }

    // Namespace and option length here, the trace type in the domain's
    // `_type` state (a namespace is one domain's).
    state parse_trace_plain {
        pkt.extract(hdr.ioam_trace);
        transition select(hdr.ioam_trace.namespace_id, hdr.ioam_opt.opt_len) {
            // @clt:domain_select_plain
            default : accept;
        }
    }

    state parse_ioam_clt {
        pkt.extract(hdr.ioam_opt);
        pkt.extract(hdr.ioam_trace);
        transition select(hdr.ioam_trace.namespace_id, hdr.ioam_opt.opt_len) {
            // @clt:domain_select_clt
            default : accept;
        }
    }

    // @clt:domain_states

    state parse_upper_layer {
        transition select(hdr.hbh.next_hdr) {
            IPPROTO_TCP : parse_l4;
            IPPROTO_UDP : parse_l4;
            default     : accept;
        }
    }

    state parse_l4 {
        pkt.extract(hdr.l4);
        meta.l4_src_port = hdr.l4.src_port;
        meta.l4_dst_port = hdr.l4.dst_port;
        transition accept;
    }
}
