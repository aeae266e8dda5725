import { asc, eq, inArray, type SQL } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { formatKes } from "../../../billing/money.ts";
import {
  MAX_CODES_SOLD_AT_ONCE,
  markVouchersSold,
  normaliseVoucherCode,
  PaidVouchersNoLongerSellable,
  type PrintedVouchers,
  printedValiditySql,
  sellableNow,
  VOUCHER_ALPHABET,
  VOUCHER_LENGTH,
} from "../../../billing/vouchers.ts";
import { parseRowId } from "../../../db/params.ts";
import { plans, voucherBatches, vouchers } from "../../../db/schema/index.ts";
import { counted } from "../../../lib/plural.ts";
import { validityText } from "../../../menu/plan-text.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAmount } from "../parse.ts";
import { adminActor } from "../roles.ts";

/**
 * `/sold <code…>` and `/sold batch <id>`: a reseller sold printed vouchers, so they go live on the
 * routers. A printed code does not log in until then (a lost or stolen sheet is worth nothing), and
 * its validity starts when it is marked sold. Asked first, with what each named code is now.
 */

type SoldAction = FeatureAction & {
  feature: "sold";
  target: PrintedVouchers;
  summary: string;
  /** Cash the reseller paid for them, recorded as money received; null: none recorded here. */
  paidCents: number | null;
  /**
   * How many could be sold when asked: fewer at the press were sold or expired meanwhile. With cash
   * paid, the press then sells nothing: the cash was for all of them.
   */
  asked: number;
};

confirmable("sold", {
  command: "sold",
  describe: (a) => `mark ${(a as SoldAction).summary} sold`,
  async run(ctx, admin, a, token) {
    const action = a as SoldAction;
    let outcome: Awaited<ReturnType<typeof markVouchersSold>>;
    try {
      outcome = await markVouchersSold(
        ctx,
        adminActor(admin.telegramId),
        action.target,
        action.paidCents
          ? { amountCents: action.paidCents, providerRef: `tg-${token}`, forCodes: action.asked }
          : undefined,
      );
    } catch (error) {
      if (!(error instanceof PaidVouchersNoLongerSellable)) throw error;
      const gone = error.paidFor - error.sellable;
      const why =
        gone > 0
          ? `${gone} of the ${error.paidFor} codes the ${formatKes(action.paidCents!)} was for ${gone === 1 ? "was" : "were"} sold, used or expired since you asked`
          : "the codes that can be sold changed since you asked";
      return [
        `Nothing was sold and no cash recorded: ${why}.`,
        "Send /sold again for the codes still unsold, with what was paid for them.",
      ].join("\n");
    }
    const { sold, paymentId } = outcome;
    if (sold === 0) return "Nothing was sold: none of those codes is unsold any more.";
    const notAvailable = action.asked - sold;
    const missed =
      notAvailable > 0 ? ` ${counted(notAvailable, "code was", "codes were")} not unsold any more.` : "";
    const cash = paymentId !== null ? ` ${formatKes(action.paidCents!)} recorded as cash received.` : "";
    return `✅ ${counted(sold, "voucher")} sold: live on the routers now.${missed}${cash}`;
  },
});

const codePattern = new RegExp(`^[${VOUCHER_ALPHABET}]{${VOUCHER_LENGTH}}$`);

const whyNot: Record<string, string> = {
  sold: "already sold",
  redeemed: "already used",
  expired: "expired",
  available: "past its unsold date",
};

