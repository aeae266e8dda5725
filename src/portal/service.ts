import { and, asc, eq, or, sql } from "drizzle-orm";
import { planNameIn } from "../billing/accounts.ts";
import { formatKes, mpesaAmountCents } from "../billing/money.ts";
import { normaliseVoucherCode, VOUCHER_ALPHABET } from "../billing/vouchers.ts";
import { type Executor, queryRows } from "../db/client.ts";
import { parseRowId } from "../db/params.ts";
import { type IntentStatus, paymentIntents, plans, routers, vouchers } from "../db/schema/index.ts";
import { formatData } from "../menu/plan-text.ts";
import { translate } from "../messaging/render.ts";
import { type PortalLanguage, pt } from "./text.ts";

/**
 * What the portal reads from the database. It writes nothing itself: a purchase is the billing
 * core's `requestPayment`, and the voucher is made by the settlement of that payment.
 */

export type PlanRow = typeof plans.$inferSelect;

export interface PortalRouter {
  id: number;
  name: string;
}

/**
 * The router a portal URL names: by its name in Tandao, or by its id. A name with a control character
 * names no router, and is not sent to the database (PostgreSQL refuses a NUL in text outright).
 */
export async function findPortalRouter(db: Executor, param: string): Promise<PortalRouter | null> {
  if (param.length === 0 || param.length > 100 || /\p{Cc}/u.test(param)) return null;
  const byId = parseRowId(param);
  const rows = await db
    .select({ id: routers.id, name: routers.name })
    .from(routers)
    .where(byId === null ? eq(routers.name, param) : or(eq(routers.name, param), eq(routers.id, byId)));
  // A router whose name is the number wins over the router with that id.
  return rows.find((r) => r.name === param) ?? rows[0] ?? null;
}

/** Hotspot plans on sale, cheapest first. A hotspot plan is sold on every router. */
export function hotspotPlans(db: Executor): Promise<PlanRow[]> {
  return db
    .select()
    .from(plans)
    .where(and(eq(plans.kind, "hotspot"), eq(plans.active, true)))
    .orderBy(asc(plans.priceCents), asc(plans.id));
}

export async function hotspotPlan(db: Executor, planId: number): Promise<PlanRow | null> {
  const [plan] = await db.select().from(plans).where(eq(plans.id, planId));
  return plan && plan.kind === "hotspot" && plan.active ? plan : null;
}

/** `10M` → `10 Mbps`. */
function speed(rate: string): string {
  const m = /^(\d+(?:\.\d+)?)([kMG]?)$/.exec(rate);
  if (!m) return rate;
  const unit = m[2] === "k" ? "kbps" : m[2] === "G" ? "Gbps" : m[2] === "M" ? "Mbps" : "bps";
  return `${m[1]} ${unit}`;
}

/**
 * A plan's RouterOS rate limit (`rx/tx` from the router's side: the client's upload, then its
 * download; bursts after a space) as a buyer reads it: the download speed, and the upload when it differs.
 */
export function speedText(rateLimit: string, language: PortalLanguage): string {
  const [first] = rateLimit.trim().split(/\s+/);
  const [up, down] = (first ?? "").split("/");
  if (!up) return rateLimit;
  if (!down || down === up) return speed(up);
  return language === "sw"
    ? `${speed(down)} kupakua, ${speed(up)} kupakia`
    : `${speed(down)} down, ${speed(up)} up`;
}

export interface PlanCard {
  id: number;
  /**
   * The package as the buyer picks it: its id and the price shown, `<id>:<cents>`. The purchase is
   * made only at that price (an admin may change it while the page is open).
   */
  choice: string;
  name: string;
  /** What the M-Pesa prompt will ask: the price rounded up to whole shillings (M-Pesa takes no cents). */
  price: string;
  speed: string;
  validity: string;
  data: string;
}

export function planCard(plan: PlanRow, language: PortalLanguage): PlanCard {
  const validity = translate(
    language,
    plan.periodCount === 1
      ? (`menu.period.${plan.periodUnit}.one` as const)
      : (`menu.period.${plan.periodUnit}.many` as const),
    { count: plan.periodCount },
  );
  return {
    id: plan.id,
    choice: `${plan.id}:${plan.priceCents}`,
    name: planNameIn(plan, language),
    price: formatKes(mpesaAmountCents(plan.priceCents)),
    speed: pt(language, "plan.speed", { speed: speedText(plan.rateLimit, language) }),
    validity: pt(language, "plan.validity", { validity }),
    data:
      plan.dataCapBytes === null
        ? pt(language, "plan.unlimited")
        : pt(language, "plan.data", { data: formatData(plan.dataCapBytes) }),
  };
}

export type PortalState = "pending" | "paid" | "failed" | "timed_out";

