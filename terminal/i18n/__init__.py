"""Every user-facing string, in English and Simplified Chinese.

The messages live in one catalogue per locale, `locales/<locale>.toml` in this package (package
data: key = "text", the keys quoted because they contain dots), read once, on first use.
`t(locale, key, **values)` looks a message up; a key missing in a locale falls back to English,
and a test checks that both locales have the same keys and the same {placeholders}. Reason codes
from the rules, the refund checks and the card/code flows are messages too (`reason(locale, code)`).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

Locale = str  # "en" | "zh-CN"
LOCALES = ("en", "zh-CN")
DEFAULT_LOCALE = "en"


def _flatten(table: Mapping[str, Any], prefix: str, out: dict[str, str], source: str) -> None:
    """Quoted keys ("reason.card_expired" = ...) are the rule; bare dotted keys make nested tables,
    which are read as the same dotted keys."""
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            _flatten(value, name + ".", out, source)
        elif isinstance(value, str):
            if name in out:
                raise ValueError(f"{source}: message {name!r} is given twice")
            out[name] = value
        else:
            raise ValueError(f"{source}: message {name!r} is not text")


@functools.cache
def catalogue(locale: Locale) -> Mapping[str, str]:
    """All messages of `locale` (one of LOCALES), read from its catalogue once."""
    if locale not in LOCALES:
        raise KeyError(f"no catalogue for locale {locale!r}; known: {', '.join(LOCALES)}")
    source = f"terminal/i18n/locales/{locale}.toml"
    text = resources.files(__name__).joinpath("locales", f"{locale}.toml").read_text(encoding="utf-8")
    messages: dict[str, str] = {}
    _flatten(tomllib.loads(text), "", messages, source)
    return MappingProxyType(messages)


class _Catalogues(Mapping[str, Mapping[str, str]]):
    """locale -> its messages, each catalogue read on first use."""

    def __getitem__(self, locale: str) -> Mapping[str, str]:
        if locale not in LOCALES:
            raise KeyError(locale)
        return catalogue(locale)

    def __iter__(self) -> Iterator[str]:
        return iter(LOCALES)

    def __len__(self) -> int:
        return len(LOCALES)


CATALOGUES: Mapping[str, Mapping[str, str]] = _Catalogues()


def t(locale: Locale, key: str, **values: object) -> str:
    """The message `key` in `locale` (English when the locale lacks it), with {values} filled in."""
    english = catalogue(DEFAULT_LOCALE)
    messages = catalogue(locale) if locale in LOCALES else english
    text = messages.get(key) or english.get(key)
    if text is None:
        raise KeyError(f"no message {key!r}")
    return text.format(**values) if values else text


def reason(locale: Locale, code: str) -> str:
    """A rule, refund or flow reason code in words."""
    english = catalogue(DEFAULT_LOCALE)
    for prefix in ("reason.", "problem."):
        if prefix + code in english:
            return t(locale, prefix + code)
    return t(locale, "reason.unknown", code=code)


_SEARCHABLE = ("decision.", "kind.", "sync.", "method.", "scheme.", "outcome.approved", "outcome.declined")


@functools.cache
def _search_words() -> Mapping[str, str]:
    """A word of any locale for a result, kind, sync state, method or scheme -> its code."""
    words: dict[str, str] = {}
    for locale in LOCALES:
        for key, text in catalogue(locale).items():
            if key.startswith(_SEARCHABLE):
                words.setdefault(text.strip().casefold(), key.rpartition(".")[2])
    return MappingProxyType(words)


def search_code(text: str) -> str:
    """What to search the journal for when someone types `text`: the code of a localized word
    ('拒绝', 'DECLINED', '退货', 'UnionPay' -> 'declined', 'declined', 'refund', 'unionpay'), else
    `text` itself."""
    return _search_words().get(text.strip().casefold(), text)


def display_width(text: str) -> int:
    """Terminal cells `text` takes: East Asian wide and full-width characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


__all__ = ["CATALOGUES", "DEFAULT_LOCALE", "LOCALES", "Locale", "catalogue", "display_width", "reason", "search_code",
           "t"]
