import net from "node:net";
import tls from "node:tls";
import { type CommandRouter, execute } from "./commands.ts";
import type { Item } from "./menus.ts";
import { encodeReply, SentenceReader } from "./protocol.ts";
import { Store } from "./store.ts";

/**
 * A MikroTik router as seen through its API (8728, or API-SSL with `tls`): the real framing, login,
 * tags, the reply sentences of RouterOS 6 and 7.18+, and the menus Tandao uses, with RouterOS's own
 * checks of parameters and values (see commands.ts, menus.ts). Tests and sandbox mode point the real
 * node-routeros client at it. State is plain data that tests may read and edit (as an admin using
 * Winbox would), and faults can be injected.
 */

export type { Item } from "./menus.ts";

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
  /**
   * `7.18.2` (default). A 6.x version keeps 6.x behaviour where it differs: no `!empty` reply (nor
   * before 7.18), and "unknown parameter" without the parameter's name.
   */
  version?: string;
  host?: string;
  port?: number;
  /** Serve API-SSL with this key and certificate (PEM) instead of the plain API. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface Faults {
  /** Every reply is sent this much later. */
  delayMs: number;
  /** The replies to a command are sent this much later again (a slow command is overtaken by later ones). */
  delayFor: ((command: ReceivedCommand) => number) | null;
  /**
   * Replies to commands that arrive within this many milliseconds of the first are held, then sent
   * together with their sentences interleaved, the newest command's first: what a router does with
   * concurrent commands. 0: each command's replies go out as soon as they are ready.
   */
  interleaveMs: number;
  /**
   * The replies to a command are held until the promise returned for it settles (a router stalled
   * on one command for as long as a test needs; the command itself has already been applied). Not
   * with `interleaveMs`.
   */
  holdUntil: ((command: ReceivedCommand) => Promise<void> | null) | null;
  /** The socket is destroyed, without an answer, when a received command matches. */
  dropWhen: ((command: ReceivedCommand) => boolean) | null;
  /** Login is refused with RouterOS's own message. */
  rejectLogin: boolean;
}

interface Reply {
  tag?: string;
  sentences: string[][];
  delayMs: number;
  heldUntil?: Promise<void> | null;
}

interface Connection {
  socket: net.Socket;
  /** Replies held for interleaving, and the timer that sends them. */
  held: Reply[];
  timer: NodeJS.Timeout | null;
}

export class RouterOsEmulator implements CommandRouter {
  readonly faults: Faults = {
    delayMs: 0,
    delayFor: null,
    holdUntil: null,
    interleaveMs: 0,
    dropWhen: null,
    rejectLogin: false,
  };
  /** Models the network between Tandao and the router: every reply (login included) arrives this much later. */
  latencyMs = 0;
  /** Every command received after login, in order (for counting what the router was asked to do). */
  readonly received: ReceivedCommand[] = [];
  /** Batches of replies sent with the sentences of several commands interleaved. */
  interleavedBatches = 0;
  identity: string;
  version: string;
  /** API-SSL key and certificate; a change applies from the next `start()`. */
  tls: EmulatorOptions["tls"];
  readonly store = new Store();
  /** Successful logins, and every `/login` received (a client that sent its password, right or wrong). */
  loginCount = 0;
  loginAttempts = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private boundPort = 0;
  private readonly username: string;
  private readonly password: string;
  private readonly host: string;

