import { type Item, type MenuSpec, menuSpecs, printArguments, type Verb } from "./menus.ts";
import type { Store } from "./store.ts";
import { isRefusal, type Refusal, readValue, refusals } from "./values.ts";

/**
 * What the router does with one API command: the reply sentences (without tags), as RouterOS 7
 * answers them, or 6.x where `router` says so. Parameters are checked the way RouterOS checks them:
 * one it does not know in that menu is refused, a value that does not read is refused, and nothing
 * is changed by a command that is refused.
 */

export interface CommandRouter {
  readonly store: Store;
  identity: string;
  readonly version: string;
  /** RouterOS 7.18+ answers a command with no data with `!empty`. */
  readonly sendsEmpty: boolean;
  /** RouterOS 7 names the parameter it does not know; 6.x says only "unknown parameter". */
  readonly namesUnknownParameters: boolean;
}

type Sentence = string[];

const trap = (refusal: Refusal): Sentence[] => [
  [
    "!trap",
    ...(refusal.category === undefined ? [] : [`=category=${refusal.category}`]),
    `=message=${refusal.message}`,
  ],
  ["!done"],
];

export function execute(
  router: CommandRouter,
  command: string,
  attributes: Record<string, string>,
  queries: string[],
): Sentence[] {
  const system = executeSystem(router, command, attributes);
  if (system) return system;
  const cut = command.lastIndexOf("/");
  const menu = command.slice(0, cut);
  const verb = command.slice(cut + 1) as Verb;
  const spec = menuSpecs[menu];
  if (!spec) return trap(refusals.noSuchPrefix());
  if (!spec.verbs.includes(verb)) return trap(refusals.noSuchCommand());
  const result = runVerb(router, menu, spec, verb, attributes, queries);
  return isRefusal(result) ? trap(result) : result;
}

function executeSystem(
  router: CommandRouter,
  command: string,
  attributes: Record<string, string>,
): Sentence[] | null {
  switch (command) {
    case "/system/identity/print":
      return [["!re", `=name=${router.identity}`], ["!done"]];
    case "/system/identity/set":
      if (attributes.name) router.identity = attributes.name;
      return [["!done"]];
    case "/system/resource/print":
      return [
        [
          "!re",
          "=uptime=1w2d3h",
          `=version=${router.version} (stable)`,
          "=cpu-load=3",
          "=free-memory=214958080",
          "=total-memory=268435456",
          "=architecture-name=x86_64",
          "=board-name=CHR",
          "=platform=MikroTik",
        ],
        ["!done"],
      ];
    case "/cancel":
      return [["!done"]];
    default:
      return null;
  }
}

function runVerb(
  router: CommandRouter,
  menu: string,
  spec: MenuSpec,
  verb: Verb,
  attributes: Record<string, string>,
  queries: string[],
): Sentence[] | Refusal {
  const { store } = router;
  const unknown = (name: string) => refusals.unknownParameter(name, router.namesUnknownParameters);
  switch (verb) {
    case "print":
    case "getall": {
      for (const name of Object.keys(attributes)) if (!printArguments.has(name)) return unknown(name);
      return print(router, menu, attributes, queries);
    }
    case "add": {
      const values = readParams(router, spec, attributes);
      if (isRefusal(values)) return values;
      if (spec.unique) {
        const key = values[spec.unique.param];
        if (!key) return { message: `failure: ${spec.unique.param} not specified` };
        if (store.lookup(menu, key, spec.unique.param)) return { message: spec.unique.duplicate };
      }
      const item = store.insert(menu, values);
      return [["!done", `=ret=${item[".id"]}`]];
    }
    case "set":
    case "enable":
    case "disable": {
      const { targets, rest } = split(attributes);
      if (verb !== "set") {
        const extra = Object.keys(rest)[0];
        if (extra !== undefined) return unknown(extra);
        rest.disabled = verb === "disable" ? "yes" : "no";
      }
      const values = readParams(router, spec, rest);
      if (isRefusal(values)) return values;
      const items = resolve(router, menu, spec, targets);
      if (isRefusal(items)) return items;
      if (spec.unique && values[spec.unique.param] !== undefined) {
        const other = store.lookup(menu, values[spec.unique.param]!, spec.unique.param);
        if (other && !items.includes(other)) return { message: spec.unique.duplicate };
      }
      for (const item of items) {
        const oldName = item.name;
        store.update(menu, item, values);
        if (oldName !== undefined && item.name !== oldName)
          renameReferences(store, spec, oldName, item.name!);
      }
      return [["!done"]];
    }
    case "remove": {
      const { targets, rest } = split(attributes);
      const extra = Object.keys(rest)[0];
      if (extra !== undefined) return unknown(extra);
      const items = resolve(router, menu, spec, targets);
      if (isRefusal(items)) return items;
      // Checked for all before any is removed: a refused command changes nothing.
      for (const item of items) {
        if (item.default === "true" && spec.builtins) return refusals.builtin();
        if (inUse(store, spec, item)) return refusals.inUse();
      }
      for (const item of items) store.remove(menu, item);
      return [["!done"]];
    }
  }
}

