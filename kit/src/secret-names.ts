// The contract: "No secret, password or token ever appears in a log event." What an attribute
// name that may carry one contains, case aside. The gateway drops such attributes from the events
// it sends; log-service refuses an event that has one, as a last line of defence. One list, so
// that nothing the gateway lets through is refused downstream. "pass" covers password, passwd
// and passphrase. Not "hash" on its own: the audit's login_hash is a keyed hash made to be logged.
export const SECRET_NAME_PARTS = [
  "pass",
  "secret",
  "token",
  "authorization",
  "cookie",
  "apikey",
  "api-key",
  "api_key",
  "credential",
] as const;

const SECRET_NAME = new RegExp(SECRET_NAME_PARTS.join("|"), "i");

/** Whether an attribute of this name may carry a secret, and so must never be logged. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}
