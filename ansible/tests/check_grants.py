"""Checks SHOW GRANTS output (stdin, one grant per line) against the exact expected grants.

  python3 check_grants.py LABEL 'OBJECT=PRIV,PRIV' ['OBJECT=PRIV,...' ...] < show-grants.txt

OBJECT is as the server prints it, e.g. *.* or `app`.* (backquotes optional). The account
must hold exactly the listed privileges on exactly the listed objects: nothing missing,
nothing more, no GRANT OPTION, no role and no proxy grant.
"""

import re
import sys

GRANT = re.compile(
    r"GRANT (?P<privs>.+?) ON (?P<obj>\S+) TO \S+"
    r"(?: IDENTIFIED (?:BY PASSWORD|VIA|WITH) .*?)?(?P<grant_option> WITH GRANT OPTION)?$"
)


def norm_obj(obj: str) -> str:
    return obj.replace("`", "")


def main(label: str, expected_args: list) -> None:
    expected = {}
    for arg in expected_args:
        obj, _, privs = arg.partition("=")
        expected[norm_obj(obj)] = {p.strip().upper() for p in privs.split(",") if p.strip()}

    actual = {}
    lines = [l.strip() for l in sys.stdin.read().splitlines() if l.strip()]
    assert lines, f"{label}: no grants (does the account exist?)"
    for line in lines:
        assert not line.startswith("GRANT PROXY"), f"{label}: proxy grant: {line}"
        m = GRANT.fullmatch(line)
        assert m, f"{label}: unexpected grant line: {line}"
        assert not m.group("grant_option"), f"{label}: WITH GRANT OPTION: {line}"
        obj = norm_obj(m.group("obj"))
        assert obj not in actual, f"{label}: two grant lines on {obj}"
        actual[obj] = {p.strip().upper() for p in m.group("privs").split(",")}
    if actual != expected:
        raise SystemExit(
            f"{label}: grants differ\n  expected: {sorted((o, sorted(p)) for o, p in expected.items())}\n"
            f"  actual:   {sorted((o, sorted(p)) for o, p in actual.items())}\n  SHOW GRANTS:\n    "
            + "\n    ".join(re.sub(r"'\*[0-9A-F]{40}'", "'<hash>'", l) for l in lines))
    print(f"ok: {label}: exactly the expected grants on {', '.join(sorted(expected))}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
