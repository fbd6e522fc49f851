// Small DOM helpers: the page is a handful of elements, not worth a framework.

/** An element of index.html, checked once at start-up rather than trusted at every use. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`index.html has no #${id} of the expected kind`);
  return found;
}

type Child = Node | string;

/** An element with attributes and children; text always goes in as text, never as HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  el.append(...children);
  return el;
}

/** The value of a named field of a form: names are trimmed, passwords are taken as typed. */
export function field(form: HTMLFormElement, name: string, opts: { trim: boolean } = { trim: true }): string {
  const value = new FormData(form).get(name);
  if (typeof value !== "string") return "";
  return opts.trim ? value.trim() : value;
}
