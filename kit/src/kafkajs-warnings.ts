let installed = false;

/**
 * kafkajs 2.2.4 sometimes arms timers with a negative delay, which Node 24 reports as a
 * TimeoutNegativeWarning on stderr. It is harmless (Node uses 1 ms), so only that warning is
 * filtered; every other warning still goes to Node's own printer.
 */
export function silenceKafkajsTimerWarnings(): void {
  if (installed) return;
  installed = true;
  const printers = process.listeners("warning");
  process.removeAllListeners("warning");
  process.on("warning", (warning) => {
    if (warning.name === "TimeoutNegativeWarning") return;
    for (const print of printers) print(warning);
  });
}
