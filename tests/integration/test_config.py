"""Configuration checking through `tenantd -n -c FILE`: each malformed config
must exit 1 with the exact FILE:LINE:COL: message lines on stderr; good
configs, the development sample and the production sample must pass."""
import os
import pathlib
import re
import subprocess

import pytest

from conftest import TENANTD, TOP

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

# @CERT@, @KEY@ and @DIR@ are replaced by per-test paths. Line 1 is tenant_id.
GOOD = """\
tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
state_dir: @DIR@/state
listen:
  - address: "127.0.0.1:0"
tls:
  certificate: @CERT@
  key: @KEY@
control:
  socket: @DIR@/control.sock
"""


@pytest.fixture
def files(tmp_path):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("certificate\n")
    key.write_text("key\n")
    key.chmod(0o600)
    return {"@DIR@": str(tmp_path), "@CERT@": str(cert), "@KEY@": str(key)}


def check(path, env=None, cwd=None):
    e = dict(os.environ)
    e.pop("CREDENTIALS_DIRECTORY", None)
    e.update(env or {})
    return subprocess.run([TENANTD, "-n", "-c", str(path)], capture_output=True,
                          text=True, timeout=30, env=e, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def write(tmp_path, files, text, name="tenantd.yaml"):
    for k, v in files.items():
        text = text.replace(k, v)
    path = tmp_path / name
    path.write_text(text)
    return path


def expect_errors(path, lines, env=None):
    r = check(path, env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "configuration OK" not in r.stdout
    assert r.stderr == "".join("%s:%s\n" % (path, l) for l in lines)


# (id, config text, expected "LINE:COL: message" lines)
BAD = [
    ("unknown-key-hint", GOOD + "lsten: []\n",
     ["10:1: unknown key 'lsten' (did you mean 'listen'?)"]),
    ("unknown-nested-key-hint", GOOD + "http:\n  idle_timout: 5s\n",
     ["11:3: unknown key 'idle_timout' in 'http' (did you mean 'idle_timeout'?)"]),
    ("unknown-key-no-hint", GOOD + "http:\n  listn: 1\n",
     ["11:3: unknown key 'listn' in 'http'"]),
    ("unknown-key-in-list-item", GOOD.replace('"127.0.0.1:0"\n', '"127.0.0.1:0"\n    tsl: true\n'),
     ["5:5: unknown key 'tsl' in 'listen[0]' (did you mean 'tls'?)"]),
    ("duplicate-key", GOOD + "state_dir: /x\n",
     ["10:1: duplicate key 'state_dir' (first at 2:1)"]),
    ("duration-type", GOOD + "http:\n  idle_timeout: 30\n",
     ["11:17: http.idle_timeout: expected a duration like 30s, 15m, 90d, got '30'"]),
    ("duration-range", GOOD + "http:\n  request_timeout: 0s\n",
     ["11:20: http.request_timeout: 0s is out of range (allowed 1s to 10m)"]),
    ("duration-whole-seconds", GOOD + "cors:\n  max_age: 2500ms\n",
     ["11:12: cors.max_age: 2500ms is not a whole number of seconds"]),
    ("size-type", GOOD + "http:\n  max_body_size: 1TB\n",
     ["11:18: http.max_body_size: expected a size like 512, 64KiB, 1MiB, got '1TB'"]),
    ("size-range", GOOD + "http:\n  max_header_size: 2MiB\n",
     ["11:20: http.max_header_size: 2MiB is out of range (allowed 1KiB to 1MiB)"]),
    ("int-range", GOOD + "http:\n  workers: 1000\n",
     ["11:12: http.workers: 1000 is out of range (allowed 0 to 256)"]),
    ("int-type", GOOD + "http:\n  max_connections: 1e3\n",
     ["11:20: http.max_connections: expected an integer, got '1e3'"]),
    ("bool-strict", GOOD + "metrics:\n  allow_remote: yes\n",
     ["11:17: metrics.allow_remote: expected true or false, got 'yes'"]),
    ("enum-hint", GOOD + "log:\n  level: warning\n",
     ["11:10: log.level: expected one of error, warn, info, debug, got 'warning'"]),
    ("enum-typo", GOOD + "log:\n  level: debgu\n",
     ["11:10: log.level: expected one of error, warn, info, debug, got 'debgu' "
      "(did you mean 'debug'?)"]),
    ("map-expected", GOOD + "http: 8\n",
     ["10:7: http: expected a map, not a single value"]),
    ("no-value", GOOD + "metrics:\n  allow_remote:\n",
     ["11:16: metrics.allow_remote: no value given"]),
    ("missing-tenant-id", GOOD.replace("tenant_id: " + GUID + "\n", ""),
     ["1:1: missing required key 'tenant_id'"]),
    ("bad-guid", GOOD.replace(GUID, "contoso.onmicrosoft.com"),
     ["1:12: tenant_id: 'contoso.onmicrosoft.com' is not a GUID like "
      "72f988bf-86f1-41af-91ab-2d7cd011db47"]),
    ("no-listeners", GOOD.replace('listen:\n  - address: "127.0.0.1:0"\n', "listen: []\n"),
     ["3:9: listen: needs at least 1 item"]),
    ("plaintext-not-loopback", GOOD.replace('"127.0.0.1:0"\n', '"0.0.0.0:8080"\n    tls: false\n'),
     ["5:10: listen[0]: tls: false is only allowed on a loopback address, not 0.0.0.0:8080"]),
    ("bad-address", GOOD.replace('"127.0.0.1:0"', "localhost:8443"),
     ["4:14: listen[0].address: 'localhost' is not an IPv4 or IPv6 address "
      "(like 0.0.0.0:8443, [::]:8443, *:8443)"]),
    ("bad-port", GOOD.replace('"127.0.0.1:0"', '"127.0.0.1:70000"'),
     ["4:14: listen[0].address: port must be a number from 0 to 65535 "
      "(like 0.0.0.0:8443, [::]:8443, *:8443)"]),
    ("tls-required", GOOD.split("tls:\n")[0] + "control:\n  socket: @DIR@/c.sock\n",
     ["1:1: missing required key 'tls' (listen[0] has tls: true)"]),
    ("tls-missing-key", GOOD.replace("  key: @KEY@\n", ""),
     ["6:3: missing required key 'key' in 'tls'"]),
    ("tls-scalar-typo", GOOD.replace("tls:\n  certificate: @CERT@\n  key: @KEY@\n", "tls: self_signed\n"),
     ["5:6: tls: expected a map or 'self-signed', got 'self_signed'"]),
    ("certificate-missing", GOOD.replace("@CERT@", "@DIR@/nope.pem"),
     ["6:16: tls.certificate: cannot read @DIR@/nope.pem: No such file or directory"]),
    ("inline-secret", GOOD.replace("@KEY@", '"-----BEGIN PRIVATE KEY-----\\nMIIE"'),
     ["7:8: tls.key: inline secrets are not allowed; give a file path or credential:NAME"]),
    ("secret-scheme", GOOD.replace("@KEY@", "env:TLS_KEY"),
     ["7:8: tls.key: unknown secret scheme 'env:'; give a file path or credential:NAME"]),
    ("credential-without-directory", GOOD.replace("@KEY@", "credential:tls-key"),
     ["7:8: tls.key: credential:tls-key needs $CREDENTIALS_DIRECTORY, which is not "
      "set (use LoadCredential= in the systemd unit)"]),
    ("credential-bad-name", GOOD.replace("@KEY@", "credential:../key"),
     ["7:8: tls.key: credential name must be 1 to 64 of A-Z a-z 0-9 _ . - (and not . or ..)"]),
    ("cors-wildcard", GOOD + "cors:\n  allowed_origins: [\"https://*.sharepoint.com\"]\n",
     ["11:21: cors.allowed_origins[0]: origin 'https://*.sharepoint.com' is a wildcard; "
      "list each origin exactly"]),
    ("cors-trailing-slash", GOOD + "cors:\n  allowed_origins:\n    - https://contoso.sharepoint.com/\n",
     ["12:7: cors.allowed_origins[0]: origin 'https://contoso.sharepoint.com/' must not "
      "end with '/'"]),
    ("cors-path", GOOD + "cors:\n  allowed_origins:\n    - https://contoso.sharepoint.com/sites/x\n",
     ["12:7: cors.allowed_origins[0]: origin 'https://contoso.sharepoint.com/sites/x' "
      "must not have a path, query or fragment"]),
    ("cors-http", GOOD + "cors:\n  allowed_origins:\n    - http://contoso.sharepoint.com\n",
     ["12:7: cors.allowed_origins[0]: origin 'http://contoso.sharepoint.com' must use "
      "https:// (http:// only for localhost)"]),
    ("control-group", GOOD + "  group: no-such-group-tenantd\n",
     ["10:10: control.group: group 'no-such-group-tenantd' does not exist"]),
    ("anchor-alias", GOOD + "http: &h\n  workers: 1\nmetrics: *h\n",
     ["10:7: YAML anchors and aliases are not allowed",
      "12:10: YAML anchors and aliases are not allowed"]),
    ("yaml-tag", GOOD + "http: !!map\n  workers: 1\n",
     ["10:7: YAML tags are not allowed"]),
    ("two-documents", GOOD + "---\ntenant_id: x\n",
     ["10:1: only one YAML document is allowed"]),
    ("empty-file", "", ["1:1: configuration is empty"]),
    ("only-comments", "# tenant_id: x\n\n", ["1:1: configuration is empty"]),
    ("top-level-list", "- tenant_id: x\n",
     ["1:1: expected a map of settings at the top level"]),
    ("yaml-syntax", GOOD + "http:\n  workers: 1\n bad: 2\n",
     ["12:2: YAML syntax error: did not find expected key (while parsing a block "
      "mapping at 1:1)"]),
    ("yaml-indent", GOOD + "cors:\n  max_age: 1m\n   x: 1\n",
     ["12:5: YAML syntax error: mapping values are not allowed in this context"]),
    ("several-errors", GOOD.replace(GUID, "x") + "http:\n  workers: -1\n  bogus: 1\nlog: {level: loud}\n",
     ["1:12: tenant_id: 'x' is not a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47",
      "11:12: http.workers: -1 is out of range (allowed 0 to 256)",
      "12:3: unknown key 'bogus' in 'http'",
      "13:14: log.level: expected one of error, warn, info, debug, got 'loud'"]),
]


@pytest.mark.parametrize("text,lines", [(t, l) for _, t, l in BAD], ids=[i for i, _, _ in BAD])
def test_malformed(tmp_path, files, text, lines):
    path = write(tmp_path, files, text)
    expect_errors(path, [l.replace("@DIR@", files["@DIR@"]) for l in lines])


def test_distinct_cases():
    assert len(BAD) >= 22
    assert len({t for _, t, _ in BAD}) == len(BAD)


def test_good_config(tmp_path, files):
    r = check(write(tmp_path, files, GOOD))
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_key_permissions(tmp_path, files):
    os.chmod(files["@KEY@"], 0o644)
    path = write(tmp_path, files, GOOD)
    expect_errors(path, ["7:8: tls.key: key file %s is readable by group or others "
                         "(mode 0644); chmod 600 it" % files["@KEY@"]])
    os.chmod(files["@KEY@"], 0o620)
    expect_errors(path, ["7:8: tls.key: key file %s is writable by group or others "
                         "(mode 0620); chmod 600 it" % files["@KEY@"]])
    os.chmod(files["@KEY@"], 0o400)
    assert check(path).returncode == 0


def test_key_not_regular(tmp_path, files):
    path = write(tmp_path, files, GOOD.replace("@KEY@", "@DIR@"))
    expect_errors(path, ["7:8: tls.key: key file %s is not a regular file" % files["@DIR@"]])


def test_credential(tmp_path, files):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tls-key").write_text("key\n")
    (creds / "tls-key").chmod(0o400)
    path = write(tmp_path, files, GOOD.replace("@KEY@", "credential:tls-key"))
    r = check(path, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")
    (creds / "tls-key").unlink()
    expect_errors(path, ["7:8: tls.key: key file %s/tls-key: No such file or directory" % creds],
                  env={"CREDENTIALS_DIRECTORY": str(creds)})


def test_too_large(tmp_path, files):
    path = write(tmp_path, files, GOOD + "#" * (1024 * 1024) + "\n")
    expect_errors(path, ["1:1: file is larger than 1 MiB"])


def test_not_utf8(tmp_path, files):
    path = tmp_path / "tenantd.yaml"
    path.write_bytes(write(tmp_path, files, GOOD).read_bytes() + b"state_dir: /v\xe9r\n")
    expect_errors(path, ["10:15: invalid input: invalid trailing UTF-8 octet (0x72)"])


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    expect_errors(path, ["1:1: cannot open: No such file or directory"])


def test_too_many_errors(tmp_path, files):
    path = write(tmp_path, files, GOOD + "".join("k%d: 1\n" % i for i in range(80)))
    r = check(path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 51
    assert lines[0] == "%s:10:1: unknown key 'k0'" % path
    assert lines[-1] == "%s:60:1: too many errors, giving up" % path


def test_dev_config(tmp_path):
    r = check(TOP / "conf" / "tenantd.dev.yaml", cwd=str(tmp_path))
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_production_sample(tmp_path, files):
    text = (TOP / "conf" / "tenantd.yaml").read_text()
    assert "/etc/tenantd/tls/cert.pem" in text and "/etc/tenantd/tls/key.pem" in text
    # Unchanged, the sample names files this machine does not have.
    r = check(TOP / "conf" / "tenantd.yaml")
    assert r.returncode == 1 and "tls.certificate: cannot read" in r.stderr
    text = text.replace("/etc/tenantd/tls/cert.pem", files["@CERT@"])
    text = text.replace("/etc/tenantd/tls/key.pem", files["@KEY@"])
    path = tmp_path / "tenantd.yaml"
    path.write_text(text)
    r = check(path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_production_sample_documents_every_key():
    """Every key the docs describe appears in the annotated sample."""
    sample = (TOP / "conf" / "tenantd.yaml").read_text()
    doc = (TOP / "docs" / "CONFIGURATION.md").read_text()
    keys = set(re.findall(r"^### `([a-z_.\[\]]+)`", doc, re.M))
    assert len(keys) >= 20
    for key in keys:
        leaf = key.split(".")[-1].replace("[]", "")
        assert re.search(r"^\s*#?\s*-?\s*%s:" % re.escape(leaf), sample, re.M), key
