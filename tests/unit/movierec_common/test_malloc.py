"""movierec_common.malloc: score-sized temporaries stop costing page faults per request."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A blended list's pattern: several ~400 KB float64 vectors alive at once, then freed.
_SCRIPT = """
import resource, sys
import numpy as np
from movierec_common.malloc import keep_freed_memory
if sys.argv[1] == "set":
    assert keep_freed_memory()
p = np.random.default_rng(0).random(50_906).astype(np.float32)
def blend():
    x = p.astype(np.float64); c = x - x.mean(); d = c * 2.0; e = d + x
    return float(e[0])
blend()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    blend()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def _faults_per_call(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_score_vectors_reuse_their_pages_once_set() -> None:
    default, kept = _faults_per_call("default"), _faults_per_call("set")
    # Each 400 KB block freshly mapped is ~100 page faults; reused, none.
    assert default > 100, default
    assert kept < 5, kept
