#!/usr/bin/python3
"""Stand in for systemd's notify socket while benchmarking tenantd.

usage: notify-listen.py SOCKET OUTFILE [TIMEOUT]

Binds a datagram socket at SOCKET (what NOTIFY_SOCKET names), and when a
datagram carrying READY=1 arrives writes the wall-clock time of its arrival
(seconds, like bash's $EPOCHREALTIME) to OUTFILE. It then keeps draining
the socket until terminated, so later notifications are not refused.
Exits 1 if no READY=1 arrived within TIMEOUT seconds (default 60).
"""
import os
import signal
import socket
import sys
import time


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2])
    path, outfile = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) == 4 else 60.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    ready = False
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if not ready and left <= 0:
            print("notify-listen: no READY=1 within %gs" % timeout,
                  file=sys.stderr)
            sys.exit(1)
        sock.settimeout(None if ready else left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        now = time.time()
        if not ready and b"READY=1" in data.split(b"\n"):
            ready = True
            tmp = outfile + ".tmp"
            with open(tmp, "w") as f:
                f.write("%.6f\n" % now)
            os.rename(tmp, outfile)


if __name__ == "__main__":
    main()
