"""Installs N IPv6 routes into a bmv2 switch with p4runtime-shell, then reads
them back. Driven by the install_routes bench, which starts the switch and
compares with clt-controller in the same run.

usage: p4runtime_shell_install.py ADDR P4INFO_TXTPB BMV2_JSON N BATCH SRC_MAC

BATCH 1 is the shell's own way, `TableEntry(...).insert()`: one Write per
entry. A larger BATCH builds the same entries with the shell's TableEntry and
sends them BATCH per WriteRequest through the shell's client, as its `Write`
command does with a file. Prints three lines: the seconds the install took
(building the entries included, setup and the read excluded), the
seconds of it spent building the entries in Python, then the number of
entries read back.
"""
import sys
import time

import p4runtime_sh.shell as sh
from p4.v1 import p4runtime_pb2

TABLE = "CltIngress.ipv6_route"
ACTION = "CltIngress.route"


def entry(i, src_mac):
    te = sh.TableEntry(TABLE)(action=ACTION)
    te.match["dst_addr"] = "2001:db8:%x:%x::/64" % (i >> 16, i & 0xFFFF)
    te.action["port"] = str(i % 2 + 1)
    te.action["src_mac"] = src_mac
    te.action["dst_mac"] = "02:00:00:00:%02x:%02x" % ((i >> 8) & 0xFF, i & 0xFF)
    return te


def main():
    addr, p4info, config = sys.argv[1], sys.argv[2], sys.argv[3]
    n, batch, src_mac = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    # verbose=False: a script does not want every match and param printed
    # as it is set (the interactive default).
    sh.setup(device_id=1, grpc_addr=addr, election_id=(0, 1),
             config=sh.FwdPipeConfig(p4info, config), verbose=False)
    try:
        building = 0.0
        start = time.perf_counter()
        if batch == 1:
            for i in range(n):
                t = time.perf_counter()
                te = entry(i, src_mac)
                building += time.perf_counter() - t
                te.insert()
        else:
            for first in range(0, n, batch):
                t = time.perf_counter()
                req = p4runtime_pb2.WriteRequest()
                for i in range(first, min(first + batch, n)):
                    update = req.updates.add()
                    update.type = p4runtime_pb2.Update.INSERT
                    update.entity.table_entry.CopyFrom(entry(i, src_mac).msg())
                building += time.perf_counter() - t
                sh.client.write(req)
        elapsed = time.perf_counter() - start
        read = sum(1 for _ in sh.TableEntry(TABLE).read())
    finally:
        sh.teardown()
    print(f"{elapsed:.6f}")
    print(f"{building:.6f}")
    print(read)


if __name__ == "__main__":
    main()
