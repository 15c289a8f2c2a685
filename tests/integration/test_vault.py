"""The pseudonym vault as a separate process: confidentiality of every file
under both state directories, tenantd serving while the vault is down and
delivering its queue later, separation (another user, no descriptors),
child mode supervision, kill -9 during sustained writes, mutual TLS, and
the vault's peer checks."""
import concurrent.futures
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import TENANTCTL, TENANTD_VAULT, TOP, Certs, to_yaml


def ctl(d, *args, timeout=60):
    return subprocess.run([TENANTCTL, "-c", str(d.conf_path)] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ctl_json(d, *args):
    r = ctl(d, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def poll(fn, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("%s not reached within %ss" % (what, timeout))


def pending(d):
    return ctl_json(d, "vault", "status")["pending"]


def vault_check(d):
    checks = {c["name"]: c for c in d.get("/readyz").json()["checks"]}
    return checks["vault"]


def identity(i, tag):
    return ("oid-%s-%05d" % (tag, i), "upn.%s.%05d@contoso.com" % (tag, i),
            "Name %s %05d" % (tag, i))


def put(d, ident):
    r = ctl(d, "vault", "put", *ident)
    return json.loads(ctl(d, "--json", "vault", "pseudonym", ident[0]).stdout)[
        "pseudonym"] if r.returncode == 0 else None


def put_many(d, idents, threads=8):
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        rs = list(ex.map(lambda ident: ctl(d, "--json", "vault", "put", *ident),
                         idents))
    for r in rs:
        assert r.returncode == 0, r.stderr
    return [json.loads(r.stdout)["pseudonym"] for r in rs]


def files_under(*dirs):
    for top in dirs:
        for root, _, names in os.walk(top):
            for n in names:
                p = pathlib.Path(root) / n
                if p.is_file():
                    yield p


def assert_no_markers(markers, *dirs):
    checked = 0
    for p in files_under(*dirs):
        data = p.read_bytes()
        checked += 1
        for m in markers:
            assert m.encode() not in data, "%s found in %s" % (m, p)
    assert checked > 0


def external(d, v):
    """Point tenantd d at vault v (external mode)."""
    return {"vault": {"mode": "external", "address": v.address}}


def test_confidentiality_1000_identities(tenantd, vault):
    v = vault(start=False)
    d = tenantd({"vault": {"mode": "external",
                           "address": v.conf["listen"]}})
    idents = [identity(i, "MARK%04dQ" % i) for i in range(1000)]
    markers = [x for ident in idents for x in ident]
    pseudonyms = put_many(d, idents)
    assert len(set(pseudonyms)) == 1000
    assert pending(d) == 1000
    assert_no_markers(markers, d.dir / "state")      # queued, sealed
    v.start()
    poll(lambda: pending(d) == 0, what="queue delivered")
    assert ctl_json(d, "vault", "stats")["identities"] == 1000
    # The data is there (so the byte search below means something).
    for i in (0, 499, 999):
        r = ctl_json(d, "vault", "resolve", pseudonyms[i], "confidentiality test")
        assert r["identity"] == dict(zip(("oid", "upn", "display_name"), idents[i]))
    assert_no_markers(markers, d.dir / "state", v.dir / "state")
    # Nor in either process's log.
    for text in (d.stderr_text(), v.stderr_text()):
        for m in markers[::97]:
            assert m not in text


def test_vault_down_tenantd_serves_and_delivers_later(tenantd, vault):
    v = vault(start=False)
    d = tenantd({"vault": {"mode": "external",
                           "address": v.conf["listen"]}})
    r = d.get("/readyz")
    assert r.status_code == 200
    check = vault_check(d)
    assert check["state"] == "degraded" and check["ok"]
    p = put(d, identity(1, "down"))
    assert p is not None and pending(d) == 1
    assert "1 puts pending" in vault_check(d)["detail"]
    r = ctl(d, "vault", "resolve", p, "while down")
    assert r.returncode == 1 and "unreachable" in r.stderr
    v.start()
    poll(lambda: vault_check(d)["state"] == "ok", what="vault ok")
    poll(lambda: pending(d) == 0, what="queue delivered")
    r = ctl_json(d, "vault", "resolve", p, "after recovery")
    assert r["identity"]["upn"] == identity(1, "down")[1]
    # The vault goes away again: still serving, puts queue up again.
    v.stop()
    poll(lambda: vault_check(d)["state"] == "degraded", what="degraded")
    assert put(d, identity(2, "down")) is not None
    assert pending(d) == 1 and d.get("/livez").status_code == 200
    v.start()
    poll(lambda: pending(d) == 0, what="queue delivered again")


def test_resolve_forget_and_access_log(tenantd, vault):
    v = vault()
    d = tenantd(external(None, v))
    poll(lambda: vault_check(d)["state"] == "ok", what="connected")
    p = put(d, identity(7, "log"))
    poll(lambda: pending(d) == 0, what="delivered")
    r = ctl_json(d, "vault", "resolve", p, "ticket", "4711")
    assert r["identity"]["oid"] == identity(7, "log")[0]
    line = v.wait_log(lambda l: l.get("msg") == "vault: resolve")
    assert line["pseudonym"] == p and line["reason"] == "ticket 4711"
    assert line["requester"] == "operator:0"
    assert identity(7, "log")[1] not in v.stderr_text()
    stats = ctl_json(d, "vault", "stats")
    assert stats["identities"] == 1 and stats["access_log"] == 1
    assert ctl(d, "vault", "forget", p).returncode == 0
    r = ctl(d, "vault", "resolve", p, "after erasure")
    assert r.returncode == 1 and "no such pseudonym" in r.stderr
    stats = ctl_json(d, "vault", "stats")
    assert stats["identities"] == 0 and stats["access_log"] == 3
    # Idempotent put: the same identity twice is one record.
    put(d, identity(8, "log"))
    put(d, identity(8, "log"))
    poll(lambda: pending(d) == 0, what="delivered")
    assert ctl_json(d, "vault", "stats")["identities"] == 1


def test_separation_other_user_no_descriptors(tenantd, vault):
    v = vault({"allow_users": ["root"]}, user="nobody")
    d = tenantd(external(None, v))
    poll(lambda: vault_check(d)["state"] == "ok", what="connected")
    put(d, identity(1, "sep"))
    poll(lambda: pending(d) == 0, what="delivered")
    nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True,
                                text=True).stdout)
    vault_files = list(files_under(v.dir / "state"))
    assert len(vault_files) >= 4        # keyring, kek, data.mdb, lock.mdb
    for p in vault_files:
        assert p.stat().st_uid == nobody, p
    assert os.stat(v.dir / "state").st_mode & 0o077 == 0
    vault_root = os.path.realpath(v.dir)
    fds = os.listdir("/proc/%d/fd" % d.proc.pid)
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (d.proc.pid, fd))
        except OSError:
            continue
        assert not target.startswith(vault_root), target
    # And the vault has none of tenantd's.
    for fd in os.listdir("/proc/%d/fd" % v.proc.pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (v.proc.pid, fd))
        except OSError:
            continue
        assert not target.startswith(os.path.realpath(d.dir)), target


