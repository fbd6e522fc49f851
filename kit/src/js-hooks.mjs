// `node --import ./kit/src/js-hooks.mjs gateway/src/server.ts`: runs a service from the JavaScript
// kit/src/js-build.ts made, without loading Node's type stripper (about 18 MB resident for the
// life of the process). Every module is resolved as if from the sources, then a source file of
// one of the service packages is swapped for its build, `<package>/build/<same path>.js`, when
// that build is at least as new as the source; otherwise the source itself loads, types and all.
// Plain JavaScript: a TypeScript file here would load the stripper this avoids.
import { statSync } from "node:fs";
import { registerHooks } from "node:module";

const ROOT = new URL("../../", import.meta.url).href;
const PACKAGES = ["gen", "kit", "db-service", "log-service", "gateway"];

function mtimeMs(url) {
  try {
    return statSync(new URL(url)).mtimeMs;
  } catch {
    return Number.NEGATIVE_INFINITY;
  }
}

/** The package and path of a URL under `<package>/<dir>/`, if it is one of ours. */
function split(url, dir, ext) {
  if (!url?.startsWith(ROOT) || !url.endsWith(ext)) return undefined;
  const rest = url.slice(ROOT.length);
  for (const pkg of PACKAGES) {
    const prefix = `${pkg}/${dir}/`;
    if (rest.startsWith(prefix)) return { pkg, path: rest.slice(prefix.length, -ext.length) };
  }
  return undefined;
}

/** A built module's source: relative imports resolve from there. */
function sourceOf(url) {
  const p = split(url, "build", ".js");
  return p ? `${ROOT}${p.pkg}/src/${p.path}.ts` : url;
}

function builtOf(url) {
  const p = split(url, "src", ".ts");
  if (!p) return undefined;
  const built = `${ROOT}${p.pkg}/build/${p.path}.js`;
  return mtimeMs(built) >= mtimeMs(url) ? built : undefined;
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parentURL = context.parentURL && sourceOf(context.parentURL);
    const resolved = nextResolve(specifier, parentURL === context.parentURL ? context : { ...context, parentURL });
    const built = builtOf(resolved.url);
    return built ? { ...resolved, url: built, format: "module" } : resolved;
  },
});
