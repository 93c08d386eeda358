"""Tiny directories in each MovieLens release layout (ml-100k, ml-1m, ml-10m, the CSV
releases), for the loader and fetch_data tests."""

from __future__ import annotations

from pathlib import Path


def write_ml100k(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "u.data").write_bytes(
        b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
        b"196\t242\t5\t881250999\n"
    )
    flags = ["0"] * 19
    drama = flags.copy()
    drama[8] = "1"
    kids = flags.copy()
    kids[3], kids[4] = "1", "1"
    rows = [
        f"242|Kolya (1996)|24-Jan-1997||http://x|{'|'.join(drama)}",
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{'|'.join(flags)}",
        f"377|Heavyweights (1994)|01-Jan-1994||http://x|{'|'.join(kids)}",
        f"999|Misérables, Les (1995)|01-Jan-1995||http://x|{'|'.join(drama)}",
    ]
    (d / "u.item").write_bytes("\n".join(rows).encode("iso-8859-1") + b"\n")


def write_ml1m(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n")
    (d / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Misérables, Les (1995)::Drama\n".encode("iso-8859-1")
    )
    (d / "users.dat").write_bytes(b"1::F::1::10::48067\n")


def write_ml10m(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "ratings.dat").write_bytes(b"1::122::5::838985046\n1::185::4.5::838983525\n")
    (d / "movies.dat").write_bytes(
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
        "186::Amélie (2001)::Comedy\n".encode()
    )
    (d / "tags.dat").write_bytes(b"15::4973::excellent!::1215184630\n")


def write_csv(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (d / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Children\n', encoding="utf-8"
    )
    (d / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n")
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,funny,1445714994\n")
