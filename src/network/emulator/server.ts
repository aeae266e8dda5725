import net from "node:net";
import { formatDuration, parseDuration } from "../durations.ts";
import { encodeSentence, SentenceReader } from "./protocol.ts";

/**
 * A MikroTik router as seen through its API (port 8728): the real framing, login, tags, the reply
 * sentences of RouterOS 6 and 7.18+, and the menus Tandao uses. Tests and sandbox mode point the real
 * node-routeros client at it. State is plain data that tests may read and edit (as an admin using
 * Winbox would), and faults can be injected.
 */

export type Item = Record<string, string>;

export interface ReceivedCommand {
  command: string;
  attributes: Record<string, string>;
  queries: string[];
  at: number;
}

export interface EmulatorOptions {
  username?: string;
  password?: string;
  identity?: string;
  /** `7.18.2` (default) answers an empty print with `!empty`; a 6.x version never does. */
  version?: string;
  host?: string;
  port?: number;
}

export interface Faults {
  /** Every reply is sent this much later. */
  delayMs: number;
  /** The socket is destroyed, without an answer, when a received command matches. */
  dropWhen: ((command: ReceivedCommand) => boolean) | null;
  /** Login is refused with RouterOS's own message. */
  rejectLogin: boolean;
}

interface MenuSpec {
  unique?: string;
  duplicate?: string;
  defaults: Item;
  /** Attribute → menu whose `name` it must match (RouterOS refuses unknown profiles). */
  refs?: Record<string, string>;
  durations?: string[];
  builtins?: Item[];
}

const menuSpecs: Record<string, MenuSpec> = {
  "/ppp/secret": {
    unique: "name",
    duplicate: "failure: secret with the same name already exists",
    defaults: { service: "any", profile: "default", password: "", "caller-id": "", disabled: "false" },
    refs: { profile: "/ppp/profile" },
  },
  "/ppp/profile": {
    unique: "name",
    duplicate: "failure: profile with the same name already exists",
    defaults: { "only-one": "default", "change-tcp-mss": "default" },
    builtins: [{ name: "default" }, { name: "default-encryption" }],
  },
  "/ppp/active": {
    defaults: { service: "pppoe", "caller-id": "", address: "", uptime: "0s", encoding: "", radius: "false" },
  },
  "/ip/hotspot/user": {
    unique: "name",
    duplicate: "failure: already have user with this name for this server",
    defaults: { server: "all", profile: "default", password: "", disabled: "false" },
    refs: { profile: "/ip/hotspot/user/profile" },
    durations: ["limit-uptime"],
  },
  "/ip/hotspot/user/profile": {
    unique: "name",
    duplicate: "failure: profile with the same name already exists",
    defaults: { "shared-users": "1" },
    builtins: [{ name: "default" }],
  },
  "/ip/hotspot/active": {
    defaults: { server: "hotspot1", address: "", "mac-address": "", uptime: "0s" },
  },
};

export class RouterOsEmulator {
  readonly faults: Faults = { delayMs: 0, dropWhen: null, rejectLogin: false };
  /** Models the network between Tandao and the router: every reply (login included) arrives this much later. */
  latencyMs = 0;
  /** Every command received after login, in order (for counting what the router was asked to do). */
  readonly received: ReceivedCommand[] = [];
  identity: string;
  version: string;
  private readonly tables = new Map<string, Map<string, Item>>();
  /** menu → unique name → item, so that adds stay O(1) on a router with 10,000 secrets. */
  private readonly names = new Map<string, Map<string, Item>>();
  private nextId = 1;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private boundPort = 0;
  private readonly username: string;
  private readonly password: string;
  private readonly host: string;
  loginCount = 0;

