"""The memory a worker reports is its own: a worker started by a process that once held much more (the demo
after simulating and training, a benchmark) must not report its parent's peak, which Linux keeps in
``ru_maxrss`` across fork and exec (the demo's worker said 838 MB while its own peak was 117 MB)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamrec.consumers.procmem import resident_mb

PARENT_MB = 700

CHILD = textwrap.dedent("""
    import json, structlog
    from streamrec.consumers.engine import engine_config
    from streamrec.consumers.loop import Loop
    from streamrec.consumers.testing import MemoryCluster
    from streamrec.models.engine.recommender import Recommender
    from streamrec.stream.settings import Settings
    s = Settings()
    cluster = MemoryCluster()
    loop = Loop(s, Recommender(engine_config(s)), cluster.source(), cluster.sink(s.guarantee), cluster.changelog(),
                structlog.get_logger("test"))
    report = loop.report()
    print(json.dumps({"rss_mb": report["rss_mb"], "peak_rss_mb": report["peak_rss_mb"]}))
""")

PARENT = textwrap.dedent(f"""
    import subprocess, sys
    big = bytearray({PARENT_MB} * 1024 * 1024)
    for i in range(0, len(big), 4096):
        big[i] = 1          # resident, so this process's peak is over {PARENT_MB} MB
    del big                 # and given back before the child starts
    sys.stdout.write(subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True,
                                    check=True).stdout)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_worker_started_by_a_big_process_reports_its_own_memory() -> None:
    out = subprocess.run([sys.executable, "-c", PARENT, CHILD], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    mem = json.loads(out.strip().splitlines()[-1])
    assert 0 < mem["rss_mb"] <= mem["peak_rss_mb"] < PARENT_MB / 2, mem


def test_resident_mb_reads_the_process_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert resident_mb(status) == (100.0, 200.0)
    now, peak = resident_mb(tmp_path / "missing")   # no /proc: the rusage figure for both
    assert now == peak > 0
