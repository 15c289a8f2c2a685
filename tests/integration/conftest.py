"""Shared harness for the integration tests: test certificates made at test
time, YAML configs written per test, and real tenantd processes on loopback
ephemeral ports, read back through their JSON log lines on stderr."""
import copy
import datetime
import ipaddress
import json
import os
import pathlib
import shutil
import signal as signals
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOP = pathlib.Path(os.environ.get("TOP_SRCDIR") or pathlib.Path(__file__).resolve().parents[2])
BUILD = pathlib.Path(os.environ.get("TENANTD_BIN") or TOP / "tenantd").parent
TENANTD = os.environ.get("TENANTD_BIN") or str(BUILD / "tenantd")
TENANTCTL = os.environ.get("TENANTCTL_BIN") or str(BUILD / "tenantctl")
TENANTD_VAULT = os.environ.get("TENANTD_VAULT_BIN") or str(BUILD / "tenantd-vault")
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
START_TIMEOUT = 20
# Contract test: TENANTD_VIA_PRISM=1 puts a Prism proxy (validating every
# request and response against docs/openapi.yaml, --errors) in front of
# each daemon; Daemon.url() then points at it. PRISM_BIN names prism.
VIA_PRISM = os.environ.get("TENANTD_VIA_PRISM") == "1"
PRISM_BIN = os.environ.get("PRISM_BIN") or "prism"
OPENAPI = TOP / "docs" / "openapi.yaml"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


# --- certificates -----------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class Certs:
    """A test CA and a server certificate for localhost, 127.0.0.1, ::1."""

    def __init__(self, directory, cn="tenantd test"):
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name("tenantd test CA"))
              .issuer_name(_name("tenantd test CA")).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))])
        cert = (x509.CertificateBuilder().subject_name(_name(cn))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(san, False)
                .sign(ca_key, hashes.SHA256()))
        self.ca = directory / "ca.pem"
        self.cert = directory / "cert.pem"
        self.key = directory / "key.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.key, key)
        self.serial = cert.serial_number


# --- configs ----------------------------------------------------------------

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def to_yaml(value, indent=0):
    """A small block-style YAML writer for dicts, lists and scalars."""
    pad = "  " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                lines = to_yaml(item, indent + 1).split("\n")
                out.append("%s- %s" % (pad, lines[0].lstrip()))
                out.extend(lines[1:])
            else:
                out.append("%s- %s" % (pad, _yaml_scalar(item)))
    return "\n".join(out)


def merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# --- the daemon ---------------------------------------------------------------

