import { randomBytes } from "node:crypto";
import { hash, verify } from "@node-rs/argon2";

// OWASP's first argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
// @node-rs/argon2 uses argon2id by default.
const PARAMS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, PARAMS);
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return verify(passwordHash, password);
}

// Verified against when the user does not exist, so that an unknown name costs as much time
// as a wrong password and the two cannot be told apart.
let decoy: Promise<string> | undefined;
export async function burnVerification(password: string): Promise<false> {
  decoy ??= hashPassword(randomBytes(16).toString("hex"));
  await verify(await decoy, password);
  return false;
}
