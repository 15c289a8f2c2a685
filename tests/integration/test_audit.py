"""The audit trail through tenantctl against a real tenantd: one record per
control command (walking tenantctl's own command list), start/stop and
SIGHUP, verify, CSV that Python's csv module reads back field for field,
and a 1,000,000-record export in bounded memory. Records for the CSV and
memory tests are appended through the real audit API by bench/audit-bench
(-g/-T) into the daemon's own store while it is stopped."""
import csv
import hashlib
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import BUILD, TOP

AUDIT_BENCH = str(BUILD / "bench" / "audit-bench")
# Commands that cannot reach the daemon (they run while it is stopped).
LOCAL_COMMANDS = {"keys recover"}
# Arguments that make each command run without changing much.
ARGS = {
    "keys retire": ["999"],
    "vault pseudonym": ["00000000-0000-0000-0000-000000000001"],
    "vault put": ["00000000-0000-0000-0000-000000000001", "a@example.com"],
    "vault resolve": ["p_aaaaaaaaaaaaaaaaaaaaaaaaaa", "audit table test reason"],
    "vault forget": ["p_aaaaaaaaaaaaaaaaaaaaaaaaaa"],
    "audit verify": ["--from", "1"],
    "audit prune": ["999999"],
    "audit export": ["--format", "jsonl", "-o", os.devnull],
    "token": ["--user", "alice"],
    "notice publish": ["--kind", "change", "--severity", "info",
                       "--title", "audit table test"],
    "notice update": ["n_00000000000000000000000000000000", "--title", "x"],
}


