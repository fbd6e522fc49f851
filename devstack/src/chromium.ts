// A real headless browser for UI tests: Debian's Chromium driven by playwright-core, which never
// downloads a browser of its own when given an executablePath.
import type { Browser } from "playwright-core";
import { requireCommand } from "./commands.ts";

const LAUNCH_TIMEOUT_MS = 60_000;

// Beyond headless in a container as root (no sandbox, no GPU), these stop Chromium reaching out
// to Google's services, which are unreachable here and would only add noise and delays.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Launches headless Chromium with a fresh, throw-away profile (playwright creates and removes it).
 * Close the browser when done; playwright also kills it if this process exits or is interrupted.
 */
export async function launchChromium(opts: { timeoutMs?: number; args?: string[] } = {}): Promise<Browser> {
  const executablePath = await requireCommand("chromium", "chromium");
  // Loaded here, not with devstack: only the storefront's tests drive a browser.
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
    timeout: opts.timeoutMs ?? LAUNCH_TIMEOUT_MS,
  });
}
