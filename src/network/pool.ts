import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import type { SecretBox } from "../lib/secret-box.ts";
import type { Logger } from "../logger.ts";
import { type ConnectionOptions, RouterConnection, RouterUnavailableError } from "./connection.ts";
import { recordContact, recordRouterError, routerEndpoint } from "./routers.ts";

export interface RouterPoolDeps {
  db: Db;
  box: SecretBox;
  clock: Clock;
  logger?: Logger;
}

/**
 * One connection per router, opened on first use and kept. Also writes router health
 * (last contact at most every few seconds, each distinct error) without ever blocking a command.
 */
export class RouterPool {
  private readonly connections = new Map<number, RouterConnection>();
  private readonly opening = new Map<number, Promise<RouterConnection>>();
  private readonly lastContactWrite = new Map<number, number>();
  private readonly pendingWrites = new Set<Promise<unknown>>();
  private readonly recoveredListeners: Array<(routerId: number) => void> = [];
  private closed = false;

  constructor(
    private readonly deps: RouterPoolDeps,
    private readonly options: Partial<ConnectionOptions> = {},
    private readonly contactWriteIntervalMs = 5_000,
  ) {}

  /** Called when a router answers again after its connection failed or was lost. */
  onRecovered(listener: (routerId: number) => void): void {
    this.recoveredListeners.push(listener);
  }

  async get(routerId: number): Promise<RouterConnection> {
    if (this.closed) throw new RouterUnavailableError("router pool closed");
    const existing = this.connections.get(routerId);
    if (existing) return existing;
    let opening = this.opening.get(routerId);
    if (!opening) {
      opening = this.create(routerId).finally(() => this.opening.delete(routerId));
      this.opening.set(routerId, opening);
    }
    return opening;
  }

  /** Throws when the router's circuit is open (it failed recently and its cool-down is not over). */
  assertAvailable(routerId: number): void {
    const connection = this.connections.get(routerId);
    if (connection && !connection.breaker.allowsRequest()) {
      throw new RouterUnavailableError(
        `router ${routerId} unreachable (next try in ${Math.ceil(connection.breaker.retryInMs / 1000)} s)`,
      );
    }
  }

  /** Router ids whose circuit is open: callers skip them instead of waiting. */
  unavailableRouterIds(): number[] {
    const ids: number[] = [];
    for (const [id, connection] of this.connections) if (!connection.breaker.allowsRequest()) ids.push(id);
    return ids;
  }

  /** Router ids whose last connection attempt failed (circuit open or not): the prober asks them again. */
  unreachableRouterIds(): number[] {
    const ids: number[] = [];
    for (const [id, connection] of this.connections)
      if (connection.breaker.consecutiveFailures > 0 && !connection.connected) ids.push(id);
    return ids;
  }

  /** Throws unless the router answers now; its open circuit, if any, does not stop the attempt. */
  async probe(routerId: number): Promise<void> {
    const connection = await this.get(routerId);
    await connection.probe();
  }

  /** Forget a router's connection (its address or password changed, or it was removed). */
  async invalidate(routerId: number): Promise<void> {
    const connection = this.connections.get(routerId);
    this.connections.delete(routerId);
    await connection?.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((c) => c.close()));
    await Promise.allSettled([...this.pendingWrites]);
  }

  private async create(routerId: number): Promise<RouterConnection> {
    const endpoint = await routerEndpoint(this.deps.db, this.deps.box, routerId);
    if (!endpoint) throw new RouterUnavailableError(`no router ${routerId}`);
    const connection = new RouterConnection(endpoint, this.options, {
      onContact: () => this.contact(routerId),
      onFailure: (error) => this.failure(routerId, error),
      onRecovered: () => {
        for (const listener of this.recoveredListeners) listener(routerId);
      },
    });
    this.connections.set(routerId, connection);
    return connection;
  }

  private contact(routerId: number): void {
    const now = this.deps.clock.now();
    const last = this.lastContactWrite.get(routerId) ?? 0;
    if (now.getTime() - last < this.contactWriteIntervalMs) return;
    this.lastContactWrite.set(routerId, now.getTime());
    this.track(recordContact(this.deps.db, routerId, now));
  }

  private failure(routerId: number, error: Error): void {
    this.lastContactWrite.delete(routerId);
    this.deps.logger?.warn({ routerId, err: error.message }, "router connection failed");
    this.track(recordRouterError(this.deps.db, routerId, this.deps.clock.now(), error.message));
  }

  private track(write: Promise<unknown>): void {
    if (this.closed) return;
    const tracked = write.catch((error) =>
      this.deps.logger?.error({ err: error }, "router health write failed"),
    );
    this.pendingWrites.add(tracked);
    void tracked.finally(() => this.pendingWrites.delete(tracked));
  }
}
