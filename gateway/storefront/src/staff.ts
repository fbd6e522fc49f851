import { type Order, OrderStatus } from "@merch/gen/merch/shop/v1/shop_pb";
import type { Shop } from "./api.ts";
import { byId, field, h } from "./dom.ts";
import { type Refusal, refusalOf } from "./refusals.ts";

// The staff view: shown only when the account logged in is staff (ListAllOrders answers it), with
// a New product form, a Restock control on each product, and the orders to hand over at the desk.
// Customers never see these controls: they stay hidden, out of the accessibility tree too.

/** The orders of each status the desk shows: ListAllOrders allows 100 per page. */
const HANDOVER_SHOWN = 100;

export interface StaffHooks {
  say(text: string): void;
  refused(refusal: Refusal): void;
  refreshProducts(): Promise<void>;
  productName(id: number): string;
}

/** "20" → "20.00", "19.9" → "19.90": money as the store writes it. */
function money(text: string): string {
  if (/^[0-9]+$/.test(text)) return `${text}.00`;
  if (/^[0-9]+[.][0-9]$/.test(text)) return `${text}0`;
  return text;
}

export class StaffView {
  readonly #shop: Shop;
  readonly #hooks: StaffHooks;
  readonly #section = byId("staff-section", HTMLElement);
  readonly #form = byId("product-form", HTMLFormElement);
  readonly #list = byId("handover", HTMLUListElement);
  readonly #note = byId("handover-note", HTMLParagraphElement);
  readonly #restock = new Set<HTMLFormElement>();
  #active = false;
  #asked = 0;
  #applied = 0;

  constructor(shop: Shop, hooks: StaffHooks) {
    this.#shop = shop;
    this.#hooks = hooks;
    this.#form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#addProduct();
    });
  }

  get active(): boolean {
    return this.#active;
  }

  /** Shows the staff view if the account is staff; a customer's account is told nothing. */
  async enter(): Promise<void> {
    try {
      await this.#shop.listAllOrders({ pageSize: 1 });
    } catch {
      this.leave();
      return;
    }
    this.#active = true;
    this.#section.hidden = false;
    for (const form of this.#restock) form.hidden = false;
    await this.refresh();
  }

  leave(): void {
    this.#active = false;
    this.#section.hidden = true;
    for (const form of this.#restock) form.hidden = true;
    this.#list.replaceChildren();
    this.#applied = ++this.#asked;
  }

  /** The Add stock field and Restock button of one product's article. */
  restockForm(productId: number, name: () => string): HTMLFormElement {
    const id = `restock-${productId}`;
    const amount = h("input", {
      id,
      name: "delta",
      type: "number",
      min: "-1000000",
      max: "1000000",
      inputmode: "numeric",
      required: "",
    });
    const button = h("button", { type: "submit" }, "Restock");
    const form = h("form", { class: "restock-form" }, h("label", { for: id }, "Add stock"), amount, button);
    form.hidden = !this.#active;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(button, async () => {
        const delta = Number(amount.value);
        try {
          const { product } = await this.#shop.adjustStock({
            id: productId,
            delta,
            reason: "restocked in the storefront",
          });
          amount.value = "";
          await this.#hooks.refreshProducts();
          this.#hooks.say(
            `${name()}: ${delta > 0 ? `${delta} added` : `${-delta} taken`}, ${product?.stock ?? "?"} in stock now.`,
          );
        } catch (err) {
          this.#hooks.refused(refusalOf(err));
        }
      });
    });
    this.#restock.add(form);
    return form;
  }

  /** Forgets the form of a product no longer shown. */
  dropRestockForm(form: HTMLFormElement): void {
    this.#restock.delete(form);
  }

  async refresh(): Promise<void> {
    if (!this.#active) return;
    const asked = ++this.#asked;
    try {
      const [placed, ready] = await Promise.all([
        this.#shop.listAllOrders({ status: OrderStatus.PLACED, pageSize: HANDOVER_SHOWN }),
        this.#shop.listAllOrders({ status: OrderStatus.READY, pageSize: HANDOVER_SHOWN }),
      ]);
      if (asked < this.#applied || !this.#active) return;
      this.#applied = asked;
      const orders = [...placed.orders, ...ready.orders].sort((a, b) => b.id - a.id);
      this.#list.replaceChildren(...orders.map((o) => this.#item(o)));
      this.#note.textContent = orders.length === 0 ? "Nothing to hand over." : "";
      this.#note.hidden = this.#note.textContent === "";
    } catch (err) {
      const refusal = refusalOf(err);
      // The role was taken away meanwhile: the view goes.
      if (refusal.reason === "staff_only") this.leave();
      else this.#hooks.refused(refusal);
    }
  }

  #item(order: Order): HTMLLIElement {
    const name = this.#hooks.productName(order.productId);
    const ready = order.status === OrderStatus.READY;
    const status = ready ? "ready" : "placed";
    const button = h("button", { type: "button" }, ready ? "Mark collected" : "Mark ready");
    button.addEventListener("click", () => void busy(button, () => this.#move(order, ready, name)));
    return h(
      "li",
      { class: `order ${status}` },
      h("span", { class: "order-id" }, `Order #${order.id}`),
      h("span", { class: "order-product" }, name),
      h("span", {}, `Quantity ${order.quantity}`),
      h("span", {}, `Total ${order.totalPrice}`),
      h("span", {}, `Customer #${order.userId}`),
      h("span", { class: "order-status" }, status),
      button,
    );
  }

  async #move(order: Order, ready: boolean, name: string): Promise<void> {
    try {
      if (ready) await this.#shop.markOrderCollected({ id: order.id });
      else await this.#shop.markOrderReady({ id: order.id });
      await this.refresh();
      this.#hooks.say(
        `Order #${order.id} (${order.quantity} × ${name}) is ${ready ? "collected" : "ready for collection"}.`,
      );
    } catch (err) {
      await this.refresh();
      this.#hooks.refused(refusalOf(err));
    }
  }

  async #addProduct(): Promise<void> {
    const form = this.#form;
    const button = form.querySelector("button[type=submit]");
    if (!(button instanceof HTMLButtonElement)) return;
    await busy(button, async () => {
      const name = field(form, "name");
      try {
        const description = field(form, "description");
        await this.#shop.createProduct({
          name,
          category: field(form, "category"),
          price: money(field(form, "price")),
          stock: Number(field(form, "stock") || "0"),
          ...(description === "" ? {} : { description }),
        });
        form.reset();
        await this.#hooks.refreshProducts();
        this.#hooks.say(`${name} added to the store.`);
      } catch (err) {
        this.#hooks.refused(refusalOf(err));
      }
    });
  }
}

async function busy(button: HTMLButtonElement, work: () => Promise<void>): Promise<void> {
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}
