"""A --ready-cmd probe: exits 0 once the worker's own health port answers a TCP connect.

Usage: tcp_probe.py DIR. The worker (listen_fds_server.py with SERVER_PROBE_DIR=DIR) writes
its health port to DIR/<its pid>.port; corral gives the probe CORRAL_WORKER_PID. Every probe
also logs "pid id slot" to DIR/probes.log, so a test can see who was probed and how often.
"""
import os, socket, sys

d = sys.argv[1]
pid, wid, slot = (os.environ[k] for k in ("CORRAL_WORKER_PID", "CORRAL_WORKER_ID", "CORRAL_WORKER_SLOT"))
with open(os.path.join(d, "probes.log"), "a") as f:
    f.write("%s %s %s\n" % (pid, wid, slot))
try:
    with open(os.path.join(d, pid + ".port")) as f:
        port = int(f.read())
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
except (OSError, ValueError):
    sys.exit(1)
