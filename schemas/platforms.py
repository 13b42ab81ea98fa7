"""The platforms pledgeflow reads, detection in precedence order, and the layout of a header row.

Detection looks at the header row only (platform-formats.md section 6): BackerKit, then
Indiegogo, then Kickstarter, then Gamefound-style pledge files, whose columns are also found in
Kickstarter reports and so only count when nothing stronger matches. Each platform is a
`PlatformLayout` (its own module) mapping its headers onto the canonical fields of
`schemas.layout`; whatever a layout does not map is kept in `survey.answers` under its original
header. Adding a platform is adding its layout to `LAYOUTS` and its name to `PLATFORMS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from schemas.backerkit import BACKERKIT
from schemas.gamefound import GAMEFOUND
from schemas.indiegogo import INDIEGOGO
from schemas.kickstarter import KICKSTARTER
from schemas.layout import Layout, UnknownLayoutError, UnsupportedPlatformError, normalize_header
from schemas.mappings import ColumnMapping, mapping_layout
from schemas.platform_layout import PlatformLayout, Signature, build_layout

__all__ = [
    "LAYOUTS",
    "PLATFORMS",
    "Layout",
    "PlatformLayout",
    "Signature",
    "UnknownLayoutError",
    "UnsupportedPlatformError",
    "detect_platform",
    "resolve_layout",
    "signatures",
]

# In detection precedence: each platform's signatures are tried after those listed before it.
LAYOUTS: tuple[PlatformLayout, ...] = (BACKERKIT, INDIEGOGO, KICKSTARTER, GAMEFOUND)
# The platforms a caller may name, in the order they are listed (forms, errors), which is also
# the platform an unknown layout is said to be closest to when several miss equally.
PLATFORMS = ("kickstarter", "indiegogo", "backerkit", "gamefound")
# The detection report's signature when the caller named the platform.
FORCED_SIGNATURE = "forced by caller"


def signatures() -> list[Signature]:
    """Every platform's signatures, in precedence order."""
    return [signature for layout in LAYOUTS for signature in layout.signatures]


def detect_platform(headers: Sequence[str]) -> Signature:
    """Return the first signature (in precedence order) the headers satisfy."""
    present = {normalize_header(h) for h in headers}
    for signature in signatures():
        if signature.matches(present):
            return signature
    raise _closest_miss(present)


def _closest_miss(present: set[str]) -> UnknownLayoutError:
    candidates = [s for s in signatures() if not s.ruled_out(present)]
    best = min(
        candidates,
        key=lambda s: (len(s.missing(present)) / len(s.expected), PLATFORMS.index(s.platform)),
    )
    return UnknownLayoutError(best.platform, best.missing(present))


@lru_cache(maxsize=256)
def resolve_layout(
    headers: tuple[str, ...],
    platform: str | None = None,
    mapping: ColumnMapping | None = None,
) -> Layout:
    """Map every column of the header row: by an explicit mapping when given, else by the
    forced platform, else by the detected one."""
    if mapping is not None:
        return mapping_layout(headers, mapping)
    if platform is None:
        signature = detect_platform(headers)
        platform, signature_name = signature.platform, signature.name
    elif platform not in PLATFORMS:
        raise UnsupportedPlatformError(
            f"unsupported platform {platform!r}; supported: {', '.join(PLATFORMS)}"
            + (" (a custom layout needs its column mapping)" if platform == "custom" else "")
        )
    else:
        signature_name = FORCED_SIGNATURE
    spec = next(layout for layout in LAYOUTS if layout.platform == platform)
    return build_layout(spec, headers, signature_name)
