import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * The ports freePort hands out: below the kernel's ephemeral range. A port the kernel picked for
 * `listen(0)` comes from that range, which is also where every outgoing connection takes its
 * source port; between the check and the child process binding it, a test's own connection to
 * PostgreSQL or Kafka could take the port, and the service failed with EADDRINUSE (seen with four
 * copies of one test file at once). Below the range only listeners compete, and they are checked.
 */
function portRange(): { low: number; high: number } {
  let ephemeralLow = 32768;
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low !== undefined && Number.isInteger(low)) ephemeralLow = low;
  } catch {
    // Not Linux: the kernel's usual default.
  }
  const high = Math.max(ephemeralLow - 1, 11_000);
  return { low: Math.min(10_000, high - 1000), high };
}

const RANGE = portRange();
/** Ports this process has handed out: never the same one twice. */
const given = new Set<number>();

/** Whether nothing listens on the port, on any address (the child may bind 0.0.0.0 or ::). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A port that was free a moment ago on every address; the caller binds it right away. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = RANGE.low + Math.floor(Math.random() * (RANGE.high - RANGE.low + 1));
    if (given.has(port)) continue;
    // Claimed before the check, so that concurrent calls never pick the same port.
    given.add(port);
    if (await bindable(port)) return port;
    given.delete(port);
  }
  throw new Error(`no free port found in ${RANGE.low}-${RANGE.high} after 200 tries`);
}
