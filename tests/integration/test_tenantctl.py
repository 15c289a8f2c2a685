"""tenantctl against a real tenantd: output, exit codes, reload and
check-config, and the control socket's peer checks."""
import json
import os
import re
import stat
import subprocess
import tempfile

import pytest

from conftest import TENANTCTL, TENANTD

BAD_KEY_LINE = "listn: oops"


def ctl(*args, user=None, group="nogroup", groups=None, timeout=90):
    """Run tenantctl; as user, with primary group and supplementary groups."""
    cmd = [TENANTCTL] + list(args)
    if user is not None:
        cmd = ["setpriv", "--reuid=%s" % user, "--regid=%s" % group,
               "--groups=%s" % groups if groups else "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def socket_of(d):
    return d.conf["control"]["socket"]


def write_bad_config(d):
    """Insert an unknown key at a known line; return that line number."""
    lines = d.conf_path.read_text().splitlines()
    lines.insert(1, BAD_KEY_LINE)
    d.write_config(text="\n".join(lines) + "\n")
    return 2


@pytest.fixture
def open_dir():
    """A directory anyone may traverse, for sockets other users reach."""
    path = tempfile.mkdtemp(prefix="tenantctl-")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def test_status_human(tenantd):
    d = tenantd()
    r = ctl("-c", str(d.conf_path), "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.fullmatch(r"tenantd (\S+) \(pid (\d+)\), up (\d+d)?(\d+h)?(\d+m)?\d+s",
                     lines[0])
    assert m, r.stdout
    assert int(m.group(2)) == d.proc.pid
    assert lines[1] == "config: %s" % d.conf_path
    assert lines[2].startswith("listeners: ")
    assert "https %s" % d.address("https") in lines[2]
    assert lines[3] == "ready: yes"
    assert "  config ok" in lines[4:]
    assert all(l.startswith("  ") and l.endswith(" ok") for l in lines[4:]), r.stdout


def test_status_json(tenantd):
    d = tenantd()
    r = ctl("-c", str(d.conf_path), "--json", "status")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    version = subprocess.run([TENANTD, "-V"], capture_output=True, text=True)
    assert version.stdout.strip() == "tenantd %s" % status["version"]
    assert status["pid"] == d.proc.pid
    assert status["config"] == str(d.conf_path)
    assert isinstance(status["uptime_s"], int) and status["uptime_s"] >= 0
    assert {"address": d.address("https"), "scheme": "https"} in status["listeners"]
    assert status["ready"] is True
    assert {"name", "ok", "detail"} <= set(status["checks"][0])


def test_reload(tenantd):
    d = tenantd()
    mark = len(d.snapshot())
    r = ctl("-c", str(d.conf_path), "reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration reloaded from %s" % d.conf_path
    d.wait_log("configuration reloaded", start=mark)
    r = ctl("-c", str(d.conf_path), "audit", "export", "--format", "jsonl",
            "--action", "config.reload")
    audit = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(audit) == 1
    assert audit[0]["actor"] == "operator:%d" % os.geteuid()
    assert audit[0]["outcome"] == "ok"


def test_check_config_good_then_bad(tenantd):
    d = tenantd()
    sock = socket_of(d)
    r = ctl("-c", str(d.conf_path), "check-config")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK: %s" % d.conf_path

    line = write_bad_config(d)
    where = re.compile(r"%s:%d:\d+: " % (re.escape(str(d.conf_path)), line))
    # the daemon's own check, reached with -s since the file is now broken
    r = ctl("-s", sock, "check-config")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert where.search(r.stderr), r.stderr
    assert "listn" in r.stderr
    # reading the socket path from the broken file fails the same way
    r = ctl("-c", str(d.conf_path), "check-config")
    assert r.returncode == 1
    assert where.search(r.stderr), r.stderr
    # checking applied nothing: the daemon is still up and ready
    r = ctl("-s", sock, "--json", "status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == d.proc.pid


def test_reload_bad_config_keeps_the_old_one(tenantd):
    d = tenantd()
    line = write_bad_config(d)
    r = ctl("-s", socket_of(d), "reload")
    assert r.returncode == 1
    assert re.search(r"%s:%d:\d+: " % (re.escape(str(d.conf_path)), line), r.stderr)
    assert d.proc.poll() is None
    r = ctl("-s", socket_of(d), "--json", "status")
    assert r.returncode == 0 and json.loads(r.stdout)["ready"] is True


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["status", "extra"], ["--no-such-option", "status"],
    ["-c"],
])
def test_usage_error(args):
    r = ctl("-s", "/nonexistent/control.sock", *args)
    assert r.returncode == 2, (args, r.stderr)
    assert "usage: tenantctl" in r.stderr
    assert r.stdout == ""


def test_help_lists_commands():
    r = ctl("--help")
    assert r.returncode == 0
    for name in ("status", "reload", "check-config"):
        assert re.search(r"^  %s " % name, r.stdout, re.M), r.stdout


def test_unreachable_no_socket(tmp_path):
    sock = str(tmp_path / "none.sock")
    r = ctl("-s", sock, "status")
    assert r.returncode == 3
    assert sock in r.stderr
    assert "No such file or directory" in r.stderr


def test_unreachable_after_stop_and_stale_socket(tenantd):
    d = tenantd()
    sock = socket_of(d)
    d.kill()                                # SIGKILL: the socket file stays
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    r = ctl("-c", str(d.conf_path), "status")
    assert r.returncode == 3
    assert sock in r.stderr and "Connection refused" in r.stderr
    # the next daemon removes the stale socket and answers
    d2 = tenantd({"control": {"socket": sock}})
    r = ctl("-s", sock, "--json", "status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == d2.proc.pid


def test_second_daemon_refuses_a_live_socket(tenantd):
    d = tenantd()
    d2 = tenantd({"control": {"socket": socket_of(d)}}, start=False)
    d2.start(wait=False)
    d2.proc.wait(60)
    assert d2.proc.returncode != 0
    assert "in use" in d2.stderr_text()
    assert ctl("-s", socket_of(d), "status").returncode == 0


def test_socket_modes(tenantd):
    d = tenantd()
    sock = socket_of(d)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o750


def test_unauthorized_peer_refused(tenantd, open_dir):
    sock = os.path.join(open_dir, "run", "control.sock")
    d = tenantd({"control": {"socket": sock}})
    # open the file modes so the credential check is what refuses nobody
    os.chmod(os.path.dirname(sock), 0o755)
    os.chmod(sock, 0o666)
    mark = len(d.snapshot())
    r = ctl("-s", sock, "status", user="nobody")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "permission denied: uid 65534" in r.stderr
    assert r.stdout == ""
    warn = d.wait_log(lambda l: "permission denied" in l.get("msg", ""), start=mark)
    assert warn["level"] == "warn" and warn["uid"] == "65534"
    # the same socket answers root: the refusal was about the peer
    assert ctl("-s", sock, "status").returncode == 0


@pytest.mark.parametrize("group,groups", [("nogroup", None), ("daemon", "nogroup")],
                         ids=["primary", "supplementary"])
def test_admin_group_member_allowed(tenantd, open_dir, group, groups):
    sock = os.path.join(open_dir, "run", "control.sock")
    d = tenantd({"control": {"socket": sock, "group": "nogroup"}})
    st = os.stat(sock)
    assert st.st_gid == 65534 and stat.S_IMODE(st.st_mode) == 0o660
    r = ctl("-s", sock, "--json", "status", user="nobody", group=group,
            groups=groups)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == d.proc.pid
    # a peer outside the group is refused, even through open file modes
    os.chmod(os.path.dirname(sock), 0o755)
    os.chmod(sock, 0o666)
    r = ctl("-s", sock, "status", user="nobody", group="daemon")
    assert r.returncode == 1 and "permission denied" in r.stderr
