"""The library's errors: one module, so the checks and the signing code share them."""

from __future__ import annotations


class HistoryError(ValueError):
    """A history cannot be read, appended to or proven."""


class NotHolderError(HistoryError):
    """The signer is not the holder the last entry named (`nxt`)."""


class VerificationError(HistoryError):
    """A check of `History.check` / `check_proof` failed; `reason` is the
    reason code of docs/history-format.md §7 the verifier gives."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
