import assert from "node:assert/strict";
import { test } from "node:test";
import { isSecretName, SECRET_NAME_PARTS } from "./secret-names.ts";

test("every name that may carry a secret is caught, in any case and inside a longer name", () => {
  for (const name of [
    ...SECRET_NAME_PARTS,
    "password",
    "new_password",
    "passwd",
    "PassPhrase",
    "client_secret",
    "access_token",
    "accessToken",
    "Authorization",
    "set-cookie",
    "apikey",
    "X-API-Key",
    "api_key",
    "db_credential",
  ]) {
    assert.equal(isSecretName(name), true, name);
  }
});

test("ordinary attribute names pass", () => {
  for (const name of ["order_id", "reason", "login_hash", "path", "user_agent", "sku", "api_version"]) {
    assert.equal(isSecretName(name), false, name);
  }
});
