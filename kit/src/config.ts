/** Thrown with every problem found, so an operator fixes the environment in one go. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Reads environment variables, collecting problems instead of stopping at the first. */
export class EnvReader {
  readonly problems: string[] = [];
  readonly #env: Env;

  constructor(env: Env) {
    this.#env = env;
  }

  #raw(name: string): string | undefined {
    const v = this.#env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  string(name: string, fallback: string): string {
    return this.#raw(name) ?? fallback;
  }

  optional(name: string): string | undefined {
    return this.#raw(name);
  }

  required(name: string, hint: string): string {
    const v = this.#raw(name);
    if (v === undefined) this.problems.push(`${name} is required: ${hint}`);
    return v ?? "";
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return n;
  }

  url(name: string, fallback: string): string {
    const v = this.string(name, fallback);
    if (!URL.canParse(v) || !/^(https?|postgres(ql)?):$/.test(new URL(v).protocol)) {
      this.problems.push(`${name} must be an http(s):// or postgres:// URL, got "${v}"`);
    }
    return v;
  }

  /** A comma-separated list; empty when unset. */
  list(name: string): string[] {
    return (this.#raw(name) ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const v = this.string(name, fallback);
    if (!(allowed as readonly string[]).includes(v)) {
      this.problems.push(`${name} must be one of ${allowed.join(", ")}, got "${v}"`);
      return fallback;
    }
    return v as T;
  }
}

/** Builds a config object from the environment, or throws a ConfigError listing every problem. */
export function readConfig<T>(read: (env: EnvReader) => T, env: Env = process.env): T {
  const reader = new EnvReader(env);
  const config = read(reader);
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return config;
}
