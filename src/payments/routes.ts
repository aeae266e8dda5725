import { type Context, Hono } from "hono";
import { findCustomerByAccountReference } from "../billing/accounts.ts";
import type { BillingContext } from "../billing/context.ts";
import { recordCallbackOutcome } from "../billing/intents/callbacks.ts";
import { type SettleOutcome, settleStkResult } from "../billing/intents/settle.ts";
import { settleStkResults } from "../billing/intents/settle-batch.ts";
import { limitBody } from "../lib/body-limit.ts";
import { addressAllowlist, type ClientAddressReader, clientAddressReader } from "../lib/client-address.ts";
import { sameSecret } from "../lib/same-secret.ts";
import type { Logger } from "../logger.ts";
import { type InboundRequest, Inbox } from "./inbox.ts";
import { type ProcessDeps, processStoredRequest, webhookActor } from "./mpesa/process.ts";
import { createStkBatcher } from "./mpesa/stk-batcher.ts";
import {
  c2bAccept,
  c2bBody,
  c2bRejectAccount,
  c2bRejectAmount,
  parseJsonBounded,
  paybillMaxCents,
  shillingsToCents,
} from "./mpesa/wire.ts";

/** Words Safaricom refuses in callback URLs (any case). */
export const forbiddenUrlWords = /(m-?pesa|safaricom|exe|exec|cmd|sql|query)/i;

export const callbackPaths = {
  stk: (token: string) => `/hooks/mp/${token}/stk`,
  c2bValidation: (token: string) => `/hooks/mp/${token}/c2b/validate`,
  c2bConfirmation: (token: string) => `/hooks/mp/${token}/c2b/confirm`,
};

/** Daraja's bodies are a few hundred bytes; anything near this is not Daraja's. */
export const maxCallbackBytes = 64 * 1024;

export interface MpesaRouteDeps {
  ctx: BillingContext;
  logger: Logger;
  /** Secret path segment: a request without it gets 404 and changes nothing. */
  token: string;
  /** When set, callbacks from any other (client) address get 404 too. */
  allowedIps?: string[];
  /** Reverse proxies whose `X-Forwarded-For` is believed (see src/lib/client-address.ts). */
  trustedProxies?: string[];
  /**
   * The request's client address, where the socket does not tell it (on the Worker: Cloudflare's
   * `CF-Connecting-IP`). Default: the socket's peer, through `trustedProxies`.
   */
  clientAddress?: ClientAddressReader;
  /** Validation rejects paybill references that match no account (default: accept everything). */
  rejectUnknownAccounts?: boolean;
  /** Our paybill or till number: confirmations for another are held for review. */
  shortcode?: string | null;
  /** Where requests go while the database is away (see Inbox). */
  spoolDir?: string;
  /** Told after each STK result is settled (the workers use it to follow up quickly). */
  onStkSettled?: (outcome: SettleOutcome) => void;
}

export interface MpesaRoutes {
  routes: Hono;
  inbox: Inbox;
  /** Processes a stored request again (the inbox retry job). */
  process: ProcessDeps;
}

/**
 * Daraja's callbacks, mounted by the app under `/hooks/mp`. Every authentic request (right token,
 * allowed source, within the size limit) is stored in the inbox in a commit of its own before it
 * is processed, and is answered 2xx once stored, whatever processing makes of it: Daraja does not
 * resend, so a 5xx would only lose the request. Processing settles it in one short transaction (no
 * call goes out from here). Callbacks are not signed: the path token and the optional address
 * allowlist keep strangers out, and the intent's amount and id decide what is credited.
 */
export function createMpesaRoutes(deps: MpesaRouteDeps): Hono {
  return createMpesaInbox(deps).routes;
}

export function createMpesaInbox(deps: MpesaRouteDeps): MpesaRoutes {
  const routes = new Hono();
  const inbox = new Inbox({ ctx: deps.ctx, logger: deps.logger, spoolDir: deps.spoolDir });
  const stkBatcher = createStkBatcher({
    settleOne: (result) => settleStkResult(deps.ctx, webhookActor, result),
    settleMany: (results) => settleStkResults(deps.ctx, webhookActor, results),
  });
  const process: ProcessDeps = {
    ctx: deps.ctx,
    logger: deps.logger,
    inbox,
    shortcode: deps.shortcode ?? null,
    settleStk: (result) => stkBatcher.settle(result),
    onStkSettled: deps.onStkSettled,
  };
  const allowed = addressAllowlist(
    deps.allowedIps,
    clientAddressReader(deps.trustedProxies, deps.clientAddress),
  );

  routes.use("/:token/*", async (c, next) => {
    const tokenOk = sameSecret(c.req.param("token"), deps.token);
    if (!tokenOk || (allowed && !allowed(c))) return c.text("Not Found", 404);
    await next();
  });
  routes.use("/:token/*", limitBody(maxCallbackBytes));

  /** Stores, then processes; answers `ok` once stored. */
  async function receive(c: Context, kind: InboundRequest["kind"], ok: object) {
    const text = await c.req.text();
    let id: number | null;
    try {
      id = await inbox.store({ kind, text });
    } catch (error) {
      deps.logger.error({ err: error, kind }, "M-Pesa request could not be stored");
      return c.json({ ResultCode: 1, ResultDesc: "Try again" }, 503);
    }
    if (id === null) return c.json(ok); // spooled: processed once the database is back
    try {
      await processStoredRequest(process, { id, kind, text });
    } catch (error) {
      deps.logger.error(
        { err: error, inboxId: id, kind },
        "M-Pesa request stored, processing failed: will retry",
      );
      await inbox.markFailed(id, error, { countTry: true });
    }
    return c.json(ok);
  }

  routes.post("/:token/stk", (c) => receive(c, "stk", { ResultCode: 0, ResultDesc: "Accepted" }));
  routes.post("/:token/c2b/confirm", (c) =>
    receive(c, "c2b_confirmation", { ResultCode: 0, ResultDesc: "Success" }),
  );

  routes.post("/:token/c2b/validate", async (c) => {
    const text = await c.req.text();
    const json = parseJsonBounded(text);
    const body = json.ok ? json.value : null;
    const parsed = c2bBody.safeParse(body);
    const amount = parsed.success ? shillingsToCents(parsed.data.TransAmount) : null;
    let flag: string | null = null;
    if (!parsed.success || amount === null || amount <= 0 || amount > paybillMaxCents)
      flag = "rejected_amount";
    else if (deps.rejectUnknownAccounts) {
      // A lookup that fails accepts: the confirmation that follows is stored and queued if need be.
      const known = await findCustomerByAccountReference(deps.ctx.db, parsed.data.BillRefNumber).catch(
        () => true,
      );
      if (!known) flag = "rejected_account";
    }
    // A validation changes nothing, so the decision and the request are stored in one statement.
    await recordCallbackOutcome(deps.ctx.db, deps.ctx.clock.now(), {
      kind: "c2b_validation",
      reference: parsed.success ? parsed.data.TransID : null,
      body,
      flag,
      raw: text.replaceAll("\0", "\uFFFD"),
    }).catch((error: unknown) => deps.logger.error({ err: error }, "C2B validation could not be recorded"));
    if (flag === "rejected_amount") return c.json(c2bRejectAmount);
    if (flag === "rejected_account") return c.json(c2bRejectAccount);
    return c.json(c2bAccept);
  });

  return { routes, inbox, process };
}
