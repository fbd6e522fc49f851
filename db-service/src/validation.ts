import { type FieldViolation, invalidArgument } from "@merch/kit/errors";

// The contract's field rules. Checked before any query, so bad input never reaches PostgreSQL.
const SID = /^[A-Za-z0-9]{1,15}$/;
const USERNAME = /^[A-Za-z0-9_.-]{3,50}$/;
// The WHATWG HTML address rule, plus a dot in the domain: a store must be able to mail it.
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const IDEMPOTENCY_KEY = /^[\x20-\x7E]{1,255}$/;
export const MAX_ID = 2_147_483_647;

/** Collects violations; `done()` throws INVALID_ARGUMENT listing all of them. */
export class Check {
  readonly violations: FieldViolation[] = [];

  #fail(field: string, message: string): this {
    this.violations.push({ field, message });
    return this;
  }

  sid(field: string, v: string): this {
    return SID.test(v) ? this : this.#fail(field, "must be 1 to 15 letters or digits");
  }

  username(field: string, v: string): this {
    return USERNAME.test(v) ? this : this.#fail(field, "must be 3 to 50 characters of A-Z, a-z, 0-9, _ . -");
  }

  email(field: string, v: string): this {
    if (v.length > 255) return this.#fail(field, "must be at most 255 characters");
    return EMAIL.test(v) ? this : this.#fail(field, "must be a valid email address");
  }

  password(field: string, v: string): this {
    const n = [...v].length;
    return n >= 8 && n <= 128 ? this : this.#fail(field, "must be 8 to 128 characters");
  }

  id(field: string, v: number): this {
    return Number.isInteger(v) && v >= 1 && v <= MAX_ID ? this : this.#fail(field, "must be a positive integer");
  }

  intRange(field: string, v: number, min: number, max: number): this {
    return Number.isInteger(v) && v >= min && v <= max
      ? this
      : this.#fail(field, `must be an integer from ${min} to ${max}`);
  }

  idempotencyKey(field: string, v: string): this {
    return IDEMPOTENCY_KEY.test(v) ? this : this.#fail(field, "must be 1 to 255 printable ASCII characters");
  }

  require(field: string, present: boolean, message: string): this {
    return present ? this : this.#fail(field, message);
  }

  done(): void {
    if (this.violations.length > 0) throw invalidArgument(this.violations);
  }
}