export interface PortalStatus {
  state: PortalState;
  message: string;
  amountCents: number;
  voucher?: { username: string; password: string };
  /** The voucher's hotspot user is on the router (no provisioning left to do for it). */
  ready?: boolean;
}

/** How a portal payment stands, in words for the buyer; null when there is no such portal payment. */
export async function portalPaymentStatus(
  db: Executor,
  intentId: number,
  language: PortalLanguage,
  supportPhone: string,
): Promise<PortalStatus | null> {
  const [intent] = await db
    .select({
      status: paymentIntents.status,
      outcome: paymentIntents.outcome,
      resultDesc: paymentIntents.resultDesc,
      amountCents: paymentIntents.amountCents,
      channel: paymentIntents.channel,
      purpose: paymentIntents.purpose,
      pushUncertain: paymentIntents.pushUncertain,
    })
    .from(paymentIntents)
    .where(eq(paymentIntents.id, intentId));
  if (intent?.channel !== "portal" || intent.purpose !== "voucher") return null;
  const amountCents = Number(intent.amountCents);
  const status: IntentStatus = intent.status;
  const outcome = (
    typeof intent.outcome === "string" ? JSON.parse(intent.outcome) : intent.outcome
  ) as Record<string, unknown> | null;
  const said = (state: PortalState, message: string): PortalStatus => ({ state, message, amountCents });
  if (status === "succeeded") {
    const voucherId = typeof outcome?.voucherId === "number" ? outcome.voucherId : null;
    if (voucherId === null) {
      if (typeof outcome?.followUpError === "string")
        return said("failed", pt(language, "status.undelivered", { support: supportPhone }));
      return said("pending", pt(language, "status.pending"));
    }
    const [row] = await queryRows<{ code: string; waiting: number | string }>(
      db,
      sql`select v.code, (select count(*) from provisioning_outbox o
                          where o.voucher_id = v.id and o.status = 'pending') as waiting
          from vouchers v where v.id = ${voucherId}`,
    );
    if (!row) return said("failed", pt(language, "status.undelivered", { support: supportPhone }));
    return {
      state: "paid",
      message: pt(language, "status.paid", { code: row.code }),
      amountCents,
      voucher: { username: row.code, password: row.code },
      ready: Number(row.waiting) === 0,
    };
  }
  if (status === "pending") return said("pending", pt(language, "status.pending"));
  if (status === "timed_out") return said("timed_out", pt(language, "status.timed_out"));
  // An earlier prompt of this purchase reached the phone unconfirmed and may yet be paid (its late
  // callback sells the code, sent by SMS): "nothing was paid" would be a guess, and invite a second purchase.
  if (intent.pushUncertain) return said("timed_out", pt(language, "status.uncertain"));
  if (status === "cancelled") return said("failed", pt(language, "status.cancelled"));
  const reason = intent.resultDesc?.trim();
  return said(
    "failed",
    reason && language === "en" && reason.length <= 120
      ? pt(language, "status.failed", { reason: reason.replace(/\.$/, "") })
      : pt(language, "status.failed.plain"),
  );
}

export type VoucherCheck =
  | { ok: true; username: string; password: string }
  | { ok: false; reason: "unknown" | "other_router" | "unsold" | "expired" };

/** The typed code in the spelling codes are stored in, or null when no code can be written so. */
export function printedCodeShape(input: string): string | null {
  const code = normaliseVoucherCode(input);
  if (code.length < 4 || code.length > 32 || [...code].some((c) => !VOUCHER_ALPHABET.includes(c)))
    return null;
  return code;
}

/**
 * A printed code typed into the portal: it logs in only when it is live (sold, or already used and
 * not yet expired) and meant for this router or for any. Nothing is changed: the router reports
 * the first use.
 */
export async function checkPrintedVoucher(
  db: Executor,
  routerId: number,
  input: string,
  now: Date,
): Promise<VoucherCheck> {
  const code = printedCodeShape(input);
  if (code === null) return { ok: false, reason: "unknown" };
  const [voucher] = await db
    .select({
      code: vouchers.code,
      status: vouchers.status,
      routerId: vouchers.routerId,
      expiresAt: vouchers.expiresAt,
    })
    .from(vouchers)
    .where(eq(vouchers.code, code));
  if (!voucher) return { ok: false, reason: "unknown" };
  if (voucher.routerId !== null && voucher.routerId !== routerId)
    return { ok: false, reason: "other_router" };
  if (voucher.status === "expired" || voucher.expiresAt.getTime() <= now.getTime())
    return { ok: false, reason: "expired" };
  if (voucher.status === "available") return { ok: false, reason: "unsold" };
  return { ok: true, username: voucher.code, password: voucher.code };
}