  constructor(options: EmulatorOptions = {}) {
    this.username = options.username ?? "admin";
    this.password = options.password ?? "";
    this.identity = options.identity ?? "MikroTik";
    this.version = options.version ?? "7.18.2";
    this.host = options.host ?? "127.0.0.1";
    this.boundPort = options.port ?? 0;
    for (const [menu, spec] of Object.entries(menuSpecs)) {
      const table = new Map<string, Item>();
      this.tables.set(menu, table);
      for (const builtin of spec.builtins ?? []) {
        const id = this.newId();
        const item = { ".id": id, ...spec.defaults, ...builtin, default: "true" };
        table.set(id, item);
        this.indexItem(menu, item);
      }
    }
  }

  get port(): number {
    return this.boundPort;
  }

  /** Starts (or restarts, on the same port) accepting connections. */
  async start(): Promise<this> {
    if (this.server) return this;
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.boundPort, this.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.boundPort = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this;
  }

  /** The router goes away: open connections are cut and new ones refused until `start()`. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.dropConnections();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Supports `!empty` (RouterOS 7.18 and later). */
  get sendsEmpty(): boolean {
    const [major = 0, minor = 0] = this.version.split(".").map((n) => Number.parseInt(n, 10));
    return major > 7 || (major === 7 && minor >= 18);
  }

  // ---- state, for tests and sandbox ----

  items(menu: string): Item[] {
    return [...this.table(menu).values()].map((item) => ({ ...item }));
  }

  find(menu: string, name: string, key = "name"): Item | undefined {
    const found = this.lookup(menu, name, key);
    return found ? { ...found } : undefined;
  }

  private lookup(menu: string, value: string, key = "name"): Item | undefined {
    if (menuSpecs[menu]?.unique === key) return this.names.get(menu)?.get(value);
    for (const item of this.table(menu).values()) if (item[key] === value) return item;
    return undefined;
  }

  private indexItem(menu: string, item: Item): void {
    const key = menuSpecs[menu]?.unique;
    const value = key ? item[key] : undefined;
    if (!key || value === undefined) return;
    let index = this.names.get(menu);
    if (!index) {
      index = new Map();
      this.names.set(menu, index);
    }
    index.set(value, item);
  }

  private unindexItem(menu: string, item: Item): void {
    const key = menuSpecs[menu]?.unique;
    const value = key ? item[key] : undefined;
    if (value !== undefined && this.names.get(menu)?.get(value) === item) this.names.get(menu)!.delete(value);
  }

  /** Adds an entry directly, bypassing the API (an entry made by hand, or a session that dialled in). */
  insert(menu: string, attributes: Item): string {
    const spec = menuSpecs[menu];
    const id = this.newId();
    const item = { ".id": id, ...(spec?.defaults ?? {}), ...attributes };
    this.table(menu).set(id, item);
    this.indexItem(menu, item);
    return id;
  }

  /** Edits an entry directly (an admin changing it in Winbox). */
  update(menu: string, id: string, attributes: Item): void {
    const item = this.table(menu).get(id);
    if (!item) throw new Error(`no ${menu} item ${id}`);
    this.unindexItem(menu, item);
    Object.assign(item, attributes);
    this.indexItem(menu, item);
  }

  delete(menu: string, id: string): void {
    const item = this.table(menu).get(id);
    if (item) this.unindexItem(menu, item);
    this.table(menu).delete(id);
  }

  /** A PPPoE client dials in with this secret's name. */
  connectPppoe(name: string): string {
    return this.insert("/ppp/active", { name, address: "10.0.0.2", "caller-id": "AA:BB:CC:DD:EE:FF" });
  }

  /** A hotspot client logs in with this user. */
  connectHotspot(user: string): string {
    return this.insert("/ip/hotspot/active", {
      user,
      address: "10.5.50.2",
      "mac-address": "AA:BB:CC:00:00:01",
    });
  }

  count(command: string): number {
    let n = 0;
    for (const c of this.received) if (c.command === command) n++;
    return n;
  }

  // ---- protocol ----

  private newId(): string {
    return `*${(this.nextId++).toString(16).toUpperCase()}`;
  }

