import { type Order, OrderStatus, type Product, type User } from "@merch/gen/merch/shop/v1/shop_pb";
import { Session, shopClient } from "./api.ts";
import { byId, field, h } from "./dom.ts";
import { inWords, type Refusal, refusalOf } from "./refusals.ts";
import { StaffView } from "./staff.ts";

// The storefront: browse with live stock, register, log in, order, see and cancel orders, log
// out; and, for a staff account, run the shop (staff.ts). Every answer of the store ends in words, in role="status" when it went well and in
// role="alert" when it was refused.

/** How often the stock is read again while the page is visible. */
const STOCK_REFRESH_MS = 4000;
/** One page of orders; ListOrders allows at most 100. */
const ORDERS_SHOWN = 100;

const session = new Session();
const shop = shopClient(session);

const ui = {
  status: byId("status", HTMLParagraphElement),
  alert: byId("alert", HTMLParagraphElement),
  account: byId("account", HTMLDivElement),
  whoami: byId("whoami", HTMLSpanElement),
  logout: byId("logout", HTMLButtonElement),
  auth: byId("auth", HTMLElement),
  loginForm: byId("login-form", HTMLFormElement),
  loginUsername: byId("login-username", HTMLInputElement),
  loginPassword: byId("login-password", HTMLInputElement),
  registerForm: byId("register-form", HTMLFormElement),
  products: byId("products", HTMLDivElement),
  productsNote: byId("products-note", HTMLParagraphElement),
  ordersSection: byId("orders-section", HTMLElement),
  orders: byId("orders", HTMLUListElement),
  ordersNote: byId("orders-note", HTMLParagraphElement),
};

// ------------------------------------------------------------------------------------ messages

function say(text: string): void {
  ui.alert.textContent = "";
  ui.status.textContent = text;
}

function refuse(text: string): void {
  ui.status.textContent = "";
  ui.alert.textContent = text;
}

/** Says why a call was refused; a token the store no longer takes signs the page out. */
function refused(refusal: Refusal, override: Partial<Record<string, string>> = {}): void {
  if (user !== undefined && (refusal.reason === "invalid_token" || refusal.reason === "authentication_required")) {
    signedOut();
  }
  refuse(inWords(refusal, override));
}

/** Runs a call with its button disabled, so that a double click does not send it twice. */
async function busy(button: HTMLButtonElement, work: () => Promise<void>): Promise<void> {
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

function submitButton(form: HTMLFormElement): HTMLButtonElement {
  const button = form.querySelector("button[type=submit]");
  if (!(button instanceof HTMLButtonElement)) throw new Error("a form without a submit button");
  return button;
}

// ------------------------------------------------------------------------------------ products

interface ProductView {
  product: Product;
  article: HTMLElement;
  price: HTMLElement;
  stock: HTMLElement;
  restock: HTMLFormElement;
}

const shown = new Map<number, ProductView>();
/** Refreshes may overlap (the timer and an order's): only an answer newer than the shown one is applied. */
let productsAsked = 0;
let productsApplied = 0;

async function refreshProducts(): Promise<void> {
  const asked = ++productsAsked;
  try {
    const { products } = await shop.listProducts({});
    if (asked < productsApplied) return;
    productsApplied = asked;
    showProducts(products);
    ui.productsNote.hidden = true;
  } catch (err) {
    if (asked < productsApplied) return;
    // Not an alert: a background refresh must not drown out the answer to what the person did.
    ui.productsNote.textContent = `The stock shown may be out of date: ${inWords(refusalOf(err))}`;
    ui.productsNote.hidden = false;
  }
}

/** Updates the articles in place, so that a refresh never loses a quantity being typed. */
function showProducts(products: Product[]): void {
  const ids = new Set(products.map((p) => p.id));
  for (const [id, view] of shown) {
    if (!ids.has(id)) {
      view.article.remove();
      staff.dropRestockForm(view.restock);
      shown.delete(id);
    }
  }
  for (const product of products) {
    let view = shown.get(product.id);
    if (view === undefined) {
      view = productView(product);
      shown.set(product.id, view);
    }
    view.product = product;
    view.price.textContent = product.price;
    view.stock.textContent = `${product.stock} in stock`;
    view.stock.classList.toggle("low", product.stock < 10);
    // Keep the store's order (by id) even when a product appears later.
    ui.products.append(view.article);
  }
}

function productView(product: Product): ProductView {
  const headingId = `product-${product.id}`;
  const quantityId = `quantity-${product.id}`;
  const price = h("strong");
  const stock = h("span", { class: "stock" });
  const quantity = h("input", {
    id: quantityId,
    name: "quantity",
    type: "number",
    min: "1",
    max: "3",
    value: "1",
    required: "",
    inputmode: "numeric",
  });
  const order = h("button", { type: "submit" }, "Order");
  const form = h("form", { class: "order-form" }, h("label", { for: quantityId }, "Quantity"), quantity, order);
  const article = h(
    "article",
    { class: "product card", "aria-labelledby": headingId },
    h("p", { class: "category" }, product.category),
    h("h3", { id: headingId }, product.name),
    h("p", { class: "slogan" }, product.slogan || product.description),
    h("p", { class: "figures" }, h("span", { class: "price" }, "Price ", price), stock),
    form,
  );
  const restock = staff.restockForm(product.id, () => view.product.name);
  article.append(restock);
  const view: ProductView = { product, article, price, stock, restock };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(order, () => placeOrder(view.product, Number(quantity.value)));
  });
  return view;
}

