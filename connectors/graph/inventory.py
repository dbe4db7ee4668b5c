"""Which stamped items a mailbox's collection holds, as the Graph writer last listed them.

A first sync creates hundreds of items in one mailbox. Looking every create's correlation id up
before writing it (one GET per item) doubles the requests Graph counts against the mailbox.
Instead the writer lists the collection's stamped items once (one paged GET that returns only
items carrying a stamp, the stamp expanded) and answers later creates from that listing:

- a correlation id the listing does not hold is created directly;
- one it holds is looked up as before when the listing is older than the current round (the
  item may since have been deleted by its user).

A listing is sound only while nothing but this writer stamps items in the mailbox, so it is
dropped when that may no longer hold: the command writer forgets a mailbox when its partition
is revoked (another worker may write it next), a ``$batch`` whose answer was lost or a create
answered with a 5xx (Graph may have created the item anyway) forgets it, and every listing ages
out after ``max_age_s``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

Found = tuple[str, str | None]
"""An item the listing holds: (Graph item id, its version)."""


@dataclass(slots=True)
class Listing:
    """The stamped items of one collection when it was listed, plus what was created since."""

    taken: float
    items: dict[str, Found] = field(default_factory=dict)

    def holds(self, correlation_id: str) -> bool:
        """Whether an item stamped ``correlation_id`` was there (or created since)."""
        return correlation_id in self.items


class StampInventory:
    """Listings per (mailbox, collection), least recently used dropped past ``max_listings``."""

    def __init__(
        self,
        *,
        max_age_s: float = 600.0,
        max_listings: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_age_s > 0 or max_listings < 1:
            raise ValueError("max_age_s must be > 0 and max_listings >= 1")
        self._max_age = max_age_s
        self._max = max_listings
        self._clock = clock
        self._listings: OrderedDict[tuple[str, str], Listing] = OrderedDict()

    def now(self) -> float:
        """The inventory's clock."""
        return self._clock()

    def get(self, mailbox_id: str, collection: str) -> Listing | None:
        """The listing of ``collection`` in ``mailbox_id``, unless there is none or it aged out."""
        key = (mailbox_id.lower(), collection)
        listing = self._listings.get(key)
        if listing is None:
            return None
        if self._clock() - listing.taken > self._max_age:
            del self._listings[key]
            return None
        self._listings.move_to_end(key)
        return listing

    def put(self, mailbox_id: str, collection: str, items: dict[str, Found]) -> Listing:
        """Record a listing just taken."""
        key = (mailbox_id.lower(), collection)
        listing = Listing(self._clock(), dict(items))
        self._listings[key] = listing
        self._listings.move_to_end(key)
        while len(self._listings) > self._max:
            self._listings.popitem(last=False)
        return listing

    def created(self, mailbox_id: str, collection: str, correlation_id: str, found: Found) -> None:
        """This writer created an item stamped ``correlation_id`` (kept if listed)."""
        listing = self._listings.get((mailbox_id.lower(), collection))
        if listing is not None:
            listing.items[correlation_id] = found

    def deleted(self, mailbox_id: str, collection: str, item_id: str) -> None:
        """This writer deleted item ``item_id``: a later create of its id goes straight ahead."""
        listing = self._listings.get((mailbox_id.lower(), collection))
        if listing is not None:
            gone = [cid for cid, (iid, _) in listing.items.items() if iid == item_id]
            for cid in gone:
                del listing.items[cid]

    def forget(self, mailbox_id: str) -> None:
        """Drop every listing of ``mailbox_id``."""
        mailbox = mailbox_id.lower()
        for key in [k for k in self._listings if k[0] == mailbox]:
            del self._listings[key]

    def __len__(self) -> int:
        return len(self._listings)