export function soldFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();

  /** The named vouchers as they are now, with their plans' validity as their cards print it. */
  const lookUp = (where: SQL | undefined) =>
    db
      .select({
        code: vouchers.code,
        status: vouchers.status,
        expiresAt: vouchers.expiresAt,
        plan: plans.name,
        ...printedValiditySql,
      })
      .from(vouchers)
      .innerJoin(plans, eq(plans.id, vouchers.planId))
      .leftJoin(voucherBatches, eq(voucherBatches.id, vouchers.batchId))
      .where(where)
      .orderBy(asc(vouchers.id));

  kit.command(composer, "sold", async (ctx, admin, words) => {
    const now = kit.clock.now();
    // `… paid <amount>` at the end: the cash the reseller paid for them.
    let paidCents: number | null = null;
    let args = words;
    if (words.length >= 2 && words.at(-2)!.toLowerCase() === "paid") {
      const amount = parseAmount(words.at(-1));
      if (!amount.ok) return void (await reply(ctx, usage("sold", amount.error)));
      paidCents = amount.value;
      args = words.slice(0, -2);
    }
    let target: PrintedVouchers;
    let found: Awaited<ReturnType<typeof lookUp>>;
    let unknown: string[] = [];
    if (args[0]?.toLowerCase() === "batch") {
      const id = args[1];
      if (args.length !== 2 || !id || !/^\d+$/.test(id))
        return void (await reply(ctx, usage("sold", "Say the batch's number, as its PDF names it.")));
      const batchId = parseRowId(id);
      if (batchId === null) return void (await reply(ctx, `No batch ${id}.`));
      target = { batchId };
      found = await lookUp(eq(vouchers.batchId, batchId));
      if (found.length === 0) return void (await reply(ctx, `No batch ${id}.`));
    } else {
      const codes = [...new Set(args.map(normaliseVoucherCode))];
      if (codes.length === 0 || codes.length > MAX_CODES_SOLD_AT_ONCE)
        return void (await reply(
          ctx,
          usage("sold", `Name 1 to ${MAX_CODES_SOLD_AT_ONCE} codes, or a whole batch.`),
        ));
      const malformed = codes.filter((code) => !codePattern.test(code));
      if (malformed.length > 0)
        return void (await reply(
          ctx,
          `Not a voucher code: ${malformed.join(", ")}. A code is ${VOUCHER_LENGTH} letters and digits.`,
        ));
      target = { codes };
      found = await lookUp(inArray(vouchers.code, codes));
      const known = new Set(found.map((v) => v.code));
      unknown = codes.filter((code) => !known.has(code));
    }
    const sellable = found.filter((v) => sellableNow(v, now));
    const refused = found.filter((v) => !sellable.includes(v));
    const notes = [
      ...unknown.map((code) => `${code}: no such code`),
      // A whole batch lists only how many are left over: it may hold hundreds.
      ...("codes" in target ? refused.map((v) => `${v.code}: ${whyNot[v.status] ?? v.status}`) : []),
    ];
    if ("batchId" in target && refused.length > 0)
      notes.push(`${counted(refused.length, "code")} of the batch already sold, used or expired`);
    if (sellable.length === 0)
      return void (await kit.replyLines(ctx, ["None of those can be sold.", ...notes]));
    const byPlan = new Map<string, number>();
    for (const v of sellable) {
      const key = `${v.plan} (each lasts ${validityText(v)} from now)`;
      byPlan.set(key, (byPlan.get(key) ?? 0) + 1);
    }
    const summary =
      "batchId" in target
        ? `${counted(sellable.length, "unsold voucher")} of batch ${target.batchId}`
        : counted(sellable.length, "voucher");
    // Codes named one by one: only those that can be sold now are asked about (the rest are left out).
    const asked: PrintedVouchers = "codes" in target ? { codes: sellable.map((v) => v.code) } : target;
    const action: SoldAction = {
      kind: "feature",
      feature: "sold",
      target: asked,
      summary,
      paidCents,
      asked: sellable.length,
    };
    const question = [
      `Mark ${summary} sold${paidCents ? `, and record ${formatKes(paidCents)} cash received for them` : ""}? They go live on the routers now:`,
      ...[...byPlan].map(([plan, n]) => `${n} × ${plan}`),
      ...(notes.length > 0 ? ["Left out:", ...notes] : []),
    ].join("\n");
    await kit.ask(ctx, admin, action, question);
  });
  return composer;
}
