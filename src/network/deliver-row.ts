import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import { type RouterApi, RouterTrapError } from "./connection.ts";
import {
  type DesiredProfile,
  desiredHotspotUser,
  desiredProfile,
  desiredSecret,
  loadPlan,
  loadSubscription,
  loadVoucher,
} from "./desired.ts";
import {
  ensureHotspotUser,
  ensureProfile,
  ensureSecret,
  type OwedDrops,
  removeHotspotUser,
  removeSecret,
} from "./driver.ts";
import { LeaseExpiredError, sendWhileLeased } from "./lease-guard.ts";
import { subscriptionMarker, voucherMarker } from "./markers.ts";
import type { ClaimedRow } from "./outbox-claim.ts";
import { dropProfileSessions, splitRateLimitChange } from "./plan-speed.ts";
import type { RouterPool } from "./pool.ts";

/**
 * What the provisioning worker (worker.ts) does with one claimed row on the routers: a subscriber's
 * secret, a voucher's hotspot user, a plan's profile. Profiles known to exist are remembered here,
 * across rows.
 */
export class RowDelivery {
  private readonly profileCache = new Map<string, number>();
  private readonly profilesEnsuring = new Map<string, Promise<void>>();

  constructor(private readonly deps: { db: Db; clock: Clock; pool: RouterPool }) {}

  /**
   * Converges the row's target to the state the database holds now; each command is only written
   * while the clock is at or before `startBy` (lease-guard.ts).
   */
  async deliver(row: ClaimedRow, startBy: number, owed: OwedDrops): Promise<void> {
    const { db, pool, clock } = this.deps;
    const connect = async (routerId: number) =>
      sendWhileLeased(await pool.get(routerId), clock, () => startBy);
    // A router known to be down fails the row at once, before any database read.
    if (row.routerId !== null) pool.assertAvailable(row.routerId);
    if (row.subscriptionId !== null) {
      // The claim gave a row queued before its subscription was placed the router it was on then
      // (outbox-claim.ts). Still none: it had none, and its placement queued a row for the router;
      // writing to the router it is on now would be done without that router's key.
      const routerId = row.routerId;
      if (routerId === null) return;
      const loaded = await loadSubscription(db, row.subscriptionId);
      const api = await connect(routerId);
      const want =
        loaded && loaded.subscription.routerId === routerId
          ? desiredSecret(loaded.subscription, loaded.plan)
          : null;
      if (!want || !loaded) {
        await removeSecret(api, subscriptionMarker(row.subscriptionId), loaded?.subscription.networkUsername);
        return;
      }
      // A suspension owes a session drop even when the secret has to be created again (deleted on
      // the router by hand, a backup restored): RouterOS keeps the session of a deleted secret up.
      if (row.action === "suspend" && want.disabled) owed.names.add(want.name);
      await this.withProfile(api, routerId, desiredProfile(loaded.plan), () => ensureSecret(api, want, owed));
      return;
    }
    if (row.voucherId !== null) {
      const loaded = await loadVoucher(db, row.voucherId);
      const targets = row.routerId !== null ? [row.routerId] : await this.allRouterIds();
      await this.onEachRouter(targets, async (routerId) => {
        const api = await connect(routerId);
        const forThisRouter =
          loaded && (loaded.voucher.routerId === null || loaded.voucher.routerId === routerId);
        const want = forThisRouter
          ? desiredHotspotUser(loaded.voucher, loaded.plan, this.deps.clock.now())
          : null;
        if (!want || !loaded)
          await removeHotspotUser(api, voucherMarker(row.voucherId!), loaded?.voucher.code);
        else
          await this.withProfile(api, routerId, desiredProfile(loaded.plan), () =>
            ensureHotspotUser(api, want),
          );
      });
      return;
    }
    const planId = Number(row.payload.planId);
    if (!Number.isInteger(planId)) return;
    const plan = await loadPlan(db, planId);
    if (!plan) return;
    const rateLimitChanged = row.payload.rateLimitChanged === true;
    if (rateLimitChanged && row.routerId === null) {
      await splitRateLimitChange(db, clock.now(), planId);
      return;
    }
    const targets = row.routerId !== null ? [row.routerId] : await this.allRouterIds();
    await this.onEachRouter(targets, async (routerId) => {
      const api = await connect(routerId);
      const profile = desiredProfile(plan);
      await ensureProfile(api, profile);
      this.profileCache.set(this.profileKey(routerId, profile), this.deps.clock.now().getTime());
      // Even when the profile was already updated (by a subscriber's delivery that ensured it first).
      if (rateLimitChanged) await dropProfileSessions(api, profile);
    });
  }

  /**
   * A row meant for every router (a voucher valid on all hotspots) reaches the routers that are up
   * even when one is down; the row then fails with that router's error and is delivered again
   * (the calls are idempotent) until every router has it.
   */
  private async onEachRouter(routerIds: number[], work: (routerId: number) => Promise<void>): Promise<void> {
    let firstError: unknown;
    for (const routerId of routerIds) {
      try {
        await work(routerId);
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError !== undefined) throw firstError;
  }

  private profileKey(routerId: number, p: DesiredProfile): string {
    return `${routerId}|${p.kind}|${p.name}|${p.rateLimit}`;
  }

  /**
   * RouterOS refuses a secret whose profile does not exist, so the profile is ensured first; that
   * check is remembered for a minute (the reconciliation repairs a profile deleted by hand meanwhile).
   * A missing profile is created; one found is left as it is: this delivery holds the lease of its
   * secret or user, not of the profile, and read the plan when it started, so its speed may be one
   * the admin has changed since and a profile row delivered (only rows of the profile and the
   * reconciliation, holding its lease, write a profile's speed).
   */
  private async withProfile<T>(
    api: RouterApi,
    routerId: number,
    profile: DesiredProfile,
    op: () => Promise<T>,
  ) {
    const key = this.profileKey(routerId, profile);
    const checked = this.profileCache.get(key);
    if (checked === undefined || this.deps.clock.now().getTime() - checked > 60_000) {
      // Concurrent deliveries for the same plan share one check instead of racing to add the profile.
      // Its commands go out under the lease of the row that started it: when that lease runs out
      // first, a row with time left on its own checks again instead of failing with it.
      for (;;) {
        const shared = this.profilesEnsuring.get(key);
        if (!shared) {
          await this.checkProfile(api, key, profile);
          break;
        }
        try {
          await shared;
          break;
        } catch (error) {
          if (!(error instanceof LeaseExpiredError)) throw error;
        }
      }
    }
    try {
      return await op();
    } catch (error) {
      if (!(error instanceof RouterTrapError && /does not match any value of profile/.test(error.message)))
        throw error;
      await ensureProfile(api, profile, { createOnly: true });
      this.profileCache.set(key, this.deps.clock.now().getTime());
      return op();
    }
  }

  private checkProfile(api: RouterApi, key: string, profile: DesiredProfile): Promise<void> {
    const ensuring = ensureProfile(api, profile, { createOnly: true })
      .then(() => {
        this.profileCache.set(key, this.deps.clock.now().getTime());
      })
      .finally(() => this.profilesEnsuring.delete(key));
    this.profilesEnsuring.set(key, ensuring);
    return ensuring;
  }

  private async allRouterIds(): Promise<number[]> {
    const rows = await this.deps.db.select({ id: routers.id }).from(routers);
    return rows.map((r) => r.id);
  }
}
