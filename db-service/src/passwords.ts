import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { hash, verify } from "@node-rs/argon2";

// One of OWASP's equivalent argon2id configurations: 9 MiB of memory, 4 passes, 1 lane. It
// costs an attacker as much as the 19 MiB / 2 passes one, and keeps db-service's memory low
// while logins run (see bench/results.md). @node-rs/argon2 uses argon2id by default; hashes
// made with other parameters still verify, since each hash carries its own.
const ARGON2_PARAMS = { memoryCost: 9216, timeCost: 4, parallelism: 1 } as const;

/**
 * Each hash holds its 9 MiB while it runs. Running more at once than there are cores buys no
 * throughput, only memory (32 logins at once would need 300 MiB), so the rest wait their turn.
 */
class Gate {
  #free: number;
  readonly #slots: number;
  readonly #waiting: (() => void)[] = [];

  constructor(slots: number) {
    this.#free = slots;
    this.#slots = slots;
  }

  get load(): { active: number; waiting: number } {
    return { active: this.#slots - this.#free, waiting: this.#waiting.length };
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

const gate = new Gate(Math.max(1, availableParallelism()));

/** How busy the hashing is, for the metrics. */
export function argon2Load(): { active: number; waiting: number } {
  return gate.load;
}

export function hashPassword(password: string): Promise<string> {
  return gate.run(() => hash(password, ARGON2_PARAMS));
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return gate.run(() => verify(passwordHash, password));
}

// Verified against when the user does not exist, so that an unknown name costs as much time
// as a wrong password and the two cannot be told apart.
let decoy: Promise<string> | undefined;
export async function burnVerification(password: string): Promise<false> {
  decoy ??= hashPassword(randomBytes(16).toString("hex"));
  const decoyHash = await decoy;
  await gate.run(() => verify(decoyHash, password));
  return false;
}
