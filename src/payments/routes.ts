import { timingSafeEqual } from "node:crypto";
import { getConnInfo } from "@hono/node-server/conninfo";
import { type Context, Hono } from "hono";
import { findCustomerByAccountReference } from "../billing/accounts.ts";
import type { Actor, BillingContext } from "../billing/context.ts";
import { recordUnsettledCallback } from "../billing/intents/callbacks.ts";
import { type SettleOutcome, settleStkResult } from "../billing/intents/settle.ts";
import { settleStkResults } from "../billing/intents/settle-batch.ts";
import { recordC2bConfirmation } from "../billing/paybill.ts";
import type { Logger } from "../logger.ts";
import { createStkBatcher } from "./mpesa/stk-batcher.ts";
import {
  c2bAccept,
  c2bBody,
  c2bRejectAccount,
  c2bRejectAmount,
  parseStkCallback,
  shillingsToCents,
} from "./mpesa/wire.ts";

/** Words Safaricom refuses in callback URLs (any case). */
export const forbiddenUrlWords = /(m-?pesa|safaricom|exe|exec|cmd|sql|query)/i;

export const callbackPaths = {
  stk: (token: string) => `/hooks/mp/${token}/stk`,
  c2bValidation: (token: string) => `/hooks/mp/${token}/c2b/validate`,
  c2bConfirmation: (token: string) => `/hooks/mp/${token}/c2b/confirm`,
};

export interface MpesaRouteDeps {
  ctx: BillingContext;
  logger: Logger;
  /** Secret path segment: a request without it gets 404 and changes nothing. */
  token: string;
  /** When set, callbacks from any other source address get 404 too. */
  allowedIps?: string[];
  /** Validation rejects paybill references that match no account (default: accept everything). */
  rejectUnknownAccounts?: boolean;
  /** Told after each STK result is settled (the workers use it to follow up quickly). */
  onStkSettled?: (outcome: SettleOutcome) => void;
}

const webhookActor: Actor = { kind: "webhook", id: "mpesa" };

/**
 * Daraja's callbacks, mounted by the app under `/hooks/mp`. Each answers once the result is settled
 * in one short transaction (no call goes out from here). Callbacks are not signed: the path token
 * and the optional address allowlist keep strangers out, and the intent's amount and id decide what
 * is credited.
 */
export function createMpesaRoutes(deps: MpesaRouteDeps): Hono {
  const routes = new Hono();
  const expected = Buffer.from(deps.token);
  const stkBatcher = createStkBatcher({
    settleOne: (result) => settleStkResult(deps.ctx, webhookActor, result),
    settleMany: (results) => settleStkResults(deps.ctx, webhookActor, results),
  });
  const allowed = deps.allowedIps?.length ? new Set(deps.allowedIps.map(normalizeIp)) : null;

  routes.use("/:token/*", async (c, next) => {
    const given = Buffer.from(c.req.param("token") ?? "");
    const tokenOk = given.length === expected.length && timingSafeEqual(given, expected);
    if (!tokenOk || (allowed && !allowed.has(normalizeIp(remoteAddress(c))))) return c.text("Not Found", 404);
    await next();
  });

  routes.post("/:token/stk", async (c) => {
    const now = deps.ctx.clock.now();
    const raw = await readBody(c);
    const parsed = parseStkCallback(raw);
    if (!parsed) {
      await recordUnsettledCallback(deps.ctx.db, now, {
        kind: "stk",
        reference: null,
        raw,
        flag: "malformed",
      });
      return c.json({ ResultCode: 0, ResultDesc: "Accepted" });
    }
    const outcome = await stkBatcher.settle({ ...parsed, source: "callback", raw });
    if (outcome.status !== "credited" && outcome.status !== "failed" && outcome.status !== "duplicate")
      deps.logger.warn(
        { checkoutRequestId: parsed.checkoutRequestId, outcome },
        "STK callback not credited as is",
      );
    deps.onStkSettled?.(outcome);
    return c.json({ ResultCode: 0, ResultDesc: "Accepted" });
  });

  routes.post("/:token/c2b/validate", async (c) => {
    const raw = await readBody(c);
    const parsed = c2bBody.safeParse(raw);
    const amount = parsed.success ? shillingsToCents(parsed.data.TransAmount) : null;
    if (!parsed.success || amount === null || amount <= 0) {
      await recordUnsettledCallback(deps.ctx.db, deps.ctx.clock.now(), {
        kind: "c2b_validation",
        reference: parsed.success ? parsed.data.TransID : null,
        raw,
        flag: "rejected_amount",
      });
      return c.json(c2bRejectAmount);
    }
    if (
      deps.rejectUnknownAccounts &&
      !(await findCustomerByAccountReference(deps.ctx.db, parsed.data.BillRefNumber))
    ) {
      await recordUnsettledCallback(deps.ctx.db, deps.ctx.clock.now(), {
        kind: "c2b_validation",
        reference: parsed.data.TransID,
        raw,
        flag: "rejected_account",
      });
      return c.json(c2bRejectAccount);
    }
    return c.json(c2bAccept);
  });

  routes.post("/:token/c2b/confirm", async (c) => {
    const raw = await readBody(c);
    const parsed = c2bBody.safeParse(raw);
    const amount = parsed.success ? shillingsToCents(parsed.data.TransAmount) : null;
    if (!parsed.success || amount === null || amount <= 0) {
      await recordUnsettledCallback(deps.ctx.db, deps.ctx.clock.now(), {
        kind: "c2b_confirmation",
        reference: parsed.success ? parsed.data.TransID : null,
        raw,
        flag: "malformed",
      });
      return c.json({ ResultCode: 0, ResultDesc: "Success" });
    }
    const body = parsed.data;
    const payerName = [body.FirstName, body.MiddleName, body.LastName].filter(Boolean).join(" ") || undefined;
    const recorded = await recordC2bConfirmation(deps.ctx, webhookActor, {
      transId: body.TransID,
      billRef: body.BillRefNumber,
      amountCents: amount,
      payerName,
      raw,
    });
    if (!recorded.matched && !recorded.duplicate)
      deps.logger.info(
        { transId: body.TransID, billRef: body.BillRefNumber },
        "paybill payment waits in the unmatched queue",
      );
    return c.json({ ResultCode: 0, ResultDesc: "Success" });
  });

  return routes;
}

async function readBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    return null;
  }
}

function remoteAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "";
  } catch {
    return "";
  }
}

function normalizeIp(ip: string): string {
  return ip.trim().replace(/^::ffff:/, "");
}