class Daemon:
    """One tenantd process; log lines on stderr are collected as JSON."""

    def __init__(self, workdir, certs, overrides=None, name="tenantd"):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.conf = merge({
            "tenant_id": TENANT_ID,
            "state_dir": str(self.dir / "state"),
            "log": {"level": "info"},
            "listen": [{"address": "127.0.0.1:0", "tls": True}],
            "tls": {"certificate": str(certs.cert), "key": str(certs.key)},
            "http": {"workers": 2},
            "cors": {"allowed_origins": ["https://contoso.sharepoint.com"]},
            "control": {"socket": str(self.dir / "run" / "control.sock")},
            "auth": {"provider": "local"},
            # An external vault nobody runs unless a test starts one: the
            # vault check is degraded (ready) and puts are queued.
            "vault": {"mode": "external",
                      "address": str(self.dir / "run" / "vault.sock")},
        }, overrides or {})
        self.conf_path = self.dir / ("%s.yaml" % name)
        self.write_config()
        self.proc = None
        self.lines = []
        self.raw = []
        self.listeners = []
        self.prism = None
        self._lock = threading.Lock()

    def write_config(self, conf=None, text=None):
        if conf is not None:
            self.conf = conf
        self.conf_path.write_text(text if text is not None else to_yaml(self.conf) + "\n")

    def _reader(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    pass

    def start(self, wait=True, env=None):
        self.lines, self.raw, self.listeners = [], [], []
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([TENANTD, "-f", "-c", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self._reader_thread = threading.Thread(target=self._reader, daemon=True)
        self._reader_thread.start()
        if wait:
            self.wait_log(lambda l: l.get("msg") == "ready", START_TIMEOUT)
            self.listeners = [(l["scheme"], l["listen"]) for l in self.snapshot()
                              if "listen" in l and l.get("msg", "").startswith("listening")]
            if VIA_PRISM:
                self.prism_start()
        return self

    def prism_start(self, timeout=60):
        """A Prism proxy in front of the HTTPS listener, failing on violations."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(self.certs.ca))
        self.prism_log = open(self.dir / "prism.log", "wb")
        self.prism = subprocess.Popen(
            [PRISM_BIN, "proxy", str(OPENAPI), "https://%s" % self.address("https"),
             "--errors", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=self.prism_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.prism.poll() is None, "prism exited:\n" + (self.dir / "prism.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                self.prism_port = port
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prism did not listen within %ss" % timeout)

    def prism_stop(self):
        if getattr(self, "prism", None) is None:
            return
        if self.prism.poll() is None:
            self.prism.terminate()
            try:
                self.prism.wait(10)
            except subprocess.TimeoutExpired:
                self.prism.kill()
                self.prism.wait()
        self.prism_log.close()
        self.prism = None

    def snapshot(self):
        with self._lock:
            return list(self.lines)

    def stderr_text(self):
        with self._lock:
            return "\n".join(self.raw)

    def wait_log(self, pred, timeout=10, start=0):
        """Wait for a JSON log line matching pred (a callable or a msg substring)."""
        if isinstance(pred, str):
            text = pred
            pred = lambda l: text in l.get("msg", "")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for l in self.snapshot()[start:]:
                if pred(l):
                    return l
            if self.proc.poll() is not None:
                time.sleep(0.2)
                for l in self.snapshot()[start:]:
                    if pred(l):
                        return l
                raise AssertionError("tenantd exited (%s) before the expected log line:\n%s"
                                     % (self.proc.returncode, self.stderr_text()[-3000:]))
            time.sleep(0.05)
        raise AssertionError("log line not seen within %ss:\n%s" % (timeout, self.stderr_text()[-3000:]))

    def address(self, scheme="https"):
        for s, a in self.listeners:
            if s == scheme:
                return a
        raise AssertionError("no %s listener in %r" % (scheme, self.listeners))

    def hostport(self, scheme="https"):
        a = self.address(scheme)
        host, port = a.rsplit(":", 1)
        return host.strip("[]"), int(port)

    def url(self, path, scheme="https", direct=False):
        """The URL of path; through the Prism proxy when one runs, unless
        direct (requests that break the document on purpose go direct)."""
        if getattr(self, "prism", None) is not None and scheme == "https" and not direct:
            return "http://127.0.0.1:%d%s" % (self.prism_port, path)
        return "%s://%s%s" % (scheme, self.address(scheme), path)

    def session(self):
        import requests
        s = requests.Session()
        s.verify = str(self.certs.ca)
        return s

    def get(self, path, **kw):
        import requests
        kw.setdefault("verify", str(self.certs.ca))
        kw.setdefault("timeout", 10)
        return requests.get(self.url(path), **kw)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signals.SIGTERM, timeout=30):
        self.prism_stop()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tenantd did not stop within %ss" % timeout)

    def check_sanitizers(self):
        """Fail when an ASan/UBSan build of tenantd reported anything."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kill()
        self._reader_thread.join(10)    # the last lines of stderr
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, "sanitizer report from tenantd:\n" + text[-6000:]

    def kill(self):
        self.prism_stop()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tenantctl(self, *args, user=None, timeout=30):
        cmd = [TENANTCTL, "-c", str(self.conf_path)] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%s" % user, "--regid=nogroup", "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tenantd(tmp_path, certs):
    """Factory: tenantd(overrides={...}, start=True) -> Daemon."""
    started = []

    def make(overrides=None, start=True, name="tenantd"):
        d = Daemon(tmp_path / ("d%d" % len(started)), certs, overrides, name)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()        # gracefully, so a sanitizer build reports leaks
        d.check_sanitizers()


@pytest.fixture
def auth_token():
    """Factory: auth_token(daemon, user="alice", roles=["admin"]) -> str, a
    bearer token minted by `tenantctl token` (the daemon must run with
    auth.provider: local, the default of Daemon's config)."""

    def make(daemon, user="alice", roles=()):
        args = ["token", "--user", user]
        if roles:
            args += ["--roles", ",".join(roles)]
        r = daemon.tenantctl(*args)
        assert r.returncode == 0, "tenantctl token failed: %s" % r.stderr
        return r.stdout.strip()

    return make


class Vault:
    """One tenantd-vault run by the test (vault.mode external), optionally
    as another user (setpriv), with its own state directory and config."""

    def __init__(self, workdir, overrides=None, user=None):
        if user is not None:
            # pytest's tmp_path is private to root: use a directory the
            # vault's user can reach, removed by the fixture.
            workdir = pathlib.Path(tempfile.mkdtemp(prefix="tenantd-vault-"))
            workdir.chmod(0o711)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.conf = merge({
            "state_dir": str(self.dir / "state"),
            "log": {"level": "info"},
            "listen": str(self.dir / "run" / "vault.sock"),
        }, overrides or {})
        self.conf_path = self.dir / "vault.yaml"
        self.conf_path.write_text(to_yaml(self.conf) + "\n")
        self.proc = None
        self.lines, self.raw = [], []
        self._lock = threading.Lock()
        if user is not None:
            for d in (self.dir, self.dir / "run"):
                d.mkdir(exist_ok=True)
                subprocess.run(["chown", user, str(d)], check=True)
            self.conf_path.chmod(0o644)

    _reader = Daemon._reader
    snapshot = Daemon.snapshot
    stderr_text = Daemon.stderr_text
    wait_log = Daemon.wait_log
    stop = Daemon.stop
    kill = Daemon.kill
    prism_stop = Daemon.prism_stop
    check_sanitizers = Daemon.check_sanitizers

    def start(self, wait=True):
        self.lines, self.raw = [], []
        cmd = [TENANTD_VAULT, "-f", "-c", str(self.conf_path)]
        if self.user is not None:
            cmd = ["setpriv", "--reuid=%s" % self.user, "--regid=nogroup",
                   "--clear-groups"] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=str(self.dir))
        self._reader_thread = threading.Thread(target=self._reader, daemon=True)
        self._reader_thread.start()
        if wait:
            line = self.wait_log(lambda l: l.get("msg", "").startswith("vault ready"),
                                 START_TIMEOUT)
            self.address = line["listen"]
        return self


@pytest.fixture
def vault(tmp_path):
    """Factory: vault(overrides={...}, user=None, start=True) -> Vault."""
    started = []

    def make(overrides=None, user=None, start=True):
        v = Vault(tmp_path / ("v%d" % len(started)), overrides, user)
        started.append(v)
        if start:
            v.start()
        return v

    yield make
    for v in started:
        if v.proc is not None and v.proc.poll() is None:
            v.stop()
        v.check_sanitizers()
        if v.user is not None:
            shutil.rmtree(v.dir, ignore_errors=True)


def run_tenantd(*args, timeout=30):
    """Run tenantd with arguments (for -n, -V) and return the result."""
    return subprocess.run([TENANTD] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