def frame(obj):
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def test_vault_refuses_unlisted_peer(vault):
    import tempfile
    open_dir = tempfile.mkdtemp(prefix="tenantd-vsock-")
    os.chmod(open_dir, 0o755)
    v = vault({"allow_users": ["0"], "listen": open_dir + "/vault.sock"})
    script = ("import socket,struct,sys\n"
              "s=socket.socket(socket.AF_UNIX)\n"
              "s.connect(sys.argv[1])\n"
              "s.sendall(struct.pack('>I',26)+b'{\"id\":1,\"op\":\"stats\"}   ')\n"
              "try:\n"
              "    print(len(s.recv(100)))\n"
              "except ConnectionResetError:\n"
              "    print(0)\n")
    os.chmod(v.address, 0o666)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                        "--clear-groups", "/usr/bin/python3", "-c", script,
                        v.address], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "0", r.stdout + r.stderr   # closed, no answer
    v.wait_log("not in allow_users")
    # root is listed: an answer comes back.
    s = socket.socket(socket.AF_UNIX)
    s.connect(v.address)
    s.sendall(frame({"id": 1, "op": "stats"}))
    head = s.recv(4)
    assert len(head) == 4
    # A frame over the limit closes the connection.
    s.sendall(struct.pack(">I", 10 * 1024 * 1024))
    s.settimeout(10)
    rest = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    v.wait_log("closing")
    subprocess.run(["rm", "-rf", open_dir])


def vault_child_conf(d_dir, tmp_path):
    conf = tmp_path / "vault-child.yaml"
    conf.write_text(to_yaml({"state_dir": str(tmp_path / "vault-state"),
                             "listen": str(tmp_path / "unused.sock")}) + "\n")
    return {"vault": {"mode": "child", "config": str(conf),
                      "program": TENANTD_VAULT,
                      "address": str(tmp_path / "vsock")}}


def vault_pid(d):
    for l in reversed(d.snapshot()):
        if l.get("msg", "").startswith("vault: started"):
            return int(l["msg"].split("pid ")[1].rstrip(")"))
    raise AssertionError("no vault child started")


