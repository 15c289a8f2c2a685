"""Process lifecycle: start, graceful shutdown, reload (good and bad), TLS
certificate reload, systemd notifications, command-line options."""
import os
import re
import signal
import socket
import ssl
import tempfile
import time

import requests

from conftest import Certs, run_tenantd
from test_http import read_response, tls_connect

ORIGIN2 = "https://fabrikam.sharepoint.com"


def test_version():
    r = run_tenantd("-V")
    assert r.returncode == 0
    assert re.fullmatch(r"tenantd \d+\.\d+\.\d+\n", r.stdout)


def test_bad_option_usage():
    r = run_tenantd("-x")
    assert r.returncode == 2
    assert "usage" in r.stderr


def test_check_config_ok(tenantd):
    d = tenantd(start=False)
    r = run_tenantd("-n", "-c", str(d.conf_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "configuration OK\n"


def test_graceful_shutdown_completes_inflight_request(tenantd):
    d = tenantd({"http": {"shutdown_timeout": "20s"}})
    s = tls_connect(d)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")     # incomplete
    time.sleep(0.3)
    mark = len(d.snapshot())
    d.signal(signal.SIGTERM)
    d.wait_log("SIGTERM received", 10, start=mark)
    host, port = d.hostport()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:      # listeners close
        try:
            socket.create_connection((host, port), timeout=1).close()
            time.sleep(0.1)
        except OSError:
            break
    else:
        raise AssertionError("still accepting connections after SIGTERM")
    assert d.proc.poll() is None, "exited before the request under way finished"
    s.sendall(b"\r\n")
    head, body = read_response(s)
    assert head.startswith("HTTP/1.1 200")
    assert re.search(r"(?i)connection: close", head)
    assert body == b"ok"
    assert d.proc.wait(20) == 0
    assert "shutdown deadline reached" not in d.stderr_text()
    d.wait_log("stopped", 5)


def test_idle_connection_does_not_hold_shutdown(tenantd):
    d = tenantd({"http": {"shutdown_timeout": "30s"}})
    s = tls_connect(d)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _ = read_response(s)
    assert head.startswith("HTTP/1.1 200")
    assert d.stop(timeout=25) == 0
    assert "shutdown deadline reached" not in d.stderr_text()


def test_shutdown_deadline_closes_stuck_request(tenantd):
    d = tenantd({"http": {"shutdown_timeout": "1s", "request_timeout": "60s"}})
    s = tls_connect(d)
    s.sendall(b"GET /livez HTTP/1.1\r\n")     # never finished
    time.sleep(0.3)
    assert d.stop(timeout=20) == 0
    assert "shutdown deadline reached" in d.stderr_text()


def test_good_reload(tenantd):
    d = tenantd()
    r = d.get("/livez", headers={"Origin": ORIGIN2})
    assert "Access-Control-Allow-Origin" not in r.headers
    conf = d.conf
    conf["cors"]["allowed_origins"].append(ORIGIN2)
    d.write_config(conf)
    mark = len(d.snapshot())
    d.signal(signal.SIGHUP)
    d.wait_log("configuration reloaded", 10, start=mark)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = d.get("/livez", headers={"Origin": ORIGIN2})
        if r.headers.get("Access-Control-Allow-Origin") == ORIGIN2:
            break
        time.sleep(0.05)
    assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN2


def test_bad_reload_keeps_old_config(tenantd):
    d = tenantd()
    good = d.conf_path.read_text()
    d.write_config(text=good + "http:\n  max_body_sise: 1MiB\n")
    mark = len(d.snapshot())
    d.signal(signal.SIGHUP)
    d.wait_log("reload failed", 10, start=mark)
    text = d.stderr_text()
    assert re.search(re.escape(str(d.conf_path)) + r":\d+:\d+: ", text), text
    assert d.proc.poll() is None
    r = d.get("/livez", headers={"Origin": "https://contoso.sharepoint.com"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://contoso.sharepoint.com"


def peer_serial(d):
    ctx = ssl.create_default_context(cafile=str(d.certs.ca))
    with tls_connect(d, ctx) as s:
        der = s.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_reload_on_hup(tenantd, tmp_path):
    d = tenantd()
    assert peer_serial(d) == d.certs.serial
    fresh = Certs(tmp_path / "fresh")
    d.certs = fresh
    conf = d.conf
    conf["tls"] = {"certificate": str(fresh.cert), "key": str(fresh.key)}
    d.write_config(conf)
    mark = len(d.snapshot())
    d.signal(signal.SIGHUP)
    d.wait_log("configuration reloaded", 10, start=mark)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and peer_serial(d) != fresh.serial:
        time.sleep(0.05)
    assert peer_serial(d) == fresh.serial


def test_reload_with_unreadable_certificate_keeps_serving(tenantd):
    d = tenantd()
    conf = d.conf
    conf["tls"] = dict(conf["tls"], certificate=str(d.dir / "missing.pem"))
    d.write_config(conf)
    mark = len(d.snapshot())
    d.signal(signal.SIGHUP)
    d.wait_log("reload failed", 10, start=mark)
    assert peer_serial(d) == d.certs.serial
    assert d.get("/livez").status_code == 200


def test_sd_notify_protocol(tenantd, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    d = tenantd(start=False)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    d.start(env=env)

    def expect(word):
        while True:
            msg = sock.recv(4096).decode()
            if word in msg:
                return msg

    assert "READY=1" in expect("READY=1")
    d.signal(signal.SIGHUP)
    msg = expect("RELOADING=1")
    assert re.search(r"MONOTONIC_USEC=\d+", msg)
    assert "READY=1" in expect("READY=1")
    d.signal(signal.SIGTERM)
    assert "STOPPING=1" in expect("STOPPING=1")
    assert d.proc.wait(20) == 0
    sock.close()


def test_self_signed_certificate_generated(tenantd):
    d = tenantd({"tls": "self-signed"}, start=False)
    d.start()
    key = d.dir / "state" / "tls" / "key.pem"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0
    r = requests.get(d.url("/livez"), verify=str(d.dir / "state" / "tls" / "cert.pem"), timeout=10)
    assert r.status_code == 200
