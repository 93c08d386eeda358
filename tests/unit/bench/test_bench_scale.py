"""bench/bench_scale.py's report plumbing: target verdicts and its own section of REPORT.md."""

from __future__ import annotations

from pathlib import Path

from bench.bench_scale import SECTION, verdict, write_report


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