// -------------------------------------------------------------------------------------- orders

/**
 * An order whose outcome is unknown (the answer was lost) keeps its idempotency key: pressing
 * Order again for the same product and quantity repeats it safely, and the store answers the
 * first order instead of placing a second.
 */
const unsettled = new Map<number, { quantity: number; key: string }>();

function newKey(): string {
  // crypto.randomUUID exists only on https and localhost; getRandomValues everywhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `shop-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function placeOrder(product: Product, quantity: number): Promise<void> {
  if (user === undefined) {
    refuse("Please log in to order.");
    ui.loginUsername.focus();
    return;
  }
  const pending = unsettled.get(product.id);
  const key = pending?.quantity === quantity ? pending.key : newKey();
  try {
    const { order, replayed } = await shop.placeOrder({ productId: product.id, quantity, idempotencyKey: key });
    unsettled.delete(product.id);
    if (order === undefined) throw new Error("the store sent no order");
    // The lists first, so that the message and the stock it changed appear together.
    await Promise.all([refreshProducts(), refreshOrders()]);
    say(
      `Order #${order.id} ${replayed ? "was already placed" : "placed"}: ${order.quantity} × ${product.name}, ` +
        `total ${order.totalPrice}.`,
    );
  } catch (err) {
    const refusal = refusalOf(err);
    const uncertain =
      refusal.reason === undefined || refusal.reason === "outcome_unknown" || refusal.reason === "upstream_timeout";
    if (uncertain) unsettled.set(product.id, { quantity, key });
    else unsettled.delete(product.id);
    await Promise.all([refreshProducts(), user === undefined ? undefined : refreshOrders()]);
    if (uncertain) {
      refuse(
        "The store could not confirm your order. Your orders below show whether it went through; " +
          "pressing Order again for the same quantity will not place it twice.",
      );
      return;
    }
    const left = shown.get(product.id)?.product.stock;
    refused(refusal, {
      insufficient_stock:
        left === undefined
          ? `Not enough stock: the store cannot sell ${quantity} × ${product.name} now.`
          : `Not enough stock: ${left} × ${product.name} left, and you asked for ${quantity}.`,
    });
  }
}

let ordersAsked = 0;
let ordersApplied = 0;

async function refreshOrders(): Promise<void> {
  const asked = ++ordersAsked;
  try {
    const { orders, nextPageToken } = await shop.listOrders({ pageSize: ORDERS_SHOWN });
    if (asked < ordersApplied || user === undefined) return;
    ordersApplied = asked;
    ui.orders.replaceChildren(...orders.map(orderItem));
    ui.ordersNote.textContent =
      orders.length === 0
        ? "No orders yet."
        : nextPageToken === ""
          ? ""
          : `Showing your ${orders.length} newest orders.`;
    ui.ordersNote.hidden = ui.ordersNote.textContent === "";
  } catch (err) {
    refused(refusalOf(err));
  }
}

const STATUS_WORDS: Record<number, string> = {
  [OrderStatus.PLACED]: "placed",
  [OrderStatus.READY]: "ready for collection",
  [OrderStatus.COLLECTED]: "collected",
  [OrderStatus.CANCELLED]: "cancelled",
};

function productName(id: number): string {
  return shown.get(id)?.product.name ?? `Product #${id}`;
}

