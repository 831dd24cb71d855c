// CLT: the architecture-neutral part of the P4 library.
//
// Everything here is shared by the v1model (bmv2) and TNA (Tofino) programs:
// header formats, the parser of the CLT Hop-by-Hop layout, and the per-domain
// controls that encapsulate, fill and decapsulate the IOAM trace. Lines of the
// form `// @clt:NAME` are replaced by `cltc` with code generated for one node
// (see p4src/README.md); everything else is copied unchanged.

typedef bit<9>   port_t;
typedef bit<48>  mac_addr_t;
typedef bit<128> ipv6_addr_t;

const bit<16> ETHERTYPE_IPV6  = 16w0x86dd;
const bit<8>  IPPROTO_HOPOPTS = 8w0;
const bit<8>  IPPROTO_TCP     = 8w6;
const bit<8>  IPPROTO_UDP     = 8w17;

const bit<8>  IPV6_OPT_PADN   = 8w0x01;
const bit<8>  IPV6_OPT_IOAM   = 8w0x31;  // RFC 9486: skip if unknown, may change en route
const bit<8>  IOAM_TYPE_PREALLOC = 8w0;   // RFC 9486: pre-allocated trace
const bit<8>  IPV6_OPT_CLT    = 8w0x1e;  // the CLT trace-context option (RFC 4727 experimental)
const bit<8>  CLT_OPT_DATA_LEN = 8w24;   // 16-byte trace id + 8-byte span id

const bit<4>  IOAM_FLAG_OVERFLOW = 4w0b1000;  // RFC 9197 section 4.4.1: the first flag bit
const bit<32> U32_UNAVAILABLE = 32w0xffffffff;  // RFC 9197: "field not available"

const bit<2>  ROLE_NONE    = 2w0;
const bit<2>  ROLE_ENCAP   = 2w1;
const bit<2>  ROLE_TRANSIT = 2w2;
const bit<2>  ROLE_DECAP   = 2w3;

// @clt:node_constants

header ethernet_h {
    mac_addr_t dst_addr;
    mac_addr_t src_addr;
    bit<16>    ether_type;
}

header ipv6_h {
    bit<4>      version;
    bit<8>      traffic_class;
    bit<20>     flow_label;
    bit<16>     payload_len;
    bit<8>      next_hdr;
    bit<8>      hop_limit;
    ipv6_addr_t src_addr;
    ipv6_addr_t dst_addr;
}

// The fixed part of the Hop-by-Hop options header (RFC 8200 section 4.3).
header hbh_h {
    bit<8> next_hdr;
    bit<8> hdr_ext_len;  // in 8-byte units, not counting the first 8 bytes
}

// PadN options of 2 and 4 bytes in total (RFC 8200 section 4.2).
header pad2_h {
    bit<8> opt_type;
    bit<8> opt_len;  // 0
}

header pad4_h {
    bit<8>  opt_type;
    bit<8>  opt_len;  // 2
    bit<16> zero;
}

// The IOAM option header (RFC 9486 section 4).
header ioam_opt_h {
    bit<8> opt_type;
    bit<8> opt_len;
    bit<8> reserved;
    bit<8> ioam_type;
}

// The pre-allocated trace option header (RFC 9197 section 4.4.1).
header ioam_trace_h {
    bit<16> namespace_id;
    bit<5>  node_len;    // 4-byte units of one node's fixed fields
    bit<4>  flags;       // bit 0 (the most significant): Overflow
    bit<7>  rem_len;     // 4-byte units still free before the filled entries
    bit<24> trace_type;
    bit<8>  reserved;
}

// The CLT trace-context option: the request's W3C trace and span ids.
header clt_opt_h {
    bit<8>   opt_type;
    bit<8>   opt_len;
    bit<128> trace_id;
    bit<64>  span_id;
}

// The first four bytes of TCP and UDP: the ports, for policy matching.
header l4_ports_h {
    bit<16> src_port;
    bit<16> dst_port;
}

// The values one hop records, gathered by the architecture-specific code from
// its intrinsic metadata; the per-domain Fill control writes the ones the
// domain's trace type asks for.
struct hop_fields_t {
    bit<8>  hop_limit;      // the packet's hop limit as it leaves this hop
    bit<16> ingress_if;
    bit<16> egress_if;
    bit<32> ts_secs;
    bit<32> ts_frac;        // microseconds, as Linux writes them
    bit<32> transit_delay;  // nanoseconds
    bit<32> queue_depth;
}

// @clt:node_headers

// @clt:digest_structs

// In wire order. A CLT Hop-by-Hop header is either plain IOAM:
//   hbh, lead_pad, ioam_opt, ioam_trace, node data, [tail_pad4]
// or carries the request's ids first (what the CLT socket API writes):
//   hbh, clt, ioam_opt, ioam_trace, node data, [tail_pad4]
// Both put the IOAM option at 4n; tail_pad4 pads to 8n when the node data is
// 8n+4 bytes long.
struct headers_t {
    ethernet_h   ethernet;
    ipv6_h       ipv6;
    hbh_h        hbh;
    pad2_h       lead_pad;
    clt_opt_h    clt;
    ioam_opt_h   ioam_opt;
    ioam_trace_h ioam_trace;
    // @clt:header_stacks
    pad4_h       tail_pad4;
    l4_ports_h   l4;
}

struct clt_meta_t {
    bit<8>  domain;        // 0: no CLT IOAM trace; i: the node's i-th domain
    bit<8>  l4_proto;      // the upper-layer protocol, after any Hop-by-Hop header
    bit<16> l4_src_port;
    bit<16> l4_dst_port;
    bit<2>  role;          // what ioam_policy decided (ROLE_*)
    bit<1>  fill;          // egress fills this hop's entry
    bit<8>  encap_domain;  // the domain to encapsulate into, for ROLE_ENCAP
    bit<32> sample_slot;   // k-of-n sampling state of the policy
    bit<32> sample_k;
    bit<32> sample_n;
    port_t  egress_port;
    // @clt:meta_digests
}

// @clt:common_parser

// @clt:domain_controls
