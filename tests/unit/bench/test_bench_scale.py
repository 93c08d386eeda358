"""bench/bench_scale.py's report plumbing: target verdicts, its own section of REPORT.md, and the
import's server CPU per rating."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench_scale import (
    IMPORT_RECORD,
    SECTION,
    Stack,
    save_import_record,
    verdict,
    write_report,
)


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


def test_import_record_is_parsed_from_the_stack_log_and_kept_in_var_dir(tmp_path: Path) -> None:
    log = tmp_path / "stack.log"
    log.write_text(
        "mongo-init.1 | INFO movierec_init.importer: ratings import started: 20000 ratings\n"
        "mongo-init.1 | INFO movierec_init.importer: ratings imported: 20000 in 4.0 s "
        "(5000 ratings/s)\n"
        "mongo-init.1 | INFO movierec_init.schema: index ratings.user_time ready "
        "(20000 documents, 0.6 s)\n"
    )
    stack = Stack(proc=None, env={}, log=log)  # type: ignore[arg-type]
    stack.import_samples = [(0.0, 6.0, False, False), (8.0, 10.0, True, True)]
    rec = stack.import_record()
    assert rec == {
        "ratings": 20000,
        "seconds": 4.0,
        "rate": 5000.0,
        "server_us_per_rating": 200.0,
        "index_seconds": {"user_time": 0.6},
    }
    save_import_record(tmp_path, stack.import_record())
    first = json.loads((tmp_path / IMPORT_RECORD).read_text())
    assert first["ratings"] == 20000 and first["commit"] and first["measured"].endswith("UTC")
    # A later save (another index done) keeps when and where the import was measured.
    with log.open("a") as f:
        f.write(
            "INFO movierec_init.schema: index ratings.timestamp ready (20000 documents, 0.4 s)\n"
        )
    first["measured"] = "2000-01-01 00:00 UTC"
    (tmp_path / IMPORT_RECORD).write_text(json.dumps(first))
    save_import_record(tmp_path, stack.import_record())
    again = json.loads((tmp_path / IMPORT_RECORD).read_text())
    assert again["measured"] == "2000-01-01 00:00 UTC"
    assert again["index_seconds"] == {"user_time": 0.6, "timestamp": 0.4}
    # A VAR_DIR whose import was skipped (no "ratings imported" line) gets no record.
    skipped = Stack(proc=None, env={}, log=tmp_path / "rerun.log")  # type: ignore[arg-type]
    skipped.log.write_text(
        "INFO movierec_init.schema: index ratings.user_time ready (9 documents, 0.0 s)\n"
    )
    assert skipped.import_record() is None
