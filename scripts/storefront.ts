// Builds the storefront's bundle (gateway/storefront/dist/shop.js) with esbuild, or checks that
// the committed one is what the sources build to:
//   node scripts/storefront.ts build   (npm run build:storefront)
//   node scripts/storefront.ts check   (npm run check:storefront, part of npm test)
// The bundle is committed, like gen/, so that `npm start` and the images need no build step;
// the check is what keeps it from going stale.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { base64Encode } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { REPO_ROOT } from "@merch/testkit";
import { type BuildOptions, build, type Plugin } from "esbuild";

const STOREFRONT = join(REPO_ROOT, "gateway", "storefront");
const BUNDLE = join(STOREFRONT, "dist", "shop.js");

/**
 * shop.proto imports buf/validate/validate.proto for its field rules, which only the gateway
 * checks; the browser needs none of it, yet the generated descriptor (70 KB, a third of the
 * bundle) would come along. The bundle gets an empty file of that name instead: rules are options,
 * kept as unknown fields, and no message of shop.proto has a field of a buf.validate type (the
 * browser test would fail at start-up if one did: the registry could not resolve it). The same
 * holds for the messages that rules.proto extends: EXTENDED must name each one.
 */
const EXTENDED = ["StringRules", "Int32Rules"];
const noValidateRules: Plugin = {
  name: "no-validate-rules",
  setup(b) {
    // rules.proto's predefined rules extend two of its messages, so those two stay, empty, with
    // the extension range that buf.validate gives them (registering an extension needs them).
    const empty = create(FileDescriptorProtoSchema, {
      name: "buf/validate/validate.proto",
      package: "buf.validate",
      syntax: "proto2",
      messageType: EXTENDED.map((name) => ({ name, extensionRange: [{ start: 1000, end: 536870912 }] })),
    });
    b.onLoad({ filter: /[\\/]gen[\\/]src[\\/]buf[\\/]validate[\\/]validate_pb\.ts$/ }, () => ({
      loader: "ts",
      contents:
        'import { fileDesc } from "@bufbuild/protobuf/codegenv2";\n' +
        `export const file_buf_validate_validate = fileDesc(${JSON.stringify(base64Encode(toBinary(FileDescriptorProtoSchema, empty)))});\n`,
    }));
  },
};

// The same sources always make the same bytes: esbuild writes no timestamps or absolute paths,
// and the options are fixed here rather than taken from the environment.
const OPTIONS = {
  absWorkingDir: REPO_ROOT,
  entryPoints: [join(STOREFRONT, "src", "main.ts")],
  tsconfig: join(STOREFRONT, "tsconfig.json"),
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  // Every current browser; es2022 keeps top-level await and class fields as written.
  target: ["es2022"],
  // Only the page's own code is served: no source map, no license banners (the packages' licenses
  // are in package-lock.json).
  legalComments: "none",
  sourcemap: false,
  logLevel: "warning",
  plugins: [noValidateRules],
} satisfies BuildOptions;

async function bundle(outfile: string): Promise<void> {
  await build({ ...OPTIONS, outfile });
}

function sizes(path: string): string {
  const bytes = readFileSync(path);
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  return `${kib(bytes.length)} (${kib(gzipSync(bytes, { level: 9 }).length)} gzipped)`;
}

const command = process.argv[2];
if (command === "build") {
  await bundle(BUNDLE);
  console.log(`storefront: ${relative(REPO_ROOT, BUNDLE)} ${sizes(BUNDLE)}`);
} else if (command === "check") {
  const dir = mkdtempSync(join(tmpdir(), "storefront-"));
  try {
    const fresh = join(dir, "shop.js");
    await bundle(fresh);
    const committed = existsSync(BUNDLE) ? readFileSync(BUNDLE) : undefined;
    if (committed === undefined || !committed.equals(readFileSync(fresh))) {
      console.error(
        `${relative(REPO_ROOT, BUNDLE)} is ${committed === undefined ? "missing" : "stale"}: ` +
          "run 'npm run build:storefront' and commit it.",
      );
      process.exitCode = 1;
    } else {
      console.log(`storefront: ${relative(REPO_ROOT, BUNDLE)} is what its sources build to, ${sizes(BUNDLE)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  console.error("usage: node scripts/storefront.ts build|check");
  process.exitCode = 2;
}