function print(
  router: CommandRouter,
  menu: string,
  attributes: Record<string, string>,
  queries: string[],
): Sentence[] {
  const proplist = attributes[".proplist"]?.split(",").filter(Boolean);
  const rows: Sentence[] = [];
  for (const item of router.store.table(menu).values()) {
    if (!matches(item, queries)) continue;
    const words = ["!re"];
    for (const [key, value] of Object.entries(item)) {
      if (proplist && !proplist.includes(key)) continue;
      words.push(`=${key}=${value}`);
    }
    rows.push(words);
  }
  if (attributes["count-only"] !== undefined) return [["!done", `=ret=${rows.length}`]];
  if (rows.length === 0 && router.sendsEmpty) return [["!empty"], ["!done"]];
  return [...rows, ["!done"]];
}

/** The items a command names (`.id` or `numbers`), and the rest of its attributes. */
function split(attributes: Record<string, string>): { targets: string | undefined; rest: Item } {
  const { ".id": id, numbers, ...rest } = attributes;
  return { targets: id ?? numbers, rest };
}

/** Items named by ids or names, comma-separated. */
function resolve(
  router: CommandRouter,
  menu: string,
  spec: MenuSpec,
  list: string | undefined,
): Item[] | Refusal {
  if (list === undefined || list === "") return refusals.noSuchItem();
  const table = router.store.table(menu);
  const items: Item[] = [];
  for (const ref of list.split(",")) {
    const item =
      table.get(ref) ?? (spec.unique ? router.store.lookup(menu, ref, spec.unique.param) : undefined);
    if (!item) return refusals.noSuchItem();
    items.push(item);
  }
  return items;
}

/** Parameters as the menu reads them: unknown ones first (RouterOS parses the whole command), then values. */
function readParams(
  router: CommandRouter,
  spec: MenuSpec,
  attributes: Record<string, string>,
): Item | Refusal {
  for (const name of Object.keys(attributes)) {
    if (!(name in spec.params)) return refusals.unknownParameter(name, router.namesUnknownParameters);
  }
  const exists = (menu: string, name: string) => router.store.lookup(menu, name) !== undefined;
  const values: Item = {};
  for (const [name, raw] of Object.entries(attributes)) {
    const value = readValue(name, spec.params[name]!, raw, exists);
    if (isRefusal(value)) return value;
    values[name] = value;
  }
  return values;
}

function inUse(store: Store, spec: MenuSpec, item: Item): boolean {
  for (const { menu, param } of spec.usedBy ?? []) {
    for (const user of store.table(menu).values()) if (user[param] === item.name) return true;
  }
  return false;
}

/** RouterOS refers to items by id: entries using a renamed profile show its new name. */
function renameReferences(store: Store, spec: MenuSpec, from: string, to: string): void {
  for (const { menu, param } of spec.usedBy ?? []) {
    for (const user of store.table(menu).values()) if (user[param] === from) user[param] = to;
  }
}

/** RouterOS print queries: `?a=b`, `?a` (has), `?-a` (has not), `?<a=n`, `?>a=n`, and `?#` stack operators. */
export function matches(item: Item, queries: string[]): boolean {
  if (queries.length === 0) return true;
  const stack: boolean[] = [];
  for (const q of queries) {
    if (q.startsWith("#")) {
      for (const op of q.slice(1)) {
        if (op === "!") stack.push(!stack.pop());
        else if (op === "&" || op === "|") {
          const b = stack.pop() ?? true;
          const a = stack.pop() ?? true;
          stack.push(op === "&" ? a && b : a || b);
        }
      }
      continue;
    }
    if (q.startsWith("-")) {
      stack.push(!(q.slice(1) in item));
      continue;
    }
    const compare = q[0] === "<" || q[0] === ">" ? q[0] : null;
    const body = compare ? q.slice(1) : q;
    const eq = body.indexOf("=");
    if (eq === -1) {
      stack.push(body in item);
      continue;
    }
    const key = body.slice(0, eq);
    const value = body.slice(eq + 1);
    const actual = item[key];
    if (compare === "<") stack.push(actual !== undefined && Number(actual) < Number(value));
    else if (compare === ">") stack.push(actual !== undefined && Number(actual) > Number(value));
    else stack.push((actual ?? "") === value);
  }
  return stack.every(Boolean);
}
