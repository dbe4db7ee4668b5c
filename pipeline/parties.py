"""Attendees, organizers and senders written to the CRM as bound activity parties.

The Dataverse writer binds a party to its row (``partyid_<table>@odata.bind``) when its
:class:`PartyResolver` knows the address; otherwise the party keeps only ``addressused``.
:class:`ResolvingSink` looks up every address of a batch through a :class:`CrmDirectory` before
handing the batch to the writer, so the writer's synchronous resolver answers from that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from connectors.base import CommandSink
from connectors.dataverse.mapping import PARTY_MASKS
from pipeline.crm_directory import CrmDirectory
from pipeline.rules.tracking_lookup import RecordRef
from schemas.models import WriteCommand, WriteOutcome


def party_addresses(commands: Sequence[WriteCommand]) -> Iterator[str]:
    """Every address in the party fields of CRM-bound ``commands``."""
    for command in commands:
        if command.target != "crm" or command.kind not in PARTY_MASKS:
            continue
        for name in PARTY_MASKS[command.kind]:
            value = command.fields.get(name)
            for party in [value] if isinstance(value, Mapping) else value or []:
                if isinstance(party, Mapping) and isinstance(party.get("email"), str):
                    yield party["email"]


class DirectoryParties:
    """A ``PartyResolver`` over the addresses last primed (one batch at a time)."""

    def __init__(self, directory: CrmDirectory) -> None:
        self.directory = directory
        self._known: dict[str, RecordRef] = {}

    async def prime(self, commands: Sequence[WriteCommand]) -> None:
        """Resolve the addresses of ``commands``; they replace those of the previous batch."""
        addresses = list(party_addresses(commands))
        self._known = await self.directory.resolve(addresses) if addresses else {}

    def resolve(self, email: str) -> tuple[str, str] | None:
        ref = self._known.get(email.strip().lower())
        return (ref.table, ref.id) if ref is not None else None


class ResolvingSink:
    """A CommandSink that primes ``parties`` before each batch reaches ``writer``.

    ``writer`` must resolve through the same ``parties``; batches are applied one at a time.
    """

    def __init__(self, writer: CommandSink, parties: DirectoryParties) -> None:
        self.writer = writer
        self.parties = parties

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        await self.parties.prime(commands)
        return await self.writer.apply(commands)
