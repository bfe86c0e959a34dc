"""The plan's HTML report renders in a real headless browser (Debian chromium) without console errors."""

import re
import shutil
import subprocess

import pytest

from phasewise.apps.plan_view import winners_detail
from phasewise.apps.report import write_report
from phasewise.plan import PlanOptions, WorkloadSpec, plan
from phasewise.sim import Slo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = WorkloadSpec((512, 1024, 2048), (64, 128, 256), name="mixed")
    slo = Slo(1000, 50)
    res = plan("meta-llama/Llama-3.1-8B", "h100-sxm", 2, slo, work, refine=2, workers=1,
               opts=PlanOptions(tp_options=(1, 2), chunk_sizes=(512,), ratios=((1, 1),)))
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(res, winners_detail(res, work, slo, count=2), path)
    return path


def test_report_is_self_contained(report):
    text = report.read_text()
    assert "<script" in text and "Plotly.newPlot" in text
    assert not re.search(r'src="https?://', text)  # nothing fetched from the network
    for title in ("SLO attainment vs request rate", "TTFT CDF", "TPOT CDF", "Throughput per GPU vs per-user",
                  "Roofline utilization per instance"):
        assert title in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    dom = proc.stdout
    assert dom.count('class="main-svg"') >= 5  # every figure was drawn by plotly.js
    assert "Ranked strategies" in dom
