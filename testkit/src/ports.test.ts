import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { test } from "node:test";
import { freePort } from "./ports.ts";

test("freePort hands out distinct ports below the kernel's ephemeral range, each one bindable", async () => {
  const [ephemeralLow] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
  const ports = await Promise.all(Array.from({ length: 100 }, () => freePort()));
  assert.equal(new Set(ports).size, ports.length, "no port twice");
  for (const port of ports) {
    assert.ok(port >= 1024 && port < (ephemeralLow ?? 32768), `${port} is below the ephemeral range`);
  }
  // Each can be bound on every address at once, as a service would.
  const servers = await Promise.all(
    ports.slice(0, 20).map(
      (port) =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.once("error", reject);
          srv.listen({ port, exclusive: true }, () => resolve(srv));
        }),
    ),
  );
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});
