import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { loadSpec, loadSpecText, routeSpecs, SPEC_PATH, SpecError } from "./spec.ts";

// openapi.yaml is checked twice: as OpenAPI 3.1 by the real Redocly CLI that `npm run
// lint:openapi` runs in npm test, and at the gateway's start-up only for what routing needs
// (loadSpec). Both accept the spec in the repository; Redocly refuses every broken variant below,
// and the gateway those it cannot route.

const REPO_ROOT = join(dirname(SPEC_PATH), "..");
const REDOCLY_CLI = join(REPO_ROOT, "node_modules", "@redocly", "cli", "bin", "cli.js");

/** The line as it was before issue 14: its unquoted comma split the flow mapping in two. */
const BROKEN_LINE = "in_flight: { type: integer, minimum: 0, description: Sent, not yet acknowledged. }";
const FIXED_LINE = 'in_flight: { type: integer, minimum: 0, description: "Sent, not yet acknowledged." }';
const BROKEN_POINTER = "#/components/schemas/Health/properties/log_events/properties/in_flight/not yet acknowledged.";

/** openapi.yaml with one piece of text replaced; fails if that text is gone, so no case passes vacuously. */
function variant(from: string, to: string): string {
  const text = loadSpecText();
  assert.ok(text.includes(from), `openapi.yaml no longer contains: ${from}`);
  return text.replace(from, to);
}

function lineOf(text: string, fragment: string): number {
  const index = text.indexOf(fragment);
  assert.ok(index >= 0, fragment);
  return text.slice(0, index).split("\n").length;
}

function refusal(text: string): SpecError {
  try {
    loadSpec(text, "variant.yaml");
  } catch (err) {
    assert.ok(err instanceof SpecError, String(err));
    assert.match(err.message, /^variant\.yaml cannot be routed:/);
    return err;
  }
  assert.fail("the gateway accepted the variant");
}

interface LintProblem {
  ruleId: string;
  severity: string;
  message: string;
  location: { pointer?: string; start?: { line: number } }[];
}
interface LintResult {
  exitCode: number;
  /** Undefined when Redocly could not parse the YAML at all (it then reports on stderr). */
  problems: LintProblem[] | undefined;
  stderr: string;
}

/**
 * Runs the real CLI the way `npm run lint:openapi` does (same config, same ignore file, no
 * arguments), on a copy of the repository's lint setup in a temporary folder holding `text` as
 * gateway/openapi.yaml.
 */
