import { Code } from "@connectrpc/connect";
import { rpcError } from "@merch/kit/errors";

// The refusals more than one service module gives, with the reasons the gateway maps.

export const userNotFound = (id: number) => rpcError(Code.NotFound, "user_not_found", `user ${id} does not exist`);

export const productNotFound = (id: number) =>
  rpcError(Code.NotFound, "product_not_found", `product ${id} does not exist`);

export const accountDeactivated = () =>
  rpcError(Code.PermissionDenied, "account_deactivated", "the account is deactivated");
