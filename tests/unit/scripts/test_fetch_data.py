"""`make data DATASET=...`: each release's zip is checked against its MD5 before extraction and
the loader reads the result (zips built by the test in each release's layout; no download)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from movierec_common.loader import load_dataset

from scripts import fetch_data
from tests.support.layouts import write_csv, write_ml1m, write_ml10m, write_ml100k

WRITERS = {
    "ml-100k": write_ml100k,
    "ml-1m": write_ml1m,
    "ml-10m": write_ml10m,
    "ml-20m": write_csv,
    "ml-25m": write_csv,
    "ml-32m": write_csv,
}


def _zip_of(release: fetch_data.Release, src: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"{release.folder}/{f.name}")
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_release_zip_verified_extracted_and_loaded(tmp_path: Path, name: str) -> None:
    release = fetch_data.RELEASES[name]
    WRITERS[name](tmp_path / "src")
    blob = _zip_of(release, tmp_path / "src")
    z = tmp_path / f"{name}.zip"
    z.write_bytes(blob)
    dest = tmp_path / "data" / name
    good = hashlib.md5(blob).hexdigest()
    assert fetch_data.main(["--zip", str(z), "--md5", "0" * 32, "--dest", str(dest)]) == 2
    assert not (dest / release.files[0]).exists()  # nothing extracted from a bad zip
    # The dataset comes from the destination folder's name (as under make run / Compose).
    assert fetch_data.main(["--zip", str(z), "--md5", good, "--dest", str(dest)]) == 0
    assert fetch_data.verified(release, dest)
    ds = load_dataset(dest)
    assert len(ds.ratings) > 0 and ds.movies and not ds.summary.issues


def test_published_md5_formats_parse() -> None:
    h = "c4d9eecfca2ab87c1945afe126590906"
    assert fetch_data.parse_md5(f"{h}  ml-1m.zip\n") == h
    assert fetch_data.parse_md5(f"MD5 (ml-1m.zip) = {h.upper()}\n") == h


def test_own_data_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    write_csv(d)
    before = (d / "ratings.csv").read_bytes()
    assert fetch_data.main(["--dest", str(d)]) == 0
    assert (d / "ratings.csv").read_bytes() == before
