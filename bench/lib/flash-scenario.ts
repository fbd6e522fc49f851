// The flash sale measured: its own product, FLASH_STOCK units, FLASH_BUYERS buyers at once, and
// afterwards what the database says was sold.
import { type FlashSale, type FlashSaleResult, prepareFlashSale } from "./flash-sale.ts";
import type { Measurer } from "./measure.ts";
import { FLASH_BUYERS, FLASH_STOCK } from "./options.ts";
import type { Measured, Report } from "./report.ts";
import { createProducts, type Shopper, type Store } from "./store.ts";

export async function measureFlashSale(
  measurer: Measurer,
  store: Store,
  shoppers: readonly Shopper[],
  tag: string,
): Promise<{ measured: Measured; flash: Report["flash"] }> {
  const [productId] = await createProducts(store.sql, [`Bench flash sale ${tag}`], FLASH_STOCK);
  if (productId === undefined) throw new Error("no flash-sale product");
  const tokens = shoppers.map((s) => s.token);
  let buyers: FlashSale | undefined;
  let sale: FlashSaleResult | undefined;
  const m = await measurer.measure({
    id: "flash",
    title: `flash sale (${FLASH_BUYERS} buyers, stock ${FLASH_STOCK})`,
    connections: FLASH_BUYERS,
    orders: false,
    generator: "bench process",
    // A flash sale has no warm-up and no duration: it ends when every buyer has an answer.
    warmup: false,
    async prepare() {
      buyers = await prepareFlashSale({ baseUrl: store.stack.gatewayUrl, productId, buyers: FLASH_BUYERS, tokens });
    },
    async run() {
      if (!buyers) throw new Error("the buyers did not connect");
      sale = await buyers.fire();
      buyers.close();
      return {
        requests: sale.buyers,
        seconds: sale.allAnsweredMs / 1000,
        p50: sale.p50,
        p99: sale.p99,
        max: sale.allAnsweredMs,
        failed: sale.buyers - sale.created,
        errors: Object.values(sale.other).reduce((a, b) => a + b, 0),
        statuses: {
          "201": sale.created,
          "409 insufficient_stock": sale.soldOut,
          "5xx": sale.server,
          ...sale.serverKinds,
          ...sale.other,
        },
      };
    },
  });
  const [row] = await store.sql<{ stock: number; orders: number }[]>`
    SELECT p.stock, (SELECT count(*)::int FROM orders o WHERE o.product_id = p.id) AS orders
    FROM products p WHERE p.id = ${productId}`;
  const flash: Report["flash"] = sale && {
    ...sale,
    stock: FLASH_STOCK,
    stockLeft: row?.stock ?? Number.NaN,
    ordersRows: row?.orders ?? Number.NaN,
    reproduce: "`npm run bench -- --only flash`",
    ...(m.note ? { note: m.note } : {}),
  };
  return { measured: m, flash };
}
