import { randomBytes } from "node:crypto";
import { and, eq, gt, isNull } from "drizzle-orm";
import type { InlineKeyboardMarkup } from "grammy/types";
import { audit } from "../../billing/audit.ts";
import { type BillingContext, BillingError } from "../../billing/context.ts";
import { formatKes } from "../../billing/money.ts";
import { applyPaymentInTx } from "../../billing/payments.ts";
import { resumeSubscription, suspendSubscription } from "../../billing/suspend-resume.ts";
import type { Db, Executor } from "../../db/client.ts";
import { adminConfirmations } from "../../db/schema/index.ts";
import { queueAdminCall } from "./queued-api.ts";
import { type Admin, type AdminCommand, adminActor, may } from "./roles.ts";

/**
 * Destructive actions are asked first: the question is a row of `admin_confirmations` and a message
 * with two buttons carrying its random token. Pressing Confirm claims the row in SQL (only the
 * admin who asked, only while unused and unexpired) and runs the action in the same transaction, so
 * a double tap, a second instance or a colleague pressing it cannot run it twice.
 */

export type PendingAction =
  | { kind: "pay"; customerId: number; accountNumber: string; amountCents: number; note: string }
  | {
      kind: "suspend" | "resume";
      subscriptionId: number;
      customerId: number;
      accountNumber: string;
      reason: string;
    }
  | FeatureAction;

/**
 * An action a feature of its own asks about (features/*.ts): `feature` names how it runs, registered
 * with `confirmable` when that feature's module loads; the rest of the row is the feature's.
 */
export interface FeatureAction {
  kind: "feature";
  feature: string;
  [key: string]: unknown;
}

export interface FeatureConfirmable {
  /** The command whose permission it needs, checked again when Confirm is pressed. */
  command: AdminCommand;
  describe(action: FeatureAction): string;
  /** Runs in the claim's transaction (`ctx.db` is it); answers the text the question becomes. */
  run(ctx: BillingContext, admin: Admin, action: FeatureAction, token: string): Promise<string>;
}

const featureActions = new Map<string, FeatureConfirmable>();

export function confirmable(feature: string, how: FeatureConfirmable): void {
  featureActions.set(feature, how);
}

function featureOf(action: FeatureAction): FeatureConfirmable {
  const how = featureActions.get(action.feature);
  if (!how) throw new Error(`no confirmable action ${action.feature}`);
  return how;
}

export const CONFIRMATION_TTL_MS = 10 * 60_000;

/** The command whose permission a pending action needs (checked again when it is pressed). */
export const commandOf = (action: PendingAction): AdminCommand =>
  action.kind === "feature" ? featureOf(action).command : action.kind;

export const confirmData = (token: string) => `ok:${token}`;
export const cancelData = (token: string) => `no:${token}`;
export const confirmPattern = /^(ok|no):([A-Za-z0-9_-]{16,64})$/;

export function describe(action: PendingAction): string {
  switch (action.kind) {
    case "pay":
      return `record a cash payment of ${formatKes(action.amountCents)} to ${action.accountNumber}${action.note ? ` (note: ${action.note})` : ""}`;
    case "suspend":
      return `suspend ${action.accountNumber}'s service (reason: ${action.reason})`;
    case "resume":
      return `resume ${action.accountNumber}'s service (reason: ${action.reason})`;
    case "feature":
      return featureOf(action).describe(action);
  }
}

/** The Confirm button's text unless the question names the action on it. */
export const CONFIRM_LABEL = "✅ Confirm";

/**
 * Writes the question and its message (in `tx`, with whatever else the caller writes). `confirmLabel`
 * names what the button does when "Confirm" alone would not tell it at a glance.
 */
export async function askConfirmation(
  tx: Executor,
  now: Date,
  admin: Admin,
  chatId: number,
  action: PendingAction,
  question: string,
  confirmLabel: string = CONFIRM_LABEL,
): Promise<string> {
  const token = randomBytes(16).toString("base64url");
  await tx.insert(adminConfirmations).values({
    token,
    adminTelegramId: admin.telegramId,
    chatId: String(chatId),
    action: action as unknown as Record<string, unknown>,
    createdAt: now,
    expiresAt: new Date(now.getTime() + CONFIRMATION_TTL_MS),
  });
  const keyboard: InlineKeyboardMarkup = {
    inline_keyboard: [
      [
        { text: confirmLabel, callback_data: confirmData(token) },
        { text: "Cancel", callback_data: cancelData(token) },
      ],
    ],
  };
  await queueAdminCall(tx, now, "sendMessage", {
    chat_id: chatId,
    text: `${question}\nOnly ${admin.name || `admin ${admin.telegramId}`} can confirm, within ${CONFIRMATION_TTL_MS / 60_000} minutes.`,
    reply_markup: keyboard,
  });
  return token;
}

