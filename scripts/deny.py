"""Checks `cargo metadata` (stdin) against deny.toml's [licenses] allow list and [sources]:
every package's SPDX license expression must be satisfiable with allowed licenses, and every
package must come from the workspace or an allowed registry. Prints each offender; exits 1 if any.
"""
import json
import re
import sys
import tomllib


def satisfied(expr: str, allowed: set) -> bool:
    """True when the SPDX expression `expr` can be met using only `allowed` licenses."""
    # Old crates write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    tokens = re.findall(r"\(|\)|[A-Za-z0-9.+-]+", expr.replace("/", " OR "))
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary():
        if peek() == "(":
            take()
            v = disjunction()
            if take() != ")":
                raise ValueError(expr)
            return v
        name = take()
        if peek() == "WITH":
            take()
            name = f"{name} WITH {take()}"
        return name in allowed

    def conjunction():
        v = primary()
        while peek() == "AND":
            take()
            v = primary() and v
        return v

    def disjunction():
        v = conjunction()
        while peek() == "OR":
            take()
            v = conjunction() or v
        return v

    result = disjunction()
    if pos != len(tokens):
        raise ValueError(expr)
    return result


def main() -> int:
    policy = tomllib.load(open(sys.argv[1], "rb"))
    allowed = set(policy["licenses"]["allow"])
    registries = {"registry+" + r for r in policy["sources"].get("allow-registry", [])}
    meta = json.load(sys.stdin)
    members = set(meta["workspace_members"])
    bad = []
    for p in meta["packages"]:
        name = f"{p['name']} {p['version']}"
        source = p.get("source")
        if p["id"] not in members and source not in registries:
            bad.append(f"{name}: from {source}, not an allowed registry")
        lic = p.get("license")
        if not lic:
            bad.append(f"{name}: no SPDX license (license-file only); review it and list it")
            continue
        try:
            if not satisfied(lic, allowed):
                bad.append(f"{name}: license {lic!r} is not among deny.toml's allowed")
        except (ValueError, IndexError):
            bad.append(f"{name}: cannot read license expression {lic!r}")
    for b in bad:
        print(b)
    print(f"{len(meta['packages'])} packages: licenses and sources "
          + ("ok" if not bad else f"FAILED ({len(bad)})"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
