"""Which passwords an account may have: NIST SP 800-63B §5.1.1.2 (memorized secrets).

- at least 8 characters (Unicode code points after NFKC normalisation, invisible format
  characters such as U+200B zero-width space, U+00AD soft hyphen or U+FEFF not counted), at
  most 1024 (the guideline asks that at least 64 be allowed);
- no control characters (U+0000–U+001F, U+007F–U+009F): they are not printing characters;
- not only whitespace or blanks (combining marks on nothing, U+2800 braille blank, Hangul
  fillers);
- not a commonly used or breached password: the 30,000-entry `passwords` frequency list that
  the zxcvbn package ships (zxcvbn==4.5.0, pinned in pyproject.toml; from leaked-password
  corpora), compared case-insensitively;
- not the username or the service's name (context-specific words), case-insensitively.

The comparisons ignore the invisible format characters too, so "passw\u200bord" is "password".

No composition rules (digits, symbols) and no expiry, as the guideline says.
"""

from __future__ import annotations

import functools
import unicodedata

MIN_LENGTH = 8
MAX_LENGTH = 1024
CONTEXT_WORDS = ("movierec",)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped common-password list, lower case (loaded once, ~30k entries)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


# Characters that draw nothing although Unicode classes them as letters or symbols.
BLANK_FILLERS = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def _blank(c: str) -> bool:
    return c.isspace() or c in BLANK_FILLERS or unicodedata.category(c) in ("Mn", "Me", "Zs")


def password_problem(password: str, username: str | None = None) -> str | None:
    """None when `password` is acceptable, else a sentence saying what is wrong."""
    normal = unicodedata.normalize("NFKC", password)
    if any(unicodedata.category(c) == "Cc" for c in normal if c not in "\t"):
        return "must not contain control characters"
    normal = "".join(c for c in normal if unicodedata.category(c) != "Cf")  # invisible
    if len(normal) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters (invisible characters do not count)"
    if len(normal) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if all(_blank(c) for c in normal):
        return "must not be only whitespace or blank characters"
    folded = normal.casefold()
    if username and folded.strip() == unicodedata.normalize("NFKC", username).casefold():
        return "must not be the username"
    if folded.strip() in CONTEXT_WORDS:
        return "must not be the name of the service"
    if folded in common_passwords() or folded.strip() in common_passwords():
        return "is a commonly used password; choose a less guessable one"
    return None
