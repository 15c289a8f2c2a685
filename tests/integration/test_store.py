"""tenantd's keyring and encrypted store through the real daemon: first
start, wrong KEK and tampered keyring, a second daemon on the same state,
rotation, rewrap, retire and recovery through tenantctl, and a full map.
Values reach the store through the durable queue of vault puts (the vault
is down in these tests, so every put stays sealed in tenantd's store)."""
import json
import os
import subprocess
import time

import pytest

from conftest import TENANTCTL, TENANTD


def ctl(d, *args, stdin=None, timeout=60):
    return subprocess.run([TENANTCTL, "-c", str(d.conf_path)] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          input=stdin if stdin is not None else "")


def ctl_json(d, *args):
    r = ctl(d, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def put(d, i, name="user"):
    return ctl(d, "vault", "put", "oid-%d" % i, "%s%d@contoso.com" % (name, i),
               "%s %d" % (name, i))


def write_kek(path, data=None):
    path.write_bytes(data if data is not None else os.urandom(32))
    path.chmod(0o600)
    return "file:%s" % path


def start_fails(d, timeout=20):
    d.start(wait=False)
    d.proc.wait(timeout)
    d._reader_thread.join(5)
    assert d.proc.returncode != 0
    return d.stderr_text()


def poll(fn, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("%s not reached within %ss" % (what, timeout))


def test_first_start_creates_keyring_and_store(tenantd):
    d = tenantd()
    state = d.dir / "state"
    created = d.wait_log("created a NEW keyring")
    assert created["level"] == "warn"
    assert (state / "keyring").stat().st_mode & 0o777 == 0o600
    assert (state / "store" / "data.mdb").exists()
    assert (state / "kek").stat().st_mode & 0o777 == 0o600
    s = ctl_json(d, "keys", "status")
    assert s["active_term"] == 1 and s["terms"][0]["state"] == "active"
    body = d.get("/readyz").json()
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["store"]["state"] == "ok" and checks["keys"]["state"] == "ok"
    # A second start reads the same keyring and says nothing about a new one.
    d.stop()
    d.start()
    assert not any("NEW keyring" in l.get("msg", "") for l in d.snapshot())


def test_wrong_kek_refuses_start(tenantd, tmp_path):
    kek = tmp_path / "kek"
    d = tenantd({"keyring": {"kek": write_kek(kek)}})
    d.stop()
    write_kek(kek)          # another key at the same place
    err = start_fails(d)
    assert "is not the key this keyring was made with" in err, err
    assert "cannot start" in err


def test_tampered_and_truncated_keyring_refuse_start(tenantd):
    d = tenantd()
    d.stop()
    path = d.dir / "state" / "keyring"
    good = path.read_bytes()
    for i in (300, len(good) - 40):         # a term's slot, then the MAC area
        bad = bytearray(good)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        err = start_fails(d)
        assert "keyring" in err and ("authentication" in err or "tampered" in err), err
    path.write_bytes(good[:-10])
    err = start_fails(d)
    assert "truncated" in err, err
    path.write_bytes(good)
    d.start()


def test_second_daemon_on_same_state_dir(tenantd):
    d = tenantd()
    other = tenantd({"state_dir": str(d.dir / "state")}, start=False)
    err = start_fails(other)
    assert "is in use by another process (pid %d" % d.proc.pid in err, err
    assert d.get("/livez").status_code == 200


def test_rotate_rewrap_retire(tenantd):
    d = tenantd()
    for i in range(40):
        assert put(d, i).returncode == 0
    r = ctl(d, "keys", "rotate")
    assert r.returncode == 0 and "term: 2" in r.stdout
    r = ctl(d, "keys", "retire", "1")
    assert r.returncode == 1 and "still seals" in r.stderr and "rewrap first" in r.stderr
    r = ctl(d, "keys", "retire", "2")
    assert r.returncode == 1 and "active term" in r.stderr
    assert ctl(d, "keys", "rewrap").returncode == 0
    s = poll(lambda: (lambda s: s if s["rewrap"]["state"] == "done" else None)(
        ctl_json(d, "keys", "status")), what="rewrap done")
    assert s["rewrap"]["rewrapped"] >= 40
    assert ctl(d, "keys", "status").stdout.count("decrypt-only") == 1
    r = ctl(d, "keys", "retire", "1")
    assert r.returncode == 0, r.stderr
    s = ctl_json(d, "keys", "status")
    assert [t["state"] for t in s["terms"]] == ["destroyed", "active"]
    # Everything is still readable after a restart: the queue holds 40.
    d.stop()
    d.start()
    assert ctl_json(d, "vault", "status")["pending"] == 40


def test_recovery_key(tenantd, tmp_path):
    kek = tmp_path / "kek"
    d = tenantd({"keyring": {"kek": write_kek(kek), "recovery": True}})
    rec = d.dir / "state" / "keyring.recovery"
    assert rec.stat().st_mode & 0o777 == 0o600
    key = rec.read_text().strip()
    assert len(key.replace("-", "")) == 40
    assert key not in d.stderr_text()       # never in the log
    for i in range(5):
        assert put(d, i).returncode == 0
    r = ctl(d, "keys", "recover", stdin=key + "\n")
    assert r.returncode == 1 and "tenantd is running" in r.stderr
    d.stop()
    write_kek(kek)                          # the old KEK is lost
    assert "is not the key" in start_fails(d)
    bad = ("A" if key[0] != "A" else "B") + key[1:]
    r = ctl(d, "keys", "recover", stdin=bad + "\n")
    assert r.returncode == 1 and "recovery key" in r.stderr
    r = ctl(d, "keys", "recover", stdin=key + "\n")
    assert r.returncode == 0, r.stderr
    d.start()
    assert ctl_json(d, "vault", "status")["pending"] == 5


def test_storage_full_then_raise_limit(tenantd):
    d = tenantd({"storage": {"max_size": "256KiB"}})
    base = ctl_json(d, "keys", "status")["store"]["records"]  # notices
    big = "x" * 400
    full = None
    for i in range(2000):
        r = ctl(d, "vault", "put", "oid-%d" % i, "u%d@contoso.com" % i, big)
        if r.returncode != 0:
            full = r
            break
    assert full is not None, "never filled a 256 KiB store"
    assert "storage full" in full.stderr, full.stderr
    stored = ctl_json(d, "vault", "status")["pending"]
    assert stored == i
    # Reads still work while full. The store also holds the audit trail
    # (verify's last_seq, plus verify's own record) and the notices
    # counted in base at the start.
    audited = ctl_json(d, "audit", "verify")["last_seq"] + 1
    records = ctl_json(d, "keys", "status")["store"]["records"]
    assert stored + audited <= records <= base + stored + audited
    assert d.get("/livez").status_code == 200
    conf = dict(d.conf, storage={"max_size": "8MiB"})
    d.write_config(conf)
    assert ctl(d, "reload").returncode == 0
    r = ctl(d, "vault", "put", "oid-x", "x@contoso.com", big)
    assert r.returncode == 0, r.stderr
    assert ctl_json(d, "vault", "status")["pending"] == stored + 1
    d.stop()
    d.start()
    assert ctl_json(d, "vault", "status")["pending"] == stored + 1


def test_store_metrics(tenantd):
    d = tenantd()
    text = d.get("/metrics").text
    for family in ("tenantd_store_used_bytes", "tenantd_store_max_bytes",
                   "tenantd_keyring_active_term 1", "tenantd_vault_pending_puts 0",
                   "tenantd_vault_connected 0"):
        assert family in text, family
