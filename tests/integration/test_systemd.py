"""Deployment checks: the systemd units' hardening and syntax, the sysusers
file they rely on, and the Debian package built by packaging/build-deb."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(os.environ.get("TOP_SRCDIR",
                          Path(__file__).resolve().parents[2]))
TENANTD_BIN = Path(os.environ.get("TENANTD_BIN", TOP / "tenantd"))
BUILDDIR = TENANTD_BIN.parent
UNITS = ["tenantd", "tenantd-vault"]
MAX_EXPOSURE = 2.0


def unit_path(name):
    return TOP / "systemd" / (name + ".service")


def unit_options(name):
    """Every Key=value line of the unit as {key: [values...]}."""
    values = {}
    for line in unit_path(name).read_text().splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            values.setdefault(m.group(1), []).append(m.group(2))
    return values


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          **kw)


@pytest.mark.parametrize("name", UNITS)
def test_security_exposure(name):
    r = run(["systemd-analyze", "security", "--offline=true",
             str(unit_path(name))])
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert m, "no exposure level in:\n" + out
    level = float(m.group(1))
    assert level <= MAX_EXPOSURE, out


def vault_bin():
    """The built tenantd-vault, or /bin/true until that program exists."""
    built = BUILDDIR / "tenantd-vault"
    return built if built.exists() else Path("/bin/true")


@pytest.mark.parametrize("name", UNITS)
def test_verify_clean(name, tmp_path):
    # systemd-analyze verify insists that ExecStart= binaries exist and are
    # executable, and the installed paths (/usr/sbin) do not exist on a
    # build machine. So verify a copy whose paths point at the binaries of
    # this build; tenantd-vault is not written yet, so /bin/true stands in
    # for it. Everything else in the unit is checked as shipped.
    text = unit_path(name).read_text()
    text = text.replace("/usr/sbin/tenantd-vault", str(vault_bin()))
    text = text.replace("/usr/sbin/tenantd", str(TENANTD_BIN))
    assert "/usr/sbin/" not in text, "unexpected installed path left"
    copy = tmp_path / (name + ".service")
    copy.write_text(text)
    if name == "tenantd":
        # tenantd.service Wants= the vault: let verify find it too.
        vault = unit_path("tenantd-vault").read_text().replace(
            "/usr/sbin/tenantd-vault", str(vault_bin()))
        (tmp_path / "tenantd-vault.service").write_text(vault)
    r = run(["systemd-analyze", "verify", str(copy)], cwd=tmp_path)
    # Unknown keys are only warnings (exit 0): clean means no output too.
    assert r.returncode == 0 and (r.stdout + r.stderr).strip() == "", \
        r.stdout + r.stderr


@pytest.mark.parametrize("name,user,state", [
    ("tenantd", "tenantd", "tenantd"),
    ("tenantd-vault", "tenantd-vault", "tenantd-vault"),
])
def test_unit_contract(name, user, state):
    o = unit_options(name)
    binary = "/usr/sbin/" + name
    assert o["Type"] == ["notify"]
    assert o["User"] == [user] and o["Group"] == [user]
    assert o["StateDirectory"] == [state]
    assert o["StateDirectoryMode"] == ["0700"]
    assert o["RuntimeDirectory"] == [state]
    assert o["Restart"] == ["on-failure"]
    assert o.get("WatchdogSec"), "no WatchdogSec"
    assert o.get("LimitMEMLOCK"), "no LimitMEMLOCK for mlock()ed keys"
    assert o["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    conf = "/etc/tenantd/%s.yaml" % ("tenantd" if name == "tenantd"
                                      else "vault")
    assert o["ExecStart"] == ["%s -f -c %s" % (binary, conf)]
    if name == "tenantd":
        assert o["ExecStartPre"] == ["%s -n -c %s" % (binary, conf)]


def test_sysusers_creates_unit_identities(tmp_path):
    (tmp_path / "etc").mkdir()
    r = run(["systemd-sysusers", "--root=" + str(tmp_path),
             str(TOP / "packaging" / "tenantd.sysusers")])
    assert r.returncode == 0, r.stderr
    users = {l.split(":")[0] for l in
             (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {l.split(":")[0] for l in
              (tmp_path / "etc/group").read_text().splitlines()}
    assert "tenantd-admin" in groups
    for name in UNITS:
        o = unit_options(name)
        assert set(o["User"]) <= users
        need = set(o["Group"])
        for g in o.get("SupplementaryGroups", []):
            need |= set(g.split())
        assert need <= groups, "groups missing from sysusers: %s" % (
            need - groups)


def test_deb_builds_with_expected_paths(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb not installed (tools/install-deps)")
    start = time.monotonic()
    r = run([str(TOP / "packaging" / "build-deb"), "-b", str(BUILDDIR),
             "-o", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    deb = r.stdout.strip().splitlines()[-1]
    assert deb.endswith(".deb") and Path(deb).is_file()
    elapsed = time.monotonic() - start
    assert elapsed < 120, "build-deb took %.0f s" % elapsed

    listing = run(["dpkg-deb", "-c", deb]).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    units = {p for p in paths if p.endswith(".service")}
    for want in ["/usr/sbin/tenantd", "/usr/bin/tenantctl",
                 "/usr/lib/sysusers.d/tenantd.conf",
                 "/usr/lib/tmpfiles.d/tenantd.conf",
                 "/etc/tenantd/tenantd.yaml"]:
        assert want in paths, "%s not in package:\n%s" % (want, listing)
    for name in UNITS:
        assert any(p.endswith("/systemd/system/%s.service" % name)
                   for p in units), units
    assert run(["dpkg-deb", "-f", deb, "Package"]).stdout.strip() == \
        "tenantd"

    ctl = tmp_path / "ctl"
    assert run(["dpkg-deb", "-e", deb, str(ctl)]).returncode == 0
    assert (ctl / "conffiles").read_text().split() == \
        ["/etc/tenantd/tenantd.yaml"]
    x = tmp_path / "x"
    assert run(["dpkg-deb", "-x", deb, str(x)]).returncode == 0
    assert (x / "etc/tenantd/tenantd.yaml").read_bytes() == \
        (TOP / "conf/tenantd.yaml").read_bytes()
