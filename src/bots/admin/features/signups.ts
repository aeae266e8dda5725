import { asc, eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import type { InlineKeyboardButton } from "grammy/types";
import { BillingError } from "../../../billing/context.ts";
import {
  approveSignup,
  countPendingSignups,
  listPaidAwaitingRouter,
  listPendingSignups,
  rejectSignup,
} from "../../../billing/signups.ts";
import { parseRowId } from "../../../db/params.ts";
import { routers } from "../../../db/schema/index.ts";
import { displayPhone } from "../../../lib/phone.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor, may } from "../roles.ts";

/**
 * `/signups`: self sign-ups waiting for an admin (src/billing/signups.ts), one message each with
 * buttons: Approve (on the area's router, or on a router chosen from the buttons when the area had
 * none) and Reject. Each press asks again with the once-only confirmation; approving and rejecting
 * need the permission of `/add`.
 */

const MAX_ROUTER_BUTTONS = 6;
/** `sg:<a|r>:<subscription id>:<router id, 0 for none>`: at most 26 bytes of Telegram's 64. */
const SIGNUP_BUTTON = /^sg:(a|r):(\d{1,10}):(\d{1,10})$/;

type ApproveAction = FeatureAction & {
  feature: "signup_approve";
  subscriptionId: number;
  accountNumber: string;
  routerId: number | null;
  routerName: string | null;
};
type RejectAction = FeatureAction & {
  feature: "signup_reject";
  subscriptionId: number;
  accountNumber: string;
};

confirmable("signup_approve", {
  command: "add",
  describe: (a) => {
    const action = a as ApproveAction;
    return `approve the sign-up of ${action.accountNumber}${action.routerName ? ` on router ${action.routerName}` : ""}`;
  },
  async run(ctx, admin, a) {
    const action = a as ApproveAction;
    await approveSignup(ctx, adminActor(admin.telegramId), {
      subscriptionId: action.subscriptionId,
      routerId: action.routerId,
    });
    return `✅ Approved ${action.accountNumber}${action.routerName ? ` on ${action.routerName}` : ""}: the router account is being created; service starts with the first payment.`;
  },
});

confirmable("signup_reject", {
  command: "add",
  describe: (a) => `reject the sign-up of ${(a as RejectAction).accountNumber}`,
  async run(ctx, admin, a) {
    const action = a as RejectAction;
    try {
      await rejectSignup(ctx, adminActor(admin.telegramId), {
        subscriptionId: action.subscriptionId,
        reason: "sign-up rejected from the admin chat",
      });
    } catch (error) {
      if (!(error instanceof BillingError) || error.code !== "signup_has_money") throw error;
      throw new BillingError(
        error.code,
        `${error.message} (/adjust ${action.accountNumber} -<amount> <reason>)`,
      );
    }
    return `✅ Rejected ${action.accountNumber}: the sign-up is cancelled (nothing owed) and the person is told.`;
  },
});

/** Sign-ups listed at once: each is a message with its own buttons. */
const SIGNUPS_SHOWN = 20;

export function signupsFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();

  kit.command(composer, "signups", async (ctx, admin) => {
    const pending = await listPendingSignups(kit.db, SIGNUPS_SHOWN);
    const unplaced = await listPaidAwaitingRouter(kit.db, SIGNUPS_SHOWN);
    if (unplaced.length > 0)
      await kit.reply(
        ctx,
        [
          "Paid, but on no router yet (their service is billed: put them on one with /place <account> <router>):",
          ...unplaced.map((u) => `  • ${u.accountNumber} · ${u.name}${u.area ? ` · ${u.area}` : ""}`),
        ].join("\n"),
      );
    if (pending.length === 0) return void (await kit.reply(ctx, "No sign-ups waiting."));
    const total = pending.length < SIGNUPS_SHOWN ? pending.length : await countPendingSignups(kit.db);
    const choices = await kit.db
      .select({ id: routers.id, name: routers.name })
      .from(routers)
      .orderBy(asc(routers.name))
      .limit(MAX_ROUTER_BUTTONS);
    const mayDecide = may(admin.role, "add");
    await kit.inTx(async (tx, _, now) => {
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        total > pending.length
          ? `${counted(total, "sign-up")} waiting; the ${pending.length} waiting longest:`
          : `${counted(total, "sign-up")} waiting:`,
      );
      for (const s of pending) {
        const text = [
          `${s.accountNumber} · ${s.name} · ${displayPhone(s.phone)}`,
          `Plan: ${s.planName}; area: ${s.area ?? "none given"}; router: ${s.routerName ?? "none yet"}`,
          `Signed up ${formatDateTime("en", s.at, kit.timezone)}`,
        ].join("\n");
        const buttons: InlineKeyboardButton[][] = [];
        if (mayDecide) {
          if (s.routerId !== null)
            buttons.push([{ text: "Approve", callback_data: `sg:a:${s.subscriptionId}:${s.routerId}` }]);
          else
            for (const r of choices)
              buttons.push([
                { text: `Approve on ${r.name}`, callback_data: `sg:a:${s.subscriptionId}:${r.id}` },
              ]);
          buttons.push([{ text: "Reject", callback_data: `sg:r:${s.subscriptionId}:0` }]);
        }
        await kit.say(
          tx,
          now,
          ctx.chat!.id,
          s.routerId === null && choices.length === 0 && mayDecide
            ? `${text}\nNo router exists yet: add one before approving.`
            : text,
          buttons,
        );
      }
    });
  });

  composer.callbackQuery(SIGNUP_BUTTON, async (ctx) => {
    const admin = kit.adminOf(ctx);
    if (!may(admin.role, "add")) {
      await kit.refuseRole(ctx, admin, "add");
      await ctx.answerCallbackQuery({ text: `Your role (${admin.role}) may not do that.` });
      return;
    }
    const [, what, subscriptionWord, routerWord] = ctx.match as RegExpMatchArray;
    const subscriptionId = parseRowId(subscriptionWord!);
    const pending =
      subscriptionId === null
        ? undefined
        : (await listPendingSignups(kit.db, 1000)).find((s) => s.subscriptionId === subscriptionId);
    if (!pending) {
      await ctx.answerCallbackQuery({ text: "That sign-up is no longer waiting." });
      return;
    }
    let action: ApproveAction | RejectAction;
    if (what === "r") {
      action = {
        kind: "feature",
        feature: "signup_reject",
        subscriptionId: pending.subscriptionId,
        accountNumber: pending.accountNumber,
      };
    } else {
      const routerId = pending.routerId ?? parseRowId(routerWord!);
      const [router] =
        routerId === null
          ? []
          : await kit.db
              .select({ id: routers.id, name: routers.name })
              .from(routers)
              .where(eq(routers.id, routerId));
      if (!router) {
        await ctx.answerCallbackQuery({ text: "That router no longer exists." });
        return;
      }
      action = {
        kind: "feature",
        feature: "signup_approve",
        subscriptionId: pending.subscriptionId,
        accountNumber: pending.accountNumber,
        routerId: router.id,
        routerName: router.name,
      };
    }
    const question =
      action.feature === "signup_reject"
        ? `${pending.name}: reject this sign-up? The subscription is cancelled (nothing owed) and they are told by SMS or chat.`
        : `${pending.name}: approve this sign-up on ${(action as ApproveAction).routerName}? The router account is created, disabled until the first payment.`;
    await kit.ask(ctx, admin, action, question);
    await ctx.answerCallbackQuery();
  });

  return composer;
}
