"""Drain benchmark for log shipping: queue N records while Azure is
unreachable, restart tenantd pointed at the emulator (its own process) and
time the drain: records/s, tenantd's CPU seconds, bytes on the wire. In the
same run, references: the emulator's own ceiling with pre-made batches
(a Python client, keep-alive, 4 threads) and `gzip -6` of audit-shaped
JSON for the compression ratio."""
import gzip
import http.client
import json
import os
import pathlib
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zlib

TOP = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration"))
from conftest import Certs, to_yaml     # noqa: E402

TENANTD = os.environ.get("TENANTD_BIN", str(TOP / "tenantd"))
TENANTCTL = os.environ.get("TENANTCTL_BIN", str(TOP / "tenantctl"))
N = int(os.environ.get("SHIP_BENCH_RECORDS", "1000000"))
DCR = "dcr-00000000000000000000000000000001"


def ctl(sock, *args):
    r = subprocess.run([TENANTCTL, "-s", sock, "--json"] + list(args),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("tenantctl %s: %s" % (args, r.stderr))
    return json.loads(r.stdout)


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def audit_record(i):
    return {"TimeGenerated": "2026-11-29T11:46:37.%06dZ" % (i % 1000000),
            "RecordId": "41fe64fcee01a902-a%d" % i, "Seq": i, "Kind": "record",
            "Actor": "p_%026x" % random.getrandbits(100), "ActorRoles": "admin",
            "Action": random.choice(["settings.put", "settings.get", "events.list",
                                     "keys.rotate", "vault.put"]),
            "Target": "settings/site-%d/theme" % (i % 50), "Outcome": "ok",
            "Status": 200, "RequestId": "%016x-%x" % (random.getrandbits(64), i),
            "ClientApp": "0b8f2e3c-1d4a-4e5f-9a6b-7c8d9e0f1a2b",
            "Source": "10.1.%d.0/24" % (i % 8), "Details": {"bytes": i % 4096},
            "Hash": "%064x" % random.getrandbits(256)}


def gzip_reference():
    recs = [audit_record(i) for i in range(20000)]
    body = json.dumps(recs, separators=(",", ":")).encode()
    z6 = len(zlib.compress(body, 6))       # tenantd: zlib deflate level 6
    cli = len(subprocess.run(["gzip", "-6", "-c"], input=body,
                             capture_output=True).stdout)
    return len(body), z6, cli


def emulator_ceiling(url, ca, seconds=8):
    """Records/s the emulator accepts from pre-made gzip batches."""
    host, port = url[len("https://"):].split(":")
    ctx = ssl.create_default_context(cafile=ca)
    # a token from the IMDS double, as tenantd would get
    recs = [{"TimeGenerated": "2026-11-29T11:46:37.000000Z", "RecordId": "ref-%d" % i,
             "Kind": "test", "Level": "info", "Message": "log shipping test record",
             "Properties": {"n": i, "pad": ""}} for i in range(4500)]
    body = gzip.compress(json.dumps(recs, separators=(",", ":")).encode(), 6)
    count = [0]
    stop = time.monotonic() + seconds

    def worker(tok):
        c = http.client.HTTPSConnection(host, int(port), context=ctx)
        while time.monotonic() < stop:
            c.request("POST", "/dataCollectionRules/%s/streams/Custom-TenantdOps_CL"
                      "?api-version=2023-01-01" % DCR, body=body,
                      headers={"Authorization": "Bearer " + tok,
                               "Content-Type": "application/json",
                               "Content-Encoding": "gzip"})
            r = c.getresponse()
            r.read()
            if r.status == 204:
                count[0] += len(recs)
    return worker, count, seconds


def main():
    work = pathlib.Path(tempfile.mkdtemp(prefix="ship-bench."))
    certs = Certs(work / "certs")
    emu = subprocess.Popen([sys.executable, str(TOP / "tests/integration/azure_emulator.py"),
                            "--cert", str(certs.cert), "--key", str(certs.key), "--no-keep"],
                           stdout=subprocess.PIPE, text=True)
    ports = json.loads(emu.stdout.readline())
    sock = str(work / "ctl.sock")
    base = {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "state_dir": str(work / "state"),
            "listen": [{"address": "127.0.0.1:0", "tls": False}],
            "control": {"socket": sock}}
    ship = {"dcr_immutable_id": DCR, "ca_file": str(certs.ca), "health_interval": "0",
            "credential": {"type": "managed-identity", "imds_endpoint": ports["imds"]},
            "streams": {"ops": {"queue_limit": "2GiB"}}}
    conf = work / "tenantd.yaml"

    def start(endpoint):
        c = dict(base, log_shipping=dict(ship, endpoint=endpoint))
        conf.write_text(to_yaml(c) + "\n")
        p = subprocess.Popen([TENANTD, "-f", "-c", str(conf)], stderr=open(work / "err", "a"))
        for _ in range(200):
            if os.path.exists(sock):
                try:
                    ctl(sock, "shipping", "status")
                    return p
                except SystemExit:
                    pass
            time.sleep(0.05)
        raise SystemExit("tenantd did not start; see %s" % (work / "err"))

    # 1. queue N records while "Azure" is unreachable
    p = start("https://localhost:9")
    t0 = time.monotonic()
    ctl(sock, "shipping", "test", "-n", str(N))
    while ctl(sock, "shipping", "status")["streams"]["ops"]["queued"] < N:
        time.sleep(0.2)
    queue_s = time.monotonic() - t0
    p.terminate()
    p.wait()
    # 2. drain to the emulator
    p = start(ports["url"])
    cpu0, t0 = cpu_seconds(p.pid), time.monotonic()
    while True:
        st = ctl(sock, "shipping", "status")["streams"]["ops"]
        if st["queue_records"] == 0 and st["shipped"] >= N:
            break
        time.sleep(0.1)
    drain_s = time.monotonic() - t0
    cpu = cpu_seconds(p.pid) - cpu0
    p.terminate()
    p.wait()
    stats = json.loads(subprocess.run(
        ["curl", "-s", "--cacert", str(certs.ca), ports["url"] + "/_emulator/stats"],
        capture_output=True, text=True).stdout)
    # 3. references in the same run
    import urllib.request
    tok = json.loads(urllib.request.urlopen(urllib.request.Request(
        ports["imds"] + "/metadata/identity/oauth2/token?api-version=2018-02-01"
        "&resource=https://monitor.azure.com", headers={"Metadata": "true"})).read())["access_token"]
    worker, count, secs = emulator_ceiling(ports["url"], str(certs.ca))
    ts = [threading.Thread(target=worker, args=(tok,)) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    raw, z6, cli = gzip_reference()
    emu.terminate()
    out = {
        "records": N, "queue_seconds": round(queue_s, 2),
        "drain_seconds": round(drain_s, 2), "records_per_second": round(N / drain_s),
        "tenantd_cpu_seconds": round(cpu, 2),
        "wire_bytes": stats["wire_bytes"], "json_bytes": stats["json_bytes"],
        "wire_ratio": round(stats["json_bytes"] / max(1, stats["wire_bytes"]), 2),
        "batches": stats["batches"], "unique_ids": stats["unique"],
        "duplicates": stats["duplicates"], "violations": stats["violations"],
        "emulator_ceiling_records_per_second": round(count[0] / secs),
        "audit_json_bytes": raw, "audit_zlib6_ratio": round(raw / z6, 2),
        "audit_gzip6_cli_ratio": round(raw / cli, 2),
    }
    print(json.dumps(out, indent=2))
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
