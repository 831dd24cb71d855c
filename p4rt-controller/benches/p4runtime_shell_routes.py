"""Installs N IPv6 routes with p4runtime-shell (one Write per entry, its
only mode) and prints the elapsed seconds. Driven by the vs_p4runtime_shell
bench, which starts the server and compares with clt-controller.

usage: p4runtime_shell_routes.py ADDR P4INFO_TXT DEVICE_CONFIG N
"""
import sys
import time

import p4runtime_sh.shell as sh

addr, p4info, device_config, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sh.setup(device_id=1, grpc_addr=addr, election_id=(0, 1),
         config=sh.FwdPipeConfig(p4info, device_config), verbose=False)
start = time.perf_counter()
for i in range(n):
    te = sh.TableEntry("ingress.ipv6_lpm")(action="ingress.set_nexthop")
    te.match["hdr.ipv6.dst_addr"] = "2001:db8:%x:%x::/64" % (i >> 16, i & 0xFFFF)
    te.action["port"] = str(i % 8 + 1)
    te.action["dmac"] = "02:00:00:00:00:%02x" % (i % 200 + 1)
    te.insert()
elapsed = time.perf_counter() - start
sh.teardown()
print(f"{elapsed:.6f}")
