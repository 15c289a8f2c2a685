"""Turn a pytest JUnit XML report into TAP lines (one per test case)."""
import sys
import xml.etree.ElementTree as ET


def main(path):
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, FileNotFoundError) as e:
        print("1..1")
        print("not ok 1 - pytest produced no report (%s)" % e)
        return
    cases = root.iter("testcase")
    n = 0
    lines = []
    for case in cases:
        n += 1
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped")
        if skipped is not None:
            lines.append("ok %d - %s # SKIP %s" % (n, name, skipped.get("message", "")[:200].replace("\n", " ")))
        elif failed:
            lines.append("not ok %d - %s" % (n, name))
            el = case.find("failure") if case.find("failure") is not None else case.find("error")
            for line in (el.get("message") or "").splitlines()[:20]:
                lines.append("# " + line)
        else:
            lines.append("ok %d - %s" % (n, name))
    if n == 0:
        lines.append("not ok 1 - no test ran")
        n = 1
    print("1..%d" % n)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
