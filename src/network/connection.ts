import { RouterOSAPI } from "node-routeros";
import { type BreakerOptions, CircuitBreaker, defaultBreakerOptions } from "./circuit-breaker.ts";
import { guardHandshake } from "./tls-pin.ts";

/** One row of a RouterOS reply: attribute → value, `.id` included. */
export type RouterRow = Record<string, string>;

/** What the provisioning code needs from a router: run one API command, get its rows. */
export interface RouterApi {
  run(command: string, params?: string[], options?: RunOptions): Promise<RouterRow[]>;
}

export interface RunOptions {
  /**
   * Called when the command is about to be written, after any wait for a free slot on the
   * connection or for the connection itself: throwing cancels the command unsent.
   */
  beforeSend?: () => void;
}

export interface RouterEndpoint {
  host: string;
  port: number;
  tls: boolean;
  username: string;
  password: string;
  /** The router's name in Tandao, for the errors an admin reads. */
  name?: string;
  /** Where its API-SSL certificate is pinned. A TLS endpoint without pins is always refused. */
  pins?: CertificatePins;
  /**
   * The endpoint as stored now, read at each connect: an admin's change of address or login (made
   * through another instance, say) counts from the next connection on. Null: the router is gone.
   */
  reload?(): Promise<RouterEndpoint | null>;
}

/** A router's pinned API-SSL certificate (see tls-pin.ts), kept with the router (routers.ts). */
export interface CertificatePins {
  /** The SHA-256 fingerprint the router must present; null until an admin confirms one. Read at each connect. */
  pinned(): Promise<string | null>;
  /** A certificate was refused: keep its fingerprint for an admin to confirm. */
  refused(fingerprint: string): Promise<void>;
}

/** The router answered, but refused the command (`!trap`): the message is RouterOS's own. */
export class RouterTrapError extends Error {
  override readonly name = "RouterTrapError";
}

/** The router could not be reached, the connection dropped, or its circuit is open. */
export class RouterUnavailableError extends Error {
  override readonly name = "RouterUnavailableError";
}

/**
 * A command (or a connection attempt, reported as unreachable by `open`) the router did not finish
 * in time. Not an unreachable router: one that answers but never finishes a command must use up
 * the row's attempts and end in an alert (outbox-outcomes.ts), not be retried for ever.
 */
export class RouterTimeoutError extends Error {
  override readonly name = "RouterTimeoutError";
}

/**
 * The router presented an API-SSL certificate other than the pinned one (or none is pinned yet):
 * nothing was sent to it. Like an unreachable router, its work waits, here for an admin.
 */
export class RouterCertificateError extends RouterUnavailableError {}

export interface ConnectionOptions {
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  /** Commands in flight at once on the connection (they are told apart by `.tag`). */
  maxInFlight: number;
  /** Idle connections send a harmless command this often so that neither side drops them. */
  keepaliveMs: number;
  breaker: BreakerOptions;
}

export const defaultConnectionOptions: ConnectionOptions = {
  commandTimeoutMs: 10_000,
  connectTimeoutMs: 5_000,
  maxInFlight: 256,
  keepaliveMs: 30_000,
  breaker: defaultBreakerOptions,
};

export interface ConnectionEvents {
  /** The router answered something (health: last contact). */
  onContact?(): void;
  /** The connection failed or was lost (health: last error). */
  onFailure?(error: Error): void;
  /** The router is reachable again after the connection failed or was lost. */
  onRecovered?(): void;
}

/**
 * One long-lived, logged-in API connection to one router, shared by every caller. It reconnects on
 * demand after a loss; repeated failures open a circuit breaker so callers fail fast.
 */
export class RouterConnection implements RouterApi {
  readonly breaker: CircuitBreaker;
  private api: RouterOSAPI | null = null;
  private connecting: Promise<RouterOSAPI> | null = null;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private lastUse = 0;
  private closed = false;
  private readonly options: ConnectionOptions;

  constructor(
    private endpoint: RouterEndpoint,
    options: Partial<ConnectionOptions> = {},
    private readonly events: ConnectionEvents = {},
  ) {
    this.options = { ...defaultConnectionOptions, ...options };
    this.breaker = new CircuitBreaker(this.options.breaker);
  }

