"""The EMV contactless kernel: from a card in the field to a `CardRead`, over any `ApduTransport`.

- `terminal_data`: the applications the terminal accepts, the TTQ, the transaction's data objects
  (`TerminalParams`) and DOL filling (`build_dol`);
- `card_data`: the result (`CardRead`, its masked APDU trace), status words and the decoding of
  what the card answers;
- `kernel`: the flow itself (`read_card`): PPSE, SELECT, GET PROCESSING OPTIONS, READ RECORD and
  GENERATE AC.

Every name is importable from `terminal.core.emv` itself.
"""

from __future__ import annotations

from terminal.core.emv.card_data import (
    MAX_RECORDS,
    SENSITIVE_TAGS,
    CardRead,
    CardReadDict,
    TraceDict,
    TraceEntry,
    sw_text,
)
from terminal.core.emv.kernel import (
    MAX_CANDIDATES,
    MAX_RESPONSE_CHAIN,
    PPSE,
    ApduTransport,
    Candidate,
    candidates_from_ppse,
    read_card,
)
from terminal.core.emv.terminal_data import (
    DEFAULT_AIDS,
    TTQ_CDCVM,
    TTQ_CVM_REQUIRED,
    TTQ_OFFLINE_ONLY,
    TTQ_ONLINE_CRYPTOGRAM,
    TTQ_ONLINE_PIN,
    TTQ_QVSDC,
    TTQ_SIGNATURE,
    SupportedAid,
    TerminalParams,
    build_dol,
    terminal_ttq,
)

__all__ = [
    "DEFAULT_AIDS", "MAX_CANDIDATES", "MAX_RECORDS", "MAX_RESPONSE_CHAIN", "PPSE", "SENSITIVE_TAGS", "TTQ_CDCVM",
    "TTQ_CVM_REQUIRED", "TTQ_OFFLINE_ONLY", "TTQ_ONLINE_CRYPTOGRAM", "TTQ_ONLINE_PIN", "TTQ_QVSDC", "TTQ_SIGNATURE",
    "ApduTransport", "Candidate", "CardRead", "CardReadDict", "SupportedAid", "TerminalParams", "TraceDict",
    "TraceEntry", "build_dol", "candidates_from_ppse", "read_card", "sw_text", "terminal_ttq",
]