async function redoclyLint(text: string): Promise<LintResult> {
  const dir = mkdtempSync(join(tmpdir(), "openapi-lint-"));
  try {
    mkdirSync(join(dir, "gateway"));
    writeFileSync(join(dir, "gateway", "openapi.yaml"), text);
    for (const file of ["redocly.yaml", ".redocly.lint-ignore.yaml"]) {
      copyFileSync(join(REPO_ROOT, file), join(dir, file));
    }
    const { exitCode, stdout, stderr } = await new Promise<{ exitCode: number; stdout: string; stderr: string }>(
      (resolve, reject) => {
        execFile(
          process.execPath,
          [REDOCLY_CLI, "lint", "--lint-config=error", "--format=json"],
          {
            cwd: dir,
            env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
            // A lint takes well under a second here; a hang (a network call, say) must fail the test.
            timeout: 60_000,
          },
          (err, out, errOut) => {
            if (err && typeof err.code !== "number") reject(err);
            else resolve({ exitCode: err ? Number(err.code) : 0, stdout: out, stderr: errOut });
          },
        );
      },
    );
    const problems = stdout.trim() === "" ? undefined : (JSON.parse(stdout) as { problems: LintProblem[] }).problems;
    return { exitCode, problems, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Ways to break the document; `refused`, what the gateway says where it cannot route the result. */
const cases: { name: string; from: string; to: string; pointer?: string; at: string; refused?: RegExp }[] = [
  {
    name: "the original broken flow mapping",
    from: FIXED_LINE,
    to: BROKEN_LINE,
    pointer: BROKEN_POINTER,
    at: BROKEN_LINE,
  },
  {
    name: "a misspelt operation field",
    from: "summary: Welcome message",
    to: "sumary: Welcome message",
    pointer: "#/paths/~1/get/sumary",
    at: "sumary: Welcome message",
  },
  {
    name: "a schema keyword of the wrong type",
    from: "queued: { type: integer, minimum: 0, description: Waiting to be sent. }",
    to: "queued: { type: integer, minimum: none }",
    pointer: "#/components/schemas/Health/properties/log_events/properties/queued/minimum",
    at: "queued: { type: integer, minimum: none }",
  },
  {
    name: "a $ref to nothing",
    from: 'schema: { $ref: "#/components/schemas/Product" }',
    to: 'schema: { $ref: "#/components/schemas/Produkt" }',
    pointer: "#/paths/~1products/post/responses/201/content/application~1json/schema",
    at: 'schema: { $ref: "#/components/schemas/Produkt" }',
    refused: /unresolved \$ref #\/components\/schemas\/Produkt/,
  },
  {
    name: "an operationId used twice",
    from: "operationId: getHealth",
    to: "operationId: getWelcome",
    at: "operationId: getWelcome\n      tags: [operations]",
    refused: /GET \/healthz: operationId getWelcome is already used by GET \/$/m,
  },
  {
    name: "a duplicate key",
    from: "  title: SUSTech Merch Store API\n",
    to: "  title: SUSTech Merch Store API\n  title: Again\n",
    at: "title: Again",
    refused: /^ {2}line (\d+): Map keys must be unique/m,
  },
];

describe("openapi.yaml at start-up", () => {
  test("the spec in the repository loads, and every operation becomes a route", () => {
    const doc = loadSpec();
    const routes = routeSpecs(doc);
    const operations = Object.values(doc.paths).flatMap((item) => Object.keys(item));
    assert.equal(routes.length, operations.length);
    assert.ok(routes.some((r) => r.operationId === "placeOrder" && r.requiresToken && r.hasBody));
  });

  for (const c of cases.filter((c) => c.refused)) {
    test(`${c.name} cannot be routed, and the gateway refuses it`, () => {
      const text = variant(c.from, c.to);
      const err = refusal(text);
      const match = c.refused?.exec(err.message);
      assert.ok(match, err.message);
      // A YAML problem names its line.
      if (match[1] !== undefined) assert.equal(Number(match[1]), lineOf(text, c.at));
    });
  }

  test("an operation without an operationId cannot be routed (handlers are found by it)", () => {
    const err = refusal(variant("      operationId: getMetrics\n", ""));
    assert.deepEqual(err.problems, ["GET /metrics: no operationId"]);
  });

  test("a path item field the gateway does not route is refused, not taken for a method", () => {
    const err = refusal(variant("  /metrics:\n", "  /metrics:\n    parameters: []\n"));
    assert.deepEqual(err.problems, [
      "paths./metrics.parameters: not routed (operations are get, post, put, patch, delete)",
    ]);
  });

  test("what only Redocly refuses still routes: structure is checked in npm test, not at start-up", () => {
    for (const c of cases.filter((c) => !c.refused)) loadSpec(variant(c.from, c.to));
  });
});

describe("Redocly CLI (npm run lint:openapi)", () => {
  test("accepts the spec in the repository", async () => {
    const lint = await redoclyLint(loadSpecText());
    assert.equal(lint.exitCode, 0, JSON.stringify(lint.problems ?? lint.stderr));
    assert.deepEqual(lint.problems, []);
  });

  test("refuses the original broken line, and finds nothing else wrong", async () => {
    const lint = await redoclyLint(variant(FIXED_LINE, BROKEN_LINE));
    assert.equal(lint.exitCode, 1);
    assert.deepEqual(
      lint.problems?.map((p) => [p.ruleId, p.severity, p.location[0]?.pointer]),
      [["struct", "error", BROKEN_POINTER]],
    );
  });

  // Redocly names the place by JSON pointer (struct and $ref problems) or only by line (YAML it
  // cannot parse, duplicate ids).
  for (const c of cases.slice(1)) {
    test(`refuses ${c.name}`, async () => {
      const text = variant(c.from, c.to);
      const line = lineOf(text, c.at);
      const lint = await redoclyLint(text);
      assert.equal(lint.exitCode, 1, JSON.stringify(lint.problems));
      if (c.pointer) {
        assert.ok(
          lint.problems?.some((p) => p.severity === "error" && p.location[0]?.pointer === c.pointer),
          JSON.stringify(lint.problems),
        );
      } else {
        const redoclyLines = lint.problems
          ? lint.problems.map((p) => p.location[0]?.start?.line)
          : [...lint.stderr.matchAll(/\((\d+):\d+\)/g)].map((m) => Number(m[1]));
        assert.ok(redoclyLines.includes(line), `${lint.stderr} ${JSON.stringify(lint.problems)}`);
      }
    });
  }
});
