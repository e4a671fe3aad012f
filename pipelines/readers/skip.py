"""`Skip`: what a reader yields for an input record that is not a page, or for damage in the file."""
from __future__ import annotations

from dataclasses import dataclass

DAMAGED = "damaged:"


@dataclass
class Skip:
    """A record that was read but is not a page (`reason` e.g. `request`, `http-status:404`), or damage.

    Reasons starting with `damaged:` describe the file, not one record: they are extra items on top of the
    one-item-per-record stream (a truncated last record is the exception: its one item is the damage Skip).
    """

    key: str
    source: str
    reason: str
    url: str = ""
    detail: str = ""

    @property
    def is_damage(self) -> bool:
        return self.reason.startswith(DAMAGED)
