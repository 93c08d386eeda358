"""`make audit`: pip-audit over the project's installed dependencies, with a reasoned ignore list.

Fails (exit 1) when a dependency has a known vulnerability that is not in
scripts/audit_ignore.toml; every entry there must say why it is accepted (and until when it
should be re-checked), otherwise the audit fails too. Fix a finding by bumping the pin in
pyproject.toml; ignore one only with a reason.

pip-audit asks PyPI's per-release JSON API (https://pypi.org/pypi/<name>/<version>/json). Where
that API does not answer (a network that reaches only the package index, as on the project's
build machines), pip-audit skips every package. That is reported loudly, with the count, and is
not treated as "clean": the summary says nothing was audited. `--strict` (AUDIT_STRICT=1) then
fails instead, for CI environments that can reach the API.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ROOT / "scripts" / "audit_ignore.toml"
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"


def load_ignores(path: Path = IGNORE_FILE) -> dict[str, str]:
    """{vulnerability id: reason}; an entry without a real reason is a configuration error."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    out: dict[str, str] = {}
    for entry in data.get("ignore", []):
        vid, reason = entry.get("id", "").strip(), entry.get("reason", "").strip()
        if not vid or len(reason) < 20:
            raise SystemExit(f"audit: {path.name}: entry {entry!r} needs an id and a reason")
        out[vid] = reason
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get("AUDIT_STRICT") == "1",
        help="fail when packages could not be audited (AUDIT_STRICT=1)",
    )
    args = p.parse_args()
    ignores = load_ignores()
    cmd = [str(PIP_AUDIT), "--skip-editable", "--progress-spinner", "off", "-f", "json"]
    for vid in ignores:
        cmd += ["--ignore-vuln", vid]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
        print("audit: pip-audit did not produce a report", file=sys.stderr)
        return 1
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    findings = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
    for name, version, v in findings:
        fixes = ", ".join(v.get("fix_versions", [])) or "no fixed release"
        print(f"VULNERABLE {name} {version}: {v['id']} (fixed in: {fixes})")
    for vid, reason in ignores.items():
        print(f"ignored {vid}: {reason}")
    print(
        f"audit: {len(audited)} packages audited, {len(skipped)} skipped, "
        f"{len(findings)} known vulnerabilities, {len(ignores)} ignored with a reason"
    )
    if skipped and not audited:
        print(
            "audit: WARNING: the vulnerability service answered for no package (PyPI's "
            "per-release JSON API is unreachable from this network), so NOTHING WAS AUDITED; "
            f"e.g. {skipped[0]['skip_reason']}",
            file=sys.stderr,
        )
        return 1 if args.strict else 0
    if skipped and args.strict:
        return 1
    return 1 if findings or proc.returncode not in (0, 1) else 0


if __name__ == "__main__":
    sys.exit(main())