  constructor(options: EmulatorOptions = {}) {
    this.username = options.username ?? "admin";
    this.password = options.password ?? "";
    this.identity = options.identity ?? "MikroTik";
    this.version = options.version ?? "7.18.2";
    this.host = options.host ?? "127.0.0.1";
    this.boundPort = options.port ?? 0;
    this.tls = options.tls;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Starts (or restarts, on the same port) accepting connections. */
  async start(): Promise<this> {
    if (this.server) return this;
    const server = this.tls
      ? tls.createServer({ key: this.tls.key, cert: this.tls.cert }, (socket) => this.accept(socket))
      : net.createServer((socket) => this.accept(socket));
    // Tracked from the first byte (a TLS handshake included), so that stop() never waits on one.
    server.on("connection", (raw: net.Socket) => {
      this.sockets.add(raw);
      raw.on("error", () => {});
      raw.on("close", () => this.sockets.delete(raw));
    });
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

  private get versionNumbers(): [number, number] {
    const [major = 0, minor = 0] = this.version.split(".").map((n) => Number.parseInt(n, 10));
    return [major, minor];
  }

  /** Supports `!empty` (RouterOS 7.18 and later). */
  get sendsEmpty(): boolean {
    const [major, minor] = this.versionNumbers;
    return major > 7 || (major === 7 && minor >= 18);
  }

  get namesUnknownParameters(): boolean {
    return this.versionNumbers[0] >= 7;
  }

  // ---- state, for tests and sandbox ----

  items(menu: string): Item[] {
    return [...this.store.table(menu).values()].map((item) => ({ ...item }));
  }

  find(menu: string, name: string, key = "name"): Item | undefined {
    const found = this.store.lookup(menu, name, key);
    return found ? { ...found } : undefined;
  }

  /** Adds an entry directly, bypassing the API and its checks (made by hand, or a session that dialled in). */
  insert(menu: string, attributes: Item): string {
    return this.store.insert(menu, attributes)[".id"]!;
  }

  /** Edits an entry directly (an admin changing it in Winbox). */
  update(menu: string, id: string, attributes: Item): void {
    const item = this.store.table(menu).get(id);
    if (!item) throw new Error(`no ${menu} item ${id}`);
    this.store.update(menu, item, attributes);
  }

  delete(menu: string, id: string): void {
    const item = this.store.table(menu).get(id);
    if (item) this.store.remove(menu, item);
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

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on("error", () => {});
    const connection: Connection = { socket, held: [], timer: null };
    const reader = new SentenceReader();
    let loggedIn = false;
    socket.on("data", (chunk) => {
      const batch: Reply[] = [];
      const base = this.latencyMs + this.faults.delayMs;
      for (const words of reader.push(chunk)) {
        if (socket.destroyed) return;
        const { received, tag } = parse(words);
        const { command, attributes } = received;
        if (command === "/login") {
          this.loginAttempts++;
          const ok =
            !this.faults.rejectLogin &&
            attributes.name === this.username &&
            (attributes.password ?? "") === this.password;
          if (ok) {
            loggedIn = true;
            this.loginCount++;
          }
          const sentences = ok
            ? [["!done"]]
            : [["!trap", "=message=invalid user name or password (6)"], ["!done"]];
          batch.push({ tag, sentences, delayMs: base });
          continue;
        }
        if (!loggedIn) return this.finish(connection, batch, ["!fatal", "=message=not logged in"]);
        this.received.push(received);
        if (this.faults.dropWhen?.(received)) {
          this.dispatch(connection, batch);
          socket.destroy();
          return;
        }
        if (command === "/quit") {
          return this.finish(connection, batch, ["!fatal", "=message=session terminated on request"]);
        }
        const sentences = execute(this, command, attributes, received.queries);
        batch.push({
          tag,
          sentences,
          delayMs: base + (this.faults.delayFor?.(received) ?? 0),
          heldUntil: this.faults.holdUntil?.(received),
        });
      }
      this.dispatch(connection, batch);
    });
  }

  /** Sends the replies (held first when interleaving), each after its delay. */
  private dispatch(connection: Connection, replies: Reply[]): void {
    if (replies.length === 0) return;
    if (this.faults.interleaveMs > 0) {
      connection.held.push(...replies);
      connection.timer ??= setTimeout(() => this.release(connection), this.faults.interleaveMs);
      return;
    }
    for (const reply of replies) {
      if (reply.heldUntil) {
        const send = () => this.send(connection.socket, [reply], reply.delayMs);
        reply.heldUntil.then(send, send);
      } else this.send(connection.socket, [reply], reply.delayMs);
    }
  }

  /** Sends the held replies: those due at the same moment interleaved, sentence by sentence. */
  private release(connection: Connection): void {
    if (connection.timer) clearTimeout(connection.timer);
    connection.timer = null;
    const held = connection.held.splice(0);
    const byDelay = new Map<number, Reply[]>();
    for (const reply of held) byDelay.set(reply.delayMs, [...(byDelay.get(reply.delayMs) ?? []), reply]);
    for (const [delayMs, replies] of byDelay) {
      if (replies.length > 1) this.interleavedBatches++;
      this.send(connection.socket, replies.reverse(), delayMs, true);
    }
  }

  /** The last answer on a connection (`!fatal`): everything before it goes out first, then it closes. */
  private finish(connection: Connection, replies: Reply[], fatal: string[]): void {
    this.dispatch(connection, replies);
    if (connection.held.length > 0) this.release(connection);
    this.send(
      connection.socket,
      [{ sentences: [fatal], delayMs: 0 }],
      this.latencyMs + this.faults.delayMs,
      false,
      true,
    );
  }

  private send(socket: net.Socket, replies: Reply[], delayMs: number, interleave = false, end = false): void {
    const parts: Buffer[] = [];
    if (interleave) {
      const longest = Math.max(...replies.map((r) => r.sentences.length));
      for (let i = 0; i < longest; i++) {
        for (const reply of replies) {
          const sentence = reply.sentences[i];
          if (sentence) parts.push(encodeReply(sentence, reply.tag));
        }
      }
    } else {
      for (const reply of replies)
        for (const sentence of reply.sentences) parts.push(encodeReply(sentence, reply.tag));
    }
    const data = Buffer.concat(parts);
    const write = () => {
      if (socket.destroyed) return;
      if (data.length > 0) socket.write(data);
      if (end) socket.end();
    };
    if (delayMs > 0) setTimeout(write, delayMs);
    else write();
  }
}

/** One command sentence: its command word, attributes (`=a=b` and API attributes), queries and tag. */
function parse(words: string[]): { received: ReceivedCommand; tag?: string } {
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
  return { received: { command, attributes, queries, at: Date.now() }, tag };
}