export type PressOutcome =
  /** Done (or cancelled): the question was edited to say so. */
  | { kind: "done"; toast: string }
  /** Nothing happened: the toast says why (not yours, used, expired, not allowed, refused by billing). */
  | { kind: "nothing"; toast: string; refusedRole?: AdminCommand };

/** A press of Confirm or Cancel on a question (`message` is where the question is shown). */
export async function pressConfirmation(
  ctx: BillingContext,
  admin: Admin,
  decision: "ok" | "no",
  token: string,
  message: { chatId: number; messageId: number } | null,
): Promise<PressOutcome> {
  const now = ctx.clock.now();
  const [row] = await ctx.db.select().from(adminConfirmations).where(eq(adminConfirmations.token, token));
  if (!row) return { kind: "nothing", toast: "That question is unknown." };
  if (row.adminTelegramId !== admin.telegramId)
    return { kind: "nothing", toast: "Only the admin who asked can answer this." };
  if (row.usedAt)
    return { kind: "nothing", toast: row.outcome === "cancelled" ? "Already cancelled." : "Already done." };
  if (row.expiresAt <= now) return { kind: "nothing", toast: "Too late: ask again." };
  const action = row.action as unknown as PendingAction;
  if (decision === "ok" && !may(admin.role, commandOf(action)))
    return {
      kind: "nothing",
      toast: `Your role (${admin.role}) may not do that any more.`,
      refusedRole: commandOf(action),
    };
  try {
    return await ctx.db.transaction(async (tx) => {
      const [claimed] = await tx
        .update(adminConfirmations)
        .set({ usedAt: now, outcome: decision === "ok" ? "done" : "cancelled" })
        .where(
          and(
            eq(adminConfirmations.token, token),
            eq(adminConfirmations.adminTelegramId, admin.telegramId),
            isNull(adminConfirmations.usedAt),
            gt(adminConfirmations.expiresAt, now),
          ),
        )
        .returning({ id: adminConfirmations.id });
      if (!claimed) return { kind: "nothing", toast: "Already answered." } satisfies PressOutcome;
      const result =
        decision === "ok" ? await run(tx, ctx, admin, action, token) : `Cancelled: ${describe(action)}.`;
      await audit(tx, adminActor(admin.telegramId), now, {
        action: decision === "ok" ? "admin.confirmed" : "admin.cancelled",
        entity: "admin_confirmation",
        entityId: claimed.id,
        details: { ...action },
      });
      if (message)
        await queueAdminCall(tx, now, "editMessageText", {
          chat_id: message.chatId,
          message_id: message.messageId,
          text: result,
        });
      return { kind: "done", toast: decision === "ok" ? "Done." : "Cancelled." } satisfies PressOutcome;
    });
  } catch (error) {
    // The use-case refused: everything rolled back, the question is still open.
    if (error instanceof BillingError) return { kind: "nothing", toast: error.message.slice(0, 190) };
    throw error;
  }
}

/** Runs a confirmed action through the billing core, in the claim's transaction. */
async function run(
  tx: Executor,
  ctx: BillingContext,
  admin: Admin,
  action: PendingAction,
  token: string,
): Promise<string> {
  const actor = adminActor(admin.telegramId);
  // The use-cases open their own transaction: on `tx` that is a savepoint inside the claim's.
  const inTx: BillingContext = { ...ctx, db: tx as unknown as Db };
  switch (action.kind) {
    case "pay": {
      const result = await applyPaymentInTx(tx, ctx, actor, {
        customerId: action.customerId,
        method: "cash",
        provider: "cash",
        // One confirmation is one payment, whatever happens above.
        providerRef: `tg-${token}`,
        amountCents: action.amountCents,
      });
      // Cash in the admin's hand is not queued for a closed account: refused, nothing recorded.
      if (result.heldReason)
        throw new BillingError(
          "account_closed",
          `Not recorded: ${action.accountNumber}'s sign-up was rejected. Resubscribe it first, or give the cash back.`,
        );
      if (result.duplicate) return `Already recorded: ${describe(action)}.`;
      const restored = result.restoredSubscriptionIds.length > 0 ? " Service restored." : "";
      return `✅ Recorded ${formatKes(action.amountCents)} cash for ${action.accountNumber}. Balance now ${formatKes(result.balanceCents)}.${restored}`;
    }
    case "suspend":
      await suspendSubscription(inTx, actor, {
        subscriptionId: action.subscriptionId,
        reason: action.reason,
      });
      return `✅ Suspended ${action.accountNumber}: the router is being told.`;
    case "resume":
      await resumeSubscription(inTx, actor, { subscriptionId: action.subscriptionId, reason: action.reason });
      return `✅ Resumed ${action.accountNumber}: the router is being told.`;
    case "feature":
      return featureOf(action).run(inTx, admin, action, token);
  }
}
