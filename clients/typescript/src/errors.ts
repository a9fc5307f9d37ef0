/** The library's errors: one module, so the checks and the signing code share them. */

/** A history cannot be read, appended to or proven. */
export class HistoryError extends Error {
  override name = "HistoryError";
}

/** The signer is not the holder the last entry named (`nxt`). */
export class NotHolderError extends HistoryError {
  override name = "NotHolderError";
}

/** A check of `History.check` / `checkProof` failed; `reason` is the reason code of docs/history-format.md §7 the verifier gives. */
export class VerificationError extends HistoryError {
  override name = "VerificationError";
  constructor(
    readonly reason: string,
    readonly detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}