def test_child_mode_supervises_vault(tenantd, tmp_path):
    d = tenantd(vault_child_conf(None, tmp_path))
    poll(lambda: vault_check(d)["state"] == "ok", what="connected")
    first = vault_pid(d)
    os.kill(first, signal.SIGKILL)
    d.wait_log("killed by signal 9")
    poll(lambda: vault_pid(d) != first, what="restarted")
    poll(lambda: vault_check(d)["state"] == "ok", what="reconnected")
    p = put(d, identity(3, "child"))
    poll(lambda: pending(d) == 0, what="delivered")
    assert ctl_json(d, "vault", "resolve", p, "child")["identity"]["oid"] == \
        identity(3, "child")[0]
    second = vault_pid(d)
    d.stop()
    poll(lambda: not os.path.exists("/proc/%d" % second) or
         open("/proc/%d/stat" % second).read().split()[2] == "Z",
         what="vault stopped with tenantd")


def test_kill9_during_concurrent_writes(tenantd, tmp_path):
    d = tenantd(vault_child_conf(None, tmp_path))
    poll(lambda: vault_check(d)["state"] == "ok", what="connected")
    acked = {}
    stop_at = time.monotonic() + 3

    def writer(w):
        n = 0
        while True:
            ident = identity(n, "crash%d" % w)
            n += 1
            r = ctl(d, "--json", "vault", "put", *ident)
            if r.returncode == 0:
                acked[json.loads(r.stdout)["pseudonym"]] = ident
            elif r.returncode == 3 or time.monotonic() > stop_at + 30:
                return
            if time.monotonic() > stop_at and d.proc.poll() is not None:
                return

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(writer, w) for w in range(8)]
        while time.monotonic() < stop_at:
            time.sleep(0.1)
        old_vault = vault_pid(d)
        d.kill()                                    # SIGKILL mid-write
        for f in futs:
            f.result()
    assert len(acked) >= 50, len(acked)
    poll(lambda: not os.path.exists("/proc/%d" % old_vault), 30,
         "the old vault to go with its parent")
    d.start()
    poll(lambda: vault_check(d)["state"] == "ok", what="connected")
    poll(lambda: pending(d) == 0, what="queue delivered")
    assert ctl_json(d, "vault", "stats")["identities"] >= len(acked)
    for p, ident in acked.items():
        r = ctl_json(d, "vault", "resolve", p, "crash check")
        assert r["identity"]["upn"] == ident[1]


def test_mutual_tls_vault(tenantd, vault, certs, tmp_path):
    tls = {"certificate": str(certs.cert), "key": str(certs.key),
           "ca": str(certs.ca)}
    v = vault({"listen": "tls://127.0.0.1:0", "tls": tls})
    assert v.address.startswith("tls://127.0.0.1:")
    d = tenantd({"vault": {"mode": "external", "address": v.address,
                           "tls": tls}})
    poll(lambda: vault_check(d)["state"] == "ok", what="TLS connection")
    p = put(d, identity(1, "tls"))
    poll(lambda: pending(d) == 0, what="delivered over TLS")
    assert ctl_json(d, "vault", "resolve", p, "tls")["identity"]["oid"] == \
        identity(1, "tls")[0]
    line = v.wait_log(lambda l: l.get("msg") == "vault: resolve")
    assert line["peer"] == "cert tenantd test"
    # A client whose certificate another CA signed is refused.
    other = Certs(tmp_path / "other", cn="intruder")
    d2 = tenantd({"vault": {"mode": "external", "address": v.address,
                            "tls": {"certificate": str(other.cert),
                                    "key": str(other.key),
                                    "ca": str(certs.ca)}}})
    time.sleep(1)
    assert vault_check(d2)["state"] == "degraded"
    assert ctl(d2, "vault", "stats").returncode == 1


def test_vault_wrong_kek_refuses_start(vault, tmp_path):
    kek = tmp_path / "vkek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    v = vault({"keyring": {"kek": "file:%s" % kek}})
    v.stop()
    kek.write_bytes(os.urandom(32))
    v.start(wait=False)
    v.proc.wait(20)
    v._reader_thread.join(5)
    assert v.proc.returncode != 0
    assert "is not the key this keyring was made with" in v.stderr_text()


def test_vault_config_check(tmp_path):
    conf = tmp_path / "v.yaml"
    conf.write_text("state_dir: /tmp/x\nlisten: tls://127.0.0.1:9\nallow_user: [a]\n")
    r = subprocess.run([TENANTD_VAULT, "-n", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "%s:3:1: unknown key 'allow_user' (did you mean 'allow_users'?)" % conf \
        in r.stderr
    assert "needs a 'tls' map" in r.stderr
    r = subprocess.run([TENANTD_VAULT, "-n", "-c", str(TOP / "conf" / "vault.dev.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "configuration OK\n"), r.stderr