  private table(menu: string): Map<string, Item> {
    let table = this.tables.get(menu);
    if (!table) {
      table = new Map();
      this.tables.set(menu, table);
    }
    return table;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const reader = new SentenceReader();
    let loggedIn = false;
    socket.on("error", () => {});
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("data", (chunk) => {
      const out: Buffer[] = [];
      for (const words of reader.push(chunk)) {
        if (socket.destroyed) return;
        const [command = "", ...rest] = words;
        const attributes: Record<string, string> = {};
        const queries: string[] = [];
        let tag: string | undefined;
        for (const word of rest) {
          if (word.startsWith(".tag=")) tag = word.slice(5);
          else if (word.startsWith("?")) queries.push(word.slice(1));
          else if (word.startsWith("=")) {
            const eq = word.indexOf("=", 1);
            if (eq === -1) attributes[word.slice(1)] = "";
            else attributes[word.slice(1, eq)] = word.slice(eq + 1);
          } else if (word.startsWith(".")) {
            const eq = word.indexOf("=");
            attributes[word.slice(0, eq === -1 ? undefined : eq)] = eq === -1 ? "" : word.slice(eq + 1);
          }
        }
        const received: ReceivedCommand = { command, attributes, queries, at: Date.now() };
        if (command === "/login") {
          const ok =
            !this.faults.rejectLogin &&
            attributes.name === this.username &&
            (attributes.password ?? "") === this.password;
          if (ok) {
            loggedIn = true;
            this.loginCount++;
            out.push(this.sentence(["!done"], tag));
          } else {
            out.push(this.sentence(["!trap", "=message=invalid user name or password (6)"], tag));
            out.push(this.sentence(["!done"], tag));
          }
          continue;
        }
        if (!loggedIn) {
          out.push(this.sentence(["!fatal", "=message=not logged in"]));
          this.flush(socket, out, true);
          return;
        }
        this.received.push(received);
        if (this.faults.dropWhen?.(received)) {
          this.flush(socket, out);
          socket.destroy();
          this.sockets.delete(socket);
          return;
        }
        if (command === "/quit") {
          out.push(this.sentence(["!fatal", "=message=session terminated on request"]));
          this.flush(socket, out, true);
          return;
        }
        const replies = this.execute(command, attributes, queries);
        for (const reply of replies) out.push(this.sentence(reply, tag));
      }
      this.flush(socket, out);
    });
  }

  /** Sends the replies (after the configured latency); `end` closes the connection once they are out. */
  private flush(socket: net.Socket, out: Buffer[], end = false): void {
    const data = Buffer.concat(out);
    out.length = 0;
    const send = () => {
      if (socket.destroyed) return;
      if (data.length > 0) socket.write(data);
      if (end) socket.end();
    };
    if (data.length === 0 && !end) return;
    const delay = this.latencyMs + this.faults.delayMs;
    if (delay > 0) setTimeout(send, delay);
    else send();
  }

  private sentence(words: string[], tag?: string): Buffer {
    return encodeSentence(tag === undefined ? words : [...words, `.tag=${tag}`]);
  }

