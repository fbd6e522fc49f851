/**
 * Settles with `work`, or rejects with `refusal()` as soon as `until` comes, whichever is first:
 * an abort signal's abort, or a deadline in milliseconds. The work is not cancelled, only no
 * longer waited for (a frozen server never answers, and a caller must not wait for it); its own
 * failure, later, is handled here and goes nowhere. Nothing is left armed once it settles.
 */
export function raceAbort<T>(work: Promise<T>, until: AbortSignal | number, refusal: () => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let disarm = () => {};
    const giveUp = () => {
      disarm();
      reject(refusal());
    };
    if (typeof until === "number") {
      const timer = setTimeout(giveUp, until);
      disarm = () => clearTimeout(timer);
    } else if (until.aborted) {
      reject(refusal());
    } else {
      until.addEventListener("abort", giveUp, { once: true });
      disarm = () => until.removeEventListener("abort", giveUp);
    }
    work.then(
      (value) => {
        disarm();
        resolve(value);
      },
      (err: unknown) => {
        disarm();
        reject(err);
      },
    );
  });
}
