import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { RowDelivery } from "./deliver-row.ts";
import type { OwedDrops } from "./driver.ts";
import { type ClaimedRow, claimDueRows, owedDropsOf } from "./outbox-claim.ts";
import { type Failure, OutboxOutcomes } from "./outbox-outcomes.ts";
import type { RouterPool } from "./pool.ts";
import { makeRouterRowsDue, RouterProber } from "./prober.ts";

/**
 * Delivers `provisioning_outbox`. A row names a target (a subscription on a router, a voucher, a
 * plan's profile); delivering it converges that target to the state the database holds now. So:
 * - rows for the same target are collapsed: the newest is delivered, the older ones `superseded`;
 * - a target is delivered by one worker at a time (a lease in `claimed_until`), in row order;
 * - the claim is one short transaction; routers are only called after it commits.
 */

/**
 * Time kept between the last moment a command of a row may be written and the end of its lease
 * (lease-guard.ts); it must exceed a command's timeout (10 s by default, at most 30 s: config.ts).
 */
const LEASE_SAFETY_MS = 45_000;

export interface WorkerOptions {
  batchSize: number;
  pollMs: number;
  /** How long a claimed row stays reserved for the worker delivering it. */
  leaseMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Targets delivered at once per router (commands are pipelined on its one connection). */
  perRouterConcurrency: number;
  /** Rows being delivered at most, across routers, before the worker stops claiming. */
  maxRowsInFlight: number;
  /** Who gets the `admin_alert` SMS when a row is given up. */
  adminPhone?: string;
  /** How often a router that cannot be reached is asked whether it is back (ROUTER_PROBE_SECONDS). */
  probeMs: number;
}

export const defaultWorkerOptions: WorkerOptions = {
  batchSize: 500,
  pollMs: 1_000,
  leaseMs: 120_000,
  maxAttempts: 8,
  backoffBaseMs: 2_000,
  backoffMaxMs: 300_000,
  perRouterConcurrency: 64,
  maxRowsInFlight: 5_000,
  probeMs: 15_000,
};

export interface WorkerDeps {
  db: Db;
  clock: Clock;
  pool: RouterPool;
  logger?: Logger;
}

export class ProvisioningWorker {
  private readonly options: WorkerOptions;
  private running = false;
  private loopDone: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private kicked = false;
  private readonly inFlight = new Set<Promise<void>>();
  private rowsInFlight = 0;
  private readonly prober: RouterProber;
  private readonly delivery: RowDelivery;
  private readonly outcomes: OutboxOutcomes;

  constructor(
    private readonly deps: WorkerDeps,
    options: Partial<WorkerOptions> = {},
  ) {
    this.options = { ...defaultWorkerOptions, ...options };
    this.delivery = new RowDelivery(deps);
    this.outcomes = new OutboxOutcomes(deps, this.options);
    this.prober = new RouterProber(deps, this.options.probeMs, () => this.kick());
    deps.pool.onRecovered((routerId) => void this.routerRecovered(routerId));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
    this.prober.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.prober.stop();
    await this.loopDone;
    await Promise.allSettled([...this.inFlight]);
  }

  /** Deliver now (after a payment, a suspension…) instead of at the next poll. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /** Claims and delivers until nothing is due; for tests and one-off runs. Returns rows delivered. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const claimed = await this.claimAndDispatch();
      await Promise.allSettled([...this.inFlight]);
      total += claimed;
      if (claimed === 0) return total;
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.kicked = false;
      let claimed = 0;
      try {
        if (this.rowsInFlight < this.options.maxRowsInFlight) claimed = await this.claimAndDispatch();
      } catch (error) {
        this.deps.logger?.error({ err: error }, "provisioning claim failed");
      }
      if (!this.running) break;
      if (
        this.kicked ||
        (claimed >= this.options.batchSize && this.rowsInFlight < this.options.maxRowsInFlight)
      ) {
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.pollMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private async claimAndDispatch(): Promise<number> {
    const rows = await this.claim();
    if (rows.length === 0) return 0;
    const byRouter = new Map<string, ClaimedRow[]>();
    for (const row of rows) {
      const key = String(row.routerId ?? "*");
      const list = byRouter.get(key) ?? [];
      list.push(row);
      byRouter.set(key, list);
    }
    this.rowsInFlight += rows.length;
    for (const list of byRouter.values()) {
      const delivery = this.deliverAll(list).finally(() => {
        this.inFlight.delete(delivery);
        this.rowsInFlight -= list.length;
        if (this.running && this.rowsInFlight < this.options.maxRowsInFlight) this.wake?.();
      });
      this.inFlight.add(delivery);
    }
    return rows.length;
  }

  /** One short transaction: pick due rows, collapse each target to its newest row, lease it. */
  private claim(): Promise<ClaimedRow[]> {
    return claimDueRows(this.deps, this.options, this.deps.pool.unavailableRouterIds());
  }

  private async deliverAll(rows: ClaimedRow[]): Promise<void> {
    const failures: Failure[] = [];
    const done: ClaimedRow[] = [];
    const released: ClaimedRow[] = [];
    // Once a row's lease ends, another worker may claim a newer row for the same target, and a late
    // command of this one would overwrite the router with an older state: each command is only
    // written while the lease surely outlives it (lease-guard.ts). A row not started by then goes
    // back to the queue; one cut short waits out a back-off first (`failed`).
    const safetyMs = Math.min(LEASE_SAFETY_MS, this.options.leaseMs / 2);
    let next = 0;
    const work = async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        const startBy = row.leaseEndsAt - safetyMs;
        if (this.deps.clock.now().getTime() > startBy) {
          released.push(row);
          continue;
        }
        const owed: OwedDrops = { names: new Set(owedDropsOf(row.payload)) };
        try {
          await this.delivery.deliver(row, startBy, owed);
          done.push(row);
        } catch (error) {
          failures.push({ row, error, owedDrops: [...owed.names] });
        }
      }
    };
    const lanes = Math.min(this.options.perRouterConcurrency, rows.length);
    await Promise.all(Array.from({ length: lanes }, work));
    // Outcomes are written together: a router that is down fails hundreds of rows at once.
    try {
      await this.outcomes.succeeded(done);
      await this.outcomes.failed(failures);
      await this.outcomes.release(released);
    } catch (error) {
      this.deps.logger?.error({ err: error }, "recording provisioning outcomes failed");
    }
  }

  /** A router answered again after a lost connection, to the worker's own traffic (the prober notices the rest). */
  private async routerRecovered(routerId: number): Promise<void> {
    try {
      await makeRouterRowsDue(this.deps.db, this.deps.clock.now(), routerId);
      this.kick();
    } catch (error) {
      this.deps.logger?.error({ err: error, routerId }, "could not reschedule rows of a recovered router");
    }
  }
}
