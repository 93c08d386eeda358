"""bench/bench_scale.py's report plumbing: target verdicts, its own section of REPORT.md, and the
import's server CPU per rating."""

from __future__ import annotations

from pathlib import Path

from bench.bench_scale import SECTION, Stack, verdict, write_report


def test_verdict_says_met_or_by_how_much_it_missed() -> None:
    assert verdict(0.49, 0.5) == "met"
    assert verdict(0.75, 0.5) == "missed by 50 %"
    assert verdict(40_000, 50_000, higher_is_better=True) == "missed by 20 %"
    assert verdict(60_000, 50_000, higher_is_better=True) == "met"
    assert verdict(None, 1.0) == "not measured"


def test_report_section_is_replaced_in_place_and_other_sections_kept(tmp_path: Path) -> None:
    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\n## Before\n\nkeep me\n\n## After\n\nand me\n")
    write_report(f"{SECTION}\n\nfirst run\n", report)
    assert report.read_text().endswith(f"## After\n\nand me\n\n{SECTION}\n\nfirst run\n")
    report.write_text(report.read_text() + "\n## Later\n\nkept\n")
    write_report(f"{SECTION}\n\nsecond run\n", report)
    text = report.read_text()
    assert "first run" not in text and text.count(SECTION) == 1
    assert text.index("## Before") < text.index("second run") < text.index("## Later")
    assert "keep me" in text and "and me" in text and text.endswith("kept\n")


def test_server_cpu_per_rating_spans_the_logged_import_only() -> None:
    stack = Stack(proc=None, env={}, log=Path("unused"))  # type: ignore[arg-type]
    # (time, server CPU s, started logged, finished logged): movies before, index builds after.
    stack.import_samples = [
        (0.0, 5.0, False, False),
        (2.0, 6.0, False, False),
        (4.0, 7.5, True, False),
        (6.0, 9.0, True, False),
        (8.0, 10.0, True, True),
    ]
    assert stack.server_us_per_rating(20_000) == 1e6 * (10.0 - 6.0) / 20_000
    assert stack.server_us_per_rating(None) is None
    stack.import_samples = stack.import_samples[:4]  # still importing
    assert stack.server_us_per_rating(20_000) is None