def ctl_json(d, *args):
    r = d.tenantctl("--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def export(d, *args):
    r = d.tenantctl("audit", "export", "--format", "jsonl", *args, timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line]


def command_names():
    """The commands as tenantctl --help lists them: the lower-case words at
    the start of each synopsis column (arguments are upper case or [..])."""
    r = subprocess.run([os.environ.get("TENANTCTL_BIN") or str(BUILD / "tenantctl"),
                        "--help"], capture_output=True, text=True)
    names = []
    for line in r.stdout.split("commands:", 1)[1].splitlines():
        words = []
        for w in line[2:28].split():
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            words.append(w)
        if words:
            names.append(" ".join(words))
    return names


def canonical(rec):
    rec = dict(rec)
    rec.pop("hash")
    return json.dumps(rec, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def chain_ok(records):
    """Recompute h[n] = SHA-256(prefix || h[n-1] || canonical) by hand."""
    h = bytes(32)
    for rec in records:
        h = hashlib.sha256(b"tenantd audit chain v1\n" + h + canonical(rec)).digest()
        if h.hex() != rec["hash"]:
            return rec["seq"]
    return None


def test_every_command_writes_one_record(tenantd):
    d = tenantd()
    table = {a["ctl"]: a["action"] for a in ctl_json(d, "audit", "actions")
             if a.get("ctl")}
    before = export(d)
    names = [n for n in command_names() if n not in LOCAL_COMMANDS]
    assert "audit export" in names and "reload" in names
    missing = [n for n in names if n not in table]
    assert not missing, "tenantctl commands without an audit action: %s" % missing
    for name in names:
        d.tenantctl(*(name.split() + ARGS.get(name, [])))
    after = export(d)
    # between the two exports' own records
    new = [r for r in after[len(before):-1] if r["action"] != "audit.checkpoint"]
    assert [r["action"] for r in new] == [table[n] for n in names]
    uid = "operator:%d" % os.getuid()
    assert all(r["actor"] == uid and r["source"] == "local" for r in new)
    outcomes = {n: r["outcome"] for n, r in zip(names, new)}
    assert outcomes["status"] == "ok"
    assert outcomes["keys retire"] == "error"     # no term 999
    assert outcomes["audit prune"] == "error"
    # an unknown command is recorded too, as ctl.unknown
    r = subprocess.run([sys.executable, "-c", "import socket,sys;s=socket.socket(socket.AF_UNIX);"
                        "s.connect(sys.argv[1]);s.sendall(b'{\"cmd\":\"nope\"}\\n');"
                        "print(s.recv(4096))", d.conf["control"]["socket"]],
                       capture_output=True, text=True)
    assert "unknown command" in r.stdout
    last = [x for x in export(d) if x["action"] == "ctl.unknown"]
    assert last and last[-1]["details"]["command"] == "nope"


def test_start_stop_sighup_and_verify(tenantd):
    d = tenantd()
    d.signal(signal.SIGHUP)
    d.wait_log(lambda l: l.get("msg", "").startswith("configuration reloaded"))
    time.sleep(0.2)
    d.stop()
    d.start()
    recs = export(d)
    actions = [r["action"] for r in recs]
    assert actions[0] == "daemon.start"
    assert "daemon.stop" in actions and actions.count("daemon.start") == 2
    hup = [r for r in recs if r["action"] == "config.reload"]
    assert hup and hup[0]["actor"] == "system" and hup[0]["details"]["trigger"] == "SIGHUP"
    # a checkpoint at the stop, signed by the key tenantctl shows
    cps = [r for r in recs if r["action"] == "audit.checkpoint"]
    assert cps and cps[0]["details"]["covers_seq"] == cps[0]["seq"] - 1
    assert chain_ok(recs) is None
    v = ctl_json(d, "audit", "verify")
    assert v["ok"] is True and v["checkpoints"] >= 1
    pub = ctl_json(d, "audit", "pubkey")
    assert pub["pubkey"] == v["pubkey"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub["pubkey"]))
    det = cps[0]["details"]
    msg = b"tenantd audit checkpoint v1\n" + json.dumps(
        {"head": det["head"], "seq": det["covers_seq"], "ts": cps[0]["ts"]},
        separators=(",", ":")).encode()
    key.verify(bytes.fromhex(det["sig"]), msg)     # raises if forged
    r = d.tenantctl("audit", "verify", "--from", "2")
    assert r.returncode == 0 and "audit chain OK" in r.stdout


def generate(d, *args):
    """Stop d, append records through the real API, start d again."""
    state = pathlib.Path(d.conf["state_dir"])
    d.stop()
    r = subprocess.run([AUDIT_BENCH, "-d", str(state / "store"), "-k",
                        str(state / "keyring"), "-K", "file:%s" % (state / "kek")]
                       + list(args), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    d.start()


def test_csv_round_trip(tenantd, tmp_path):
    d = tenantd()
    generate(d, "-T")
    out = tmp_path / "audit.csv"
    r = d.tenantctl("audit", "export", "--action", "settings.put", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfseq,ts,actor,")
    assert b"\r\n" in data and (out.stat().st_mode & 0o777) == 0o600
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    header, rows = rows[0], rows[1:]
    recs = export(d, "--action", "settings.put")
    assert len(rows) == len(recs) == 9
    col = {name: i for i, name in enumerate(header)}
    for row, rec in zip(rows, recs):
        for field in ("actor", "target", "request_id", "client_app", "source"):
            want = rec[field]
            if want[:1] in ("=", "+", "-", "@", "\t", "\r", "\n"):
                want = "'" + want
            assert row[col[field]] == want, field
        assert row[col["actor_roles"]] == "admin auditor"
        assert row[col["status"]] == "403" and row[col["outcome"]] == "denied"
        assert json.loads(row[col["details"]]) == rec["details"]
        assert row[col["hash"]] == rec["hash"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[col["ts"]])
    r = d.tenantctl("audit", "export", "--no-bom", "--to", "3")
    assert r.returncode == 0 and r.stdout.startswith("seq,")


def rss_kib(pid, field):
    for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def test_export_million_records_bounded_memory(tenantd, tmp_path):
    """Anonymous memory (heap, buffers) is what an export could hoard; the
    pages of the LMDB map it reads are file-backed page cache that the
    kernel counts in VmRSS as RssFile and reclaims, so they are reported
    but not bounded here."""
    d = tenantd()
    generate(d, "-g", "1000000")
    pid = d.proc.pid
    d.tenantctl("audit", "export", "--to", "1000", "-o", os.devnull)  # warm
    base = rss_kib(pid, "RssAnon")
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid, "RssAnon"))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out = tmp_path / "all.jsonl"
    r = d.tenantctl("audit", "export", "--format", "jsonl", "-o", str(out), timeout=900)
    done.set()
    t.join()
    assert r.returncode == 0, r.stderr
    with out.open("rb") as f:
        n = sum(1 for _ in f)
    assert n >= 1000000
    print("RssAnon growth %d KiB; VmRSS now %d KiB (RssFile %d KiB: the map)"
          % (peak[0] - base, rss_kib(pid, "VmRSS"), rss_kib(pid, "RssFile")))
    assert peak[0] - base < 20 * 1024, "anonymous RSS grew by %d KiB" % (peak[0] - base)
