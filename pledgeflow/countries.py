"""ISO 3166-1 alpha-2 codes for the country cells of an export, looked up with pycountry."""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import pycountry

# Common English names pycountry does not list (it has `USA`, `United States of America`,
# `South Korea`, `Vietnam`, ... itself).
ALIASES = {
    "UK": "GB",
    "Great Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
    "Russia": "RU",
    "Turkey": "TR",
    "Holland": "NL",
    "Ivory Coast": "CI",
    "Macau": "MO",
    "Vatican": "VA",
    "Vatican City": "VA",
    "Brunei": "BN",
    "Cape Verde": "CV",
    "Swaziland": "SZ",
    "Burma": "MM",
    "Palestine": "PS",
    "Micronesia": "FM",
    "Macedonia": "MK",
}
# Diacritics, once NFKD has split them from their letters (`Réunion` is `Reunion`).
_COMBINING = re.compile(r"[\u0300-\u036f]")
_PUNCTUATION = re.compile(r"[\s.,;:()'\u2019`\"/-]+")


def country_key(name: str) -> str:
    """A name as the index compares it: accents, case, punctuation and a leading `the` gone."""
    plain = _COMBINING.sub("", unicodedata.normalize("NFKD", name))
    key = _PUNCTUATION.sub(" ", plain.casefold()).strip()
    return key[4:] if key.startswith("the ") else key


@lru_cache(maxsize=1)
def english_index() -> dict[str, str]:
    """pycountry's codes and English names (official and common too), and ALIASES, to alpha-2."""
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for name in _names(country):
            index.setdefault(country_key(name), country.alpha_2)
    for name, code in ALIASES.items():
        index.setdefault(country_key(name), code)
    index.pop("", None)
    return index


@lru_cache(maxsize=1)
def translated_index() -> dict[str, str]:
    """Names in every language pycountry has a translation for, to alpha-2.

    Read only when a name is not English (it takes a second or two); a translated name two
    countries share (in different languages) matches neither.
    """
    english = english_index()
    names = [(name, c.alpha_2) for c in pycountry.countries for name in _names(c)[2:]]
    translated: dict[str, set[str]] = {}
    locales = Path(pycountry.LOCALES_DIR)
    for catalog_path in sorted(locales.glob("*/LC_MESSAGES/iso3166-1.mo")):
        with catalog_path.open("rb") as handle:
            catalog = gettext.GNUTranslations(handle)
        for name, code in names:
            local = catalog.gettext(name)
            if local != name:
                translated.setdefault(country_key(local), set()).add(code)
    return {
        key: codes.pop()
        for key, codes in translated.items()
        if len(codes) == 1 and key and key not in english
    }


def _names(country: object) -> list[str]:
    return [
        value
        for attribute in ("alpha_2", "alpha_3", "name", "official_name", "common_name")
        if isinstance(value := getattr(country, attribute, None), str)
    ]


@lru_cache(maxsize=4096)
def country_code(cell: str) -> str | None:
    """The alpha-2 code a code or name stands for, or None when it matches no country."""
    key = country_key(cell)
    return english_index().get(key) or translated_index().get(key)