  get connected(): boolean {
    return this.api?.connected === true;
  }

  async run(command: string, params: string[] = [], options: RunOptions = {}): Promise<RouterRow[]> {
    this.assertUsable();
    await this.acquire();
    try {
      this.assertUsable();
      const api = await this.connect();
      options.beforeSend?.();
      return await this.send(api, command, params);
    } finally {
      this.release();
    }
  }

  /**
   * One harmless command, sent even while the circuit is open: the circuit keeps callers from
   * waiting on a dead router, and this is how its return is noticed. Success closes the circuit.
   */
  async probe(): Promise<void> {
    if (this.closed) throw new RouterUnavailableError("connection closed");
    await this.acquire();
    try {
      const api = await this.connect();
      await this.send(api, "/system/identity/print", []);
    } finally {
      this.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
    const api = this.api;
    this.api = null;
    if (api) await closeOrAbandon(api);
    for (const wake of this.waiters.splice(0)) wake();
  }

  private assertUsable(): void {
    if (this.closed) throw new RouterUnavailableError("connection closed");
    if (!this.breaker.allowsRequest()) {
      throw new RouterUnavailableError(
        `router ${this.endpoint.host}:${this.endpoint.port} unreachable (next try in ${Math.ceil(this.breaker.retryInMs / 1000)} s)`,
      );
    }
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.options.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.inFlight--;
  }

  private connect(): Promise<RouterOSAPI> {
    if (this.api?.connected) return Promise.resolve(this.api);
    if (!this.connecting) {
      this.connecting = this.open().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async open(): Promise<RouterOSAPI> {
    await this.reloadEndpoint();
    const { host, port, tls, username, password } = this.endpoint;
    const idleSeconds = Math.ceil((this.options.keepaliveMs * 2 + this.options.commandTimeoutMs) / 1000);
    let pinned: string | null = null;
    if (tls) {
      try {
        pinned = (await this.endpoint.pins?.pinned()) ?? null;
      } catch (cause) {
        throw this.failed(
          new RouterUnavailableError(`cannot read the pinned certificate: ${describe(cause)}`),
        );
      }
    }
    const api = new RouterOSAPI({
      host,
      port,
      user: username,
      password,
      // Routers serve API-SSL with self-signed certificates, which no CA can vouch for: the
      // certificate is checked against the router's pinned fingerprint instead (guardHandshake).
      tls: tls ? { rejectUnauthorized: false } : undefined,
      timeout: idleSeconds,
    });
    api.on("error", (error: Error) =>
      this.lost(api, new RouterUnavailableError(`connection lost: ${describe(error)}`)),
    );
    api.on("close", () => this.lost(api, new RouterUnavailableError("connection closed by the router")));
    const check: { refused?: { fingerprint: string | null; error: RouterCertificateError } } = {};
    let timer: NodeJS.Timeout | undefined;
    try {
      const connecting = api.connect();
      // Settled by the race below, or left behind when the guard throws.
      connecting.catch(() => undefined);
      if (tls) {
        guardHandshake(api, (fingerprint) => {
          if (fingerprint !== null && fingerprint === pinned) return true;
          check.refused = { fingerprint, error: this.certificateError(pinned, fingerprint) };
          return false;
        });
      }
      await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new RouterTimeoutError(
                  `no answer from ${host}:${port} in ${this.options.connectTimeoutMs} ms`,
                ),
              ),
            this.options.connectTimeoutMs,
          );
        }),
      ]);
    } catch (cause) {
      destroySocket(api);
      const refused = check.refused;
      if (refused?.fingerprint) {
        await this.endpoint.pins?.refused(refused.fingerprint).catch(() => undefined);
      }
      throw this.failed(
        refused?.error ?? new RouterUnavailableError(`cannot connect to ${host}:${port}: ${describe(cause)}`),
      );
    } finally {
      clearTimeout(timer);
    }
    if (this.closed) {
      destroySocket(api);
      throw new RouterUnavailableError("connection closed");
    }
    this.api = api;
    this.lastUse = Date.now();
    // Back after any loss, not only once the circuit had opened: rows that failed on the lost
    // connection wait at the longest back-off (outbox-outcomes.ts), and a single dropped connection
    // neither opens the circuit nor leaves the router for the prober to notice.
    const lostBefore = this.breaker.consecutiveFailures > 0;
    this.breaker.success();
    if (lostBefore) this.events.onRecovered?.();
    this.events.onContact?.();
    this.startKeepalive();
    return api;
  }

  private async reloadEndpoint(): Promise<void> {
    if (!this.endpoint.reload) return;
    let stored: RouterEndpoint | null;
    try {
      stored = await this.endpoint.reload();
    } catch {
      // The database is unreachable: the endpoint known last is still the best guess.
      return;
    }
    if (!stored) throw this.failed(new RouterUnavailableError("the router was removed"));
    this.endpoint = stored;
  }

  /** A failed connection attempt: counted by the breaker and reported, then thrown by the caller. */
  private failed(error: RouterUnavailableError): RouterUnavailableError {
    this.breaker.failure();
    this.events.onFailure?.(error);
    return error;
  }

  /** Names the router and the certificates, never a credential. */
  private certificateError(pinned: string | null, seen: string | null): RouterCertificateError {
    const { name, host, port } = this.endpoint;
    const router = `${name ? `router "${name}"` : "router"} (${host}:${port})`;
    if (seen === null)
      return new RouterCertificateError(`${router} presented no API-SSL certificate; not connecting`);
    if (pinned === null) {
      return new RouterCertificateError(
        `${router} presented an API-SSL certificate no admin has confirmed yet (SHA-256 ${seen}); ` +
          "not connecting until it is confirmed",
      );
    }
    return new RouterCertificateError(
      `${router}: its API-SSL certificate changed (now SHA-256 ${seen}, pinned ${pinned}); ` +
        "not connecting until an admin confirms the new one",
    );
  }

  private async send(api: RouterOSAPI, command: string, params: string[]): Promise<RouterRow[]> {
    this.lastUse = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const rows = await Promise.race([
        api.write(command, params),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new RouterTimeoutError(`${command} timed out after ${this.options.commandTimeoutMs} ms`),
              ),
            this.options.commandTimeoutMs,
          );
        }),
      ]);
      this.events.onContact?.();
      return rows as RouterRow[];
    } catch (cause) {
      if (cause instanceof RouterTimeoutError) {
        // A router that stops answering gets a fresh connection rather than a growing backlog.
        this.lost(api, cause);
        destroySocket(api);
        throw cause;
      }
      if (this.api !== api || !api.connected) {
        const error = new RouterUnavailableError(`connection lost during ${command}: ${describe(cause)}`);
        this.lost(api, error);
        throw error;
      }
      this.events.onContact?.();
      throw new RouterTrapError(describe(cause));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counts a lost connection once, however many commands were waiting on it. */
  private lost(api: RouterOSAPI, error: Error): void {
    if (this.api !== api) return;
    this.api = null;
    if (this.closed) return;
    this.breaker.failure();
    this.events.onFailure?.(error);
  }

  private startKeepalive(): void {
    if (this.keepaliveTimer) return;
    this.keepaliveTimer = setInterval(() => {
      if (!this.api?.connected || this.inFlight > 0) return;
      if (Date.now() - this.lastUse < this.options.keepaliveMs) return;
      this.run("/system/identity/print").catch(() => undefined);
    }, this.options.keepaliveMs);
    this.keepaliveTimer.unref();
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

/** How long a closing connection waits for the router to end it: a router that answers does so at once. */
const closeWaitMs = 1_000;

/**
 * node-routeros's `close()` settles only when the router ends the TCP connection. A router that
 * vanished (link down, address moved) never does, and the socket's idle timeout then removes the
 * listener `close()` waits on: its promise would never settle, and an admin's router edit or a
 * shutdown would hang. So the wait is bounded, then the socket is destroyed.
 */
async function closeOrAbandon(api: RouterOSAPI): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    api.close().then(
      () => true,
      () => false,
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), closeWaitMs);
    }),
  ]);
  clearTimeout(timer);
  if (!closed) destroySocket(api);
}

/** node-routeros has no public way to abandon a connection attempt; its connector owns the socket. */
function destroySocket(api: RouterOSAPI): void {
  const connector = (api as unknown as { connector?: { destroy(): void } | null }).connector;
  try {
    connector?.destroy();
  } catch {
    // already gone
  }
}
