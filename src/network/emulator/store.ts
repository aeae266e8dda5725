import { type Item, menuSpecs } from "./menus.ts";

/**
 * The router's configuration: one table of items per menu, with RouterOS-style ids (`*1A`) and an
 * index on each menu's unique name, so that adds stay O(1) on a router with 10,000 secrets. Items
 * are plain records that tests read and edit (as an admin would in Winbox).
 */
export class Store {
  private readonly tables = new Map<string, Map<string, Item>>();
  private readonly names = new Map<string, Map<string, Item>>();
  private nextId = 1;

  constructor() {
    for (const [menu, spec] of Object.entries(menuSpecs)) {
      const table = this.table(menu);
      for (const builtin of spec.builtins ?? []) {
        const item = { ".id": this.newId(), ...spec.defaults, ...builtin, default: "true" };
        table.set(item[".id"], item);
        this.index(menu, item);
      }
    }
  }

  newId(): string {
    return `*${(this.nextId++).toString(16).toUpperCase()}`;
  }

  table(menu: string): Map<string, Item> {
    let table = this.tables.get(menu);
    if (!table) {
      table = new Map();
      this.tables.set(menu, table);
    }
    return table;
  }

  /** The live item (not a copy) whose `key` is `value`. */
  lookup(menu: string, value: string, key = "name"): Item | undefined {
    if (menuSpecs[menu]?.unique?.param === key) return this.names.get(menu)?.get(value);
    for (const item of this.table(menu).values()) if (item[key] === value) return item;
    return undefined;
  }

  /** Stores a new item; `attributes` are taken as given (the caller validated them, or is a test). */
  insert(menu: string, attributes: Item): Item {
    const item: Item = { ".id": this.newId(), ...(menuSpecs[menu]?.defaults ?? {}), ...attributes };
    this.table(menu).set(item[".id"]!, item);
    this.index(menu, item);
    return item;
  }

  update(menu: string, item: Item, attributes: Item): void {
    this.unindex(menu, item);
    Object.assign(item, attributes);
    this.index(menu, item);
  }

  remove(menu: string, item: Item): void {
    this.unindex(menu, item);
    this.table(menu).delete(item[".id"]!);
  }

  private index(menu: string, item: Item): void {
    const key = menuSpecs[menu]?.unique?.param;
    const value = key ? item[key] : undefined;
    if (!key || value === undefined) return;
    let index = this.names.get(menu);
    if (!index) {
      index = new Map();
      this.names.set(menu, index);
    }
    index.set(value, item);
  }

  private unindex(menu: string, item: Item): void {
    const key = menuSpecs[menu]?.unique?.param;
    const value = key ? item[key] : undefined;
    if (value !== undefined && this.names.get(menu)?.get(value) === item) this.names.get(menu)!.delete(value);
  }
}