  private execute(command: string, attributes: Record<string, string>, queries: string[]): string[][] {
    const cut = command.lastIndexOf("/");
    const menu = command.slice(0, cut);
    const verb = command.slice(cut + 1);
    const trap = (message: string) => [["!trap", `=message=${message}`], ["!done"]];
    if (command === "/system/identity/print") return [["!re", `=name=${this.identity}`], ["!done"]];
    if (command === "/system/identity/set") {
      if (attributes.name) this.identity = attributes.name;
      return [["!done"]];
    }
    if (command === "/system/resource/print") {
      return [
        [
          "!re",
          "=uptime=1w2d3h",
          `=version=${this.version} (stable)`,
          "=cpu-load=3",
          "=free-memory=214958080",
          "=total-memory=268435456",
          "=architecture-name=x86_64",
          "=board-name=CHR",
          "=platform=MikroTik",
        ],
        ["!done"],
      ];
    }
    if (command === "/cancel") return [["!done"]];
    const spec = menuSpecs[menu];
    if (!spec) return trap("no such command prefix");
    const table = this.table(menu);
    switch (verb) {
      case "print":
      case "getall": {
        const proplist = attributes[".proplist"]?.split(",").filter(Boolean);
        const rows: string[][] = [];
        for (const item of table.values()) {
          if (!matches(item, queries)) continue;
          const words = ["!re"];
          for (const [key, value] of Object.entries(item)) {
            if (proplist && !proplist.includes(key)) continue;
            words.push(`=${key}=${value}`);
          }
          rows.push(words);
        }
        if (rows.length === 0 && this.sendsEmpty) return [["!empty"], ["!done"]];
        return [...rows, ["!done"]];
      }
      case "add": {
        const values = this.normalize(spec, attributes);
        if (typeof values === "string") return trap(values);
        if (spec.unique) {
          const key = values[spec.unique];
          if (!key) return trap(`failure: ${spec.unique} not specified`);
          if (this.lookup(menu, key, spec.unique)) return trap(spec.duplicate ?? "failure");
        }
        const id = this.newId();
        const item = { ".id": id, ...spec.defaults, ...values };
        table.set(id, item);
        this.indexItem(menu, item);
        return [["!done", `=ret=${id}`]];
      }
      case "set":
      case "enable":
      case "disable": {
        const items = this.resolve(menu, table, spec, attributes);
        if (typeof items === "string") return trap(items);
        const rest = { ...attributes };
        delete rest[".id"];
        delete rest.numbers;
        if (verb !== "set") rest.disabled = verb === "disable" ? "true" : "false";
        const values = this.normalize(spec, rest);
        if (typeof values === "string") return trap(values);
        if (spec.unique && values[spec.unique] !== undefined) {
          const other = this.lookup(menu, values[spec.unique]!, spec.unique);
          if (other && !items.includes(other)) return trap(spec.duplicate ?? "failure");
        }
        for (const item of items) {
          this.unindexItem(menu, item);
          Object.assign(item, values);
          this.indexItem(menu, item);
        }
        return [["!done"]];
      }
      case "remove": {
        const items = this.resolve(menu, table, spec, attributes);
        if (typeof items === "string") return trap(items);
        for (const item of items) {
          this.unindexItem(menu, item);
          table.delete(item[".id"]!);
        }
        return [["!done"]];
      }
      default:
        return trap("no such command");
    }
  }

  /** Items named by `.id` or `numbers` (ids or names, comma-separated), or RouterOS's error text. */
  private resolve(
    menu: string,
    table: Map<string, Item>,
    spec: MenuSpec,
    attributes: Record<string, string>,
  ): Item[] | string {
    const list = attributes[".id"] ?? attributes.numbers;
    if (list === undefined || list === "") return "no such item";
    const items: Item[] = [];
    for (const ref of list.split(",")) {
      let item = table.get(ref);
      if (!item && spec.unique) item = this.lookup(menu, ref, spec.unique);
      if (!item) return "no such item";
      items.push(item);
    }
    return items;
  }

  private normalize(spec: MenuSpec, attributes: Record<string, string>): Item | string {
    const values: Item = {};
    for (const [key, raw] of Object.entries(attributes)) {
      if (key.startsWith(".")) continue;
      let value = raw;
      if (key === "disabled") {
        if (["yes", "true"].includes(raw)) value = "true";
        else if (["no", "false"].includes(raw)) value = "false";
        else return `value of disabled must be yes or no`;
      }
      if (spec.durations?.includes(key)) {
        const seconds = parseDuration(raw);
        if (seconds === null) return `value of ${key} must be time interval`;
        value = formatDuration(seconds);
      }
      const ref = spec.refs?.[key];
      if (ref && this.lookup(ref, value) === undefined) return `input does not match any value of ${key}`;
      values[key] = value;
    }
    return values;
  }
}

/** RouterOS print queries: `?a=b`, `?a` (has), `?-a` (has not), `?<a=n`, `?>a=n`, and `?#` stack operators. */
function matches(item: Item, queries: string[]): boolean {
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
