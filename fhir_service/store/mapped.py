"""The contracts this instance read lately, by the records they were read from.

Reading a contract out of HAPI's search Bundle (``contract_from_bundle``: the mapping and the
contract's checks) is a fifth of the service's CPU in a read, as much as its HAPI client's, in a
py-spy profile of the service under ``bench.profile_read``'s reads. That reading is a function of
the Bundle's entries alone (and of the code tables, fixed for the process), and contracts are read
again and again unchanged: a patient opening their plan, an EHR polling its unit's contracts. So
each contract read is kept here by a digest of the entries it was read from, with its id: the same
entries give the same contract without reading them again.

HAPI is still asked on every read; only the reading of an answer seen before is spared. Any change
HAPI holds changes its answer (a new version of any record, a label added by ``$meta-add`` without
one, a booking, which changes an Appointment the plan names), so a contract is never served from
records HAPI no longer holds as they were. Only readers' contracts are kept: not those with
``Contract.sent``, whose records a writer works on. A contract that does not read is not kept, and
fails again.

Kept pickled, not as the models themselves: a contract is some 260 objects the cyclic garbage
collector tracks, and 1,024 of them made each of its full passes scan 270,000 more. With readers
going through more contracts than are kept (each read keeping a new one), full passes came every
few hundred requests and took 120 ms on average, 235 ms at most, every request waiting; the
collector took 1.3 ms a request in all (1,500 contracts read in turn by one client). Pickled, a
kept contract is one ``bytes`` the collector never looks at, a sixth of the memory, and 0.16 ms of
CPU to take out again, against 0.6 ms to map it. Pickling one (0.15 ms) waits for the event loop's
next turn, which comes once its reader is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from collections import OrderedDict
from typing import Any

from fhir_service import wire
from fhir_service.contract import Contract
from fhir_service.mapping.from_fhir import contract_from_bundle

__all__ = ["MappedContracts", "ReadBundle"]


class MappedContracts:
    """The last ``most`` contracts read from search Bundles, by their entries' digest and id."""

    def __init__(self, most: int = 1024) -> None:
        self.most = most
        self._contracts: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()

    def of(self, bundle: dict[str, Any]) -> ReadBundle:
        """The contracts ``bundle`` holds (one read's, or a search page's), read or found."""
        # SHA-256 rather than a short hash: two different answers sharing a key would show
        # one patient's contract to another's reader.
        digest = hashlib.sha256(wire.dumps(bundle.get("entry"))).digest()
        return ReadBundle(self, bundle, digest)

    def contract(self, bundle: dict[str, Any], digest: bytes, contract_id: str) -> Contract:
        """The contract ``contract_id`` as ``bundle`` (whose entries' digest is ``digest``)
        holds it; ``UnreadableContractError`` when its records do not read as one."""
        key = (digest, contract_id)
        kept = self._contracts.get(key)
        if kept is not None:
            self._contracts.move_to_end(key)
            contract: Contract = pickle.loads(kept)  # noqa: S301 - pickled below, by us
            return contract
        contract = contract_from_bundle(bundle, contract_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._keep(key, contract)
        else:
            # Pickled at the loop's next turn, which for a read comes once its answer has left
            # (it next waits for its outcome's record): a fourth of the time its mapping took,
            # not spent while its reader waits. Frozen, the contract is kept as it was read.
            loop.call_soon(self._keep, key, contract)
        return contract

    def _keep(self, key: tuple[bytes, str], contract: Contract) -> None:
        self._contracts[key] = pickle.dumps(contract, protocol=pickle.HIGHEST_PROTOCOL)
        self._contracts.move_to_end(key)
        while len(self._contracts) > self.most:
            self._contracts.popitem(last=False)


class ReadBundle:
    """One search Bundle's contracts, each read from it once in this instance."""

    def __init__(self, kept: MappedContracts, bundle: dict[str, Any], digest: bytes) -> None:
        self._kept = kept
        self._bundle = bundle
        self._digest = digest

    def contract(self, contract_id: str) -> Contract:
        """The contract ``contract_id`` as the Bundle holds it; ``UnreadableContractError``
        when its records do not read as one."""
        return self._kept.contract(self._bundle, self._digest, contract_id)
