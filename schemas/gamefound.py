"""Gamefound-style pledge files: the pledge-import template's columns (platform-formats.md 4).

`Backer number` is optional in that template. Without the column, pledges are keyed by the
trimmed, lower-cased email: Gamefound holds one pledge per backer and project, so the email
identifies the pledge, and re-importing the file changes nothing. With the column, a blank cell
is rejected as `missing_key` like on every other platform, rather than mixing the two keys.
`Bonus support` and any other column are answers.
"""

from __future__ import annotations

from schemas.layout import EMAIL, PLEDGE_KEY
from schemas.platform_layout import PlatformLayout, Signature, Variant

GAMEFOUND = PlatformLayout(
    platform="gamefound",
    signatures=(
        # Its columns are also found in Kickstarter reports: it counts only when nothing
        # stronger matches, and never beside Kickstarter's own columns.
        Signature(
            "backer name + e-mail + pledge amount",
            ("Backer name", "Pledge amount"),
            ("Backer name", "E-mail", "Pledge amount"),
            any_of=(("E-mail", "Email"),),
            none_of=("Backer UID", "Backer Id", "Pledged Status"),
        ),
    ),
    columns={
        "Backer number": (PLEDGE_KEY,),
        "Backer name": ("backer_name",),
        "E-mail": (EMAIL,),
        "Email": (EMAIL,),
        "Reward title": ("reward_title",),
        "Pledge amount": ("amount",),
    },
    required=(("E-mail", EMAIL),),
    variants=(Variant("pledge import template"),),
    variant_suffixes=((", keyed by email", ("Backer number",)),),
    key_from_email=True,
)