function orderItem(order: Order): HTMLLIElement {
  const name = productName(order.productId);
  const placed = order.status === OrderStatus.PLACED;
  const status = STATUS_WORDS[order.status] ?? "unknown";
  const item = h(
    "li",
    { class: `order ${status.split(" ")[0]}` },
    h("span", { class: "order-id" }, `Order #${order.id}`),
    h("span", { class: "order-product" }, name),
    h("span", {}, `Quantity ${order.quantity}`),
    h("span", {}, `Total ${order.totalPrice}`),
    h("span", { class: "order-status" }, status),
  );
  if (placed) {
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    cancel.addEventListener("click", () => void busy(cancel, () => cancelOrder(order, name)));
    item.append(cancel);
  }
  return item;
}

async function cancelOrder(order: Order, name: string): Promise<void> {
  try {
    const { order: cancelled } = await shop.cancelOrder({ id: order.id });
    await Promise.all([refreshProducts(), refreshOrders()]);
    say(`Order #${cancelled?.id ?? order.id} cancelled: ${order.quantity} × ${name} went back into stock.`);
  } catch (err) {
    refused(refusalOf(err));
  }
}

// ------------------------------------------------------------------------------------ accounts

let user: User | undefined;

const staff = new StaffView(shop, {
  say,
  refused: (refusal) => refused(refusal),
  refreshProducts: () => refreshProducts(),
  productName,
});

function signedIn(who: User): void {
  user = who;
  ui.whoami.textContent = `Signed in as ${who.username}`;
  ui.account.hidden = false;
  ui.auth.hidden = true;
  ui.ordersSection.hidden = false;
  void staff.enter();
}

function signedOut(): void {
  session.clear();
  user = undefined;
  unsettled.clear();
  ui.account.hidden = true;
  ui.auth.hidden = false;
  ui.ordersSection.hidden = true;
  ui.orders.replaceChildren();
  staff.leave();
  // An answer to a request of the last session must not show its orders again.
  ordersApplied = ++ordersAsked;
}

ui.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = ui.loginForm;
  void busy(submitButton(form), async () => {
    const username = field(form, "username");
    try {
      const res = await shop.login({
        login: { case: "username", value: username },
        password: field(form, "password", { trim: false }),
      });
      if (res.user === undefined) throw new Error("the store sent no user");
      session.set(res.token);
      signedIn(res.user);
      form.reset();
      await refreshOrders();
      say(`Welcome, ${res.user.username}. You are logged in.`);
    } catch (err) {
      ui.loginPassword.value = "";
      ui.loginPassword.focus();
      refused(refusalOf(err));
    }
  });
});

ui.registerForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = ui.registerForm;
  void busy(submitButton(form), async () => {
    const username = field(form, "username");
    try {
      await shop.register({
        sid: field(form, "sid"),
        username,
        email: field(form, "email"),
        password: field(form, "password", { trim: false }),
      });
      form.reset();
      ui.loginUsername.value = username;
      ui.loginPassword.focus();
      say(`Account ${username} created. Log in with your password.`);
    } catch (err) {
      refused(refusalOf(err));
    }
  });
});

ui.logout.addEventListener("click", () => {
  void busy(ui.logout, async () => {
    try {
      await shop.logout({});
      signedOut();
      say("You are logged out.");
    } catch (err) {
      const refusal = refusalOf(err);
      signedOut();
      // A token the store already ended is as good as logged out; anything else may still work.
      if (refusal.reason === "invalid_token") say("You are logged out.");
      else refuse(`Logged out on this page, but the store did not confirm it: ${inWords(refusal)}`);
    }
    ui.loginUsername.focus();
  });
});

// ----------------------------------------------------------------------------------- start-up

async function resume(): Promise<void> {
  if (session.token === undefined) return;
  try {
    const { user: who } = await shop.getMe({});
    if (who === undefined) throw new Error("the store sent no user");
    signedIn(who);
    await refreshOrders();
  } catch (err) {
    const refusal = refusalOf(err);
    signedOut();
    // An expired session simply shows the login form; other failures are worth saying.
    if (refusal.reason !== "invalid_token" && refusal.reason !== "authentication_required") refused(refusal);
  }
}

// Live stock: read again every few seconds while the page is visible, at once when it is shown
// again, and after every order and cancellation (above).
// The orders too, so that a customer sees staff mark theirs ready and collected.
setInterval(() => {
  if (document.hidden) return;
  void refreshProducts();
  if (user !== undefined) void refreshOrders();
  void staff.refresh();
}, STOCK_REFRESH_MS);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refreshProducts();
});
// Product names are needed to show orders: the first list comes before the orders.
await refreshProducts();
await resume();
