import assert from "node:assert/strict";
import { test } from "node:test";
import { loadConfig as loadDbConfig } from "@merch/db-service";
import { loadConfig as loadGatewayConfig } from "@merch/gateway";
import { TRACING_ENV } from "@merch/kit";
import { loadConfig as loadLogConfig } from "@merch/log-service";
import { configReads, read } from "../deploy/support.ts";

// The configuration tables of README.md and log-service/README.md against what each service
// really reads at start-up: its loadConfig (recorded through a proxy environment), LOG_LEVEL
// (kit's logger) and the OTEL_* variables (kit's tracing). A variable added to a service and not
// documented, or documented and no longer read, fails here.

const SERVICES = {
  gateway: loadGatewayConfig,
  "db-service": loadDbConfig,
  "log-service": loadLogConfig,
} as const;
type Service = keyof typeof SERVICES;
const names = Object.keys(SERVICES) as Service[];

function reads(service: Service): Set<string> {
  return new Set([...configReads(SERVICES[service]), "LOG_LEVEL", ...TRACING_ENV]);
}

/** The markdown section starting at `heading`, up to the next heading of the same level. */
function section(text: string, heading: string): string {
  const start = text.indexOf(`${heading}\n`);
  assert.ok(start >= 0, `no section ${heading}`);
  const level = heading.split(" ")[0] ?? "##";
  const rest = text.slice(start + heading.length + 1);
  const end = rest.search(new RegExp(`^${level} `, "m"));
  return end < 0 ? rest : rest.slice(0, end);
}

/** Table rows as cells, header and separator rows left out. */
function rows(markdown: string): string[][] {
  return markdown
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) =>
      line
        .slice(1, -1)
        .split(" | ")
        .map((cell) => cell.trim()),
    );
}

/** The variable names of a cell: `A`, `B`; `OTEL_*` stands for every tracing variable. */
function variables(cell: string): string[] {
  return [...cell.matchAll(/`([A-Z][A-Z0-9_]*\*?)`/g)].flatMap((m) =>
    m[1] === "OTEL_*" ? [...TRACING_ENV] : [m[1] ?? ""],
  );
}

test("README's Configuration tables name exactly the variables each service reads", () => {
  const documented = new Map<Service, Set<string>>(names.map((n) => [n, new Set()]));
  for (const [vars = "", services = ""] of rows(section(read("README.md"), "## Configuration"))) {
    const which = services === "all" ? names : (services.split(/,\s*/) as Service[]);
    for (const service of which) {
      assert.ok(names.includes(service), `unknown service "${service}" in the row for ${vars}`);
      for (const name of variables(vars)) documented.get(service)?.add(name);
    }
  }
  for (const service of names) {
    const doc = [...(documented.get(service) ?? [])].sort();
    assert.deepEqual(doc, [...reads(service)].sort(), `${service}: the README's table against its loadConfig`);
  }
});

test("log-service/README.md's Environment table names exactly the variables log-service reads", () => {
  const doc = new Set(
    rows(section(read("log-service/README.md"), "## Environment")).flatMap(([vars = ""]) => variables(vars)),
  );
  // NODE_ENV only decides whether SERVICE_CREDENTIAL is required, which its row says.
  doc.add("NODE_ENV");
  assert.deepEqual([...doc].sort(), [...reads("log-service")].sort());
});
