import type { ServiceProcess } from "../../scripts/stack.ts";

/** Waits until the service has printed something matching `pattern`. */
export async function waitForOutput(service: ServiceProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(service.output());
    if (match) return match[0];
    if (service.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no output matching ${pattern} within ${timeoutMs} ms; output:\n${service.output()}`);
}
