import { and, asc, eq, sql } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { formatKes } from "../../../billing/money.ts";
import { createCustomerWithSubscription } from "../../../billing/subscriptions.ts";
import type { Executor } from "../../../db/client.ts";
import { customers, plans, routers, subscriptions } from "../../../db/schema/index.ts";
import { displayPhone } from "../../../lib/phone.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import { dialogsOf, dialogUnderWay } from "../dialog.ts";
import type { AdminKit } from "../kit.ts";
import { parseCustomerPhone } from "../parse.ts";
import { type Admin, adminActor } from "../roles.ts";

/**
 * `/add`, guided: name → phone → plan → router → username (one suggested) → the once-only
 * confirmation, then `createCustomerWithSubscription` (customer, pending subscription, first
 * invoice, router account, welcome SMS). One question per message, the answers so far kept as a
 * dialog (dialog.ts). `/cancel_dialog`, or any other command, abandons it.
 */

const MAX_CHOICES = 12;
const USERNAME = /^[a-z0-9][a-z0-9._-]{2,31}$/;

type Step = "name" | "phone" | "plan" | "router" | "username";

interface Answers {
  name?: string;
  phone?: string;
  planId?: number;
  planCode?: string;
  routerId?: number | null;
  routerName?: string | null;
  suggested?: string;
}

type AddAction = FeatureAction & {
  feature: "add_subscriber";
  name: string;
  phone: string;
  planId: number;
  planCode: string;
  routerId: number | null;
  routerName: string | null;
  username: string;
};

confirmable("add_subscriber", {
  command: "add",
  describe: (a) => {
    const action = a as AddAction;
    return `add ${action.name} (${displayPhone(action.phone)}) on plan ${action.planCode}, router ${action.routerName ?? "none"}, username ${action.username}`;
  },
  async run(ctx, admin, a) {
    const action = a as AddAction;
    const { customer, invoice } = await createCustomerWithSubscription(ctx, adminActor(admin.telegramId), {
      name: action.name,
      phone: action.phone,
      planId: action.planId,
      routerId: action.routerId,
      networkUsername: action.username,
    });
    return `✅ Added ${customer.name}: account ${customer.accountNumber}, ${formatKes(invoice.amountCents)} to pay for the first period (service starts with it). ${action.routerId === null ? `No router yet: /place ${customer.accountNumber} <router> puts it on one.` : "The router account is being created."}`;
  },
});

/** A router username from a name: `Wanjiku Kamau` → `wanjiku.kamau`, with a number if taken. */
export async function suggestUsername(db: Executor, name: string): Promise<string> {
  const base =
    name
      .normalize("NFKD")
      .toLowerCase()
      .replace(/[^a-z0-9\s]/g, "")
      .trim()
      .split(/\s+/)
      .slice(0, 2)
      .join(".")
      .slice(0, 24) || "user";
  const stem = base.length >= 3 ? base : `${base}.net`;
  for (let n = 0; n < 50; n++) {
    const candidate = n === 0 ? stem : `${stem}${n + 1}`;
    if (!(await usernameTaken(db, candidate))) return candidate;
  }
  return `${stem}.${Date.now() % 100_000}`;
}

async function usernameTaken(db: Executor, username: string): Promise<boolean> {
  const [row] = await db
    .select({ id: subscriptions.id })
    .from(subscriptions)
    .where(eq(subscriptions.networkUsername, username));
  return Boolean(row);
}

export function addFeature(kit: AdminKit): Composer<Context> {
  const { db } = kit;
  const composer = new Composer<Context>();
  const dialogs = dialogsOf<Step, Answers>(kit, "add");

  // Before every other feature: a command other than /add ends a dialog; text answers it.
  composer.on("message", async (ctx, next) => {
    const word = kit.commandWord(ctx);
    if (word === "add") return next();
    if (word === "cancel_dialog") {
      const underWay = await dialogUnderWay(kit, ctx);
      await dialogs.forget(ctx);
      await kit.reply(ctx, underWay ? "Stopped: nothing was added." : "There is nothing to stop.");
      return;
    }
    if (word !== null || ctx.message.text === undefined) {
      await dialogs.forget(ctx);
      return next();
    }
    const dialog = await dialogs.current(ctx);
    if (!dialog) return next();
    await answer(ctx, kit.adminOf(ctx), dialog.step, dialog.answers, ctx.message.text.trim());
  });

  kit.command(composer, "add", async (ctx) => {
    // In a group the bot hears commands only (the gate drops other talk): answers would be lost.
    if (ctx.chat?.type !== "private")
      return void (await kit.reply(
        ctx,
        "/add asks one question at a time: use it in a private chat with me.",
      ));
    await dialogs.ask(
      ctx,
      "name",
      {},
      "New subscriber (1/5): their full name? (/cancel_dialog stops; this is forgotten after 10 minutes.)",
    );
  });

  async function answer(ctx: Context, admin: Admin, step: Step, answers: Answers, text: string) {
    switch (step) {
      case "name": {
        if (text.length < 2 || text.length > 80)
          return dialogs.retry(ctx, "A name of 2 to 80 characters, please. Their full name?");
        return dialogs.ask(
          ctx,
          "phone",
          { ...answers, name: text },
          `(2/5) ${text}'s phone number? e.g. 0712 345678`,
        );
      }
      case "phone": {
        const parsed = parseCustomerPhone(text, kit.deps.servedCountries);
        if (!parsed.ok) return dialogs.retry(ctx, parsed.error);
        const phone = parsed.value;
        const [taken] = await db
          .select({ accountNumber: customers.accountNumber })
          .from(customers)
          .where(eq(customers.phone, phone));
        if (taken)
          return dialogs.retry(
            ctx,
            `${displayPhone(phone)} is already account ${taken.accountNumber} (/sub ${taken.accountNumber}). Another number, or /cancel_dialog.`,
          );
        const choices = await db
          .select()
          .from(plans)
          .where(eq(plans.active, true))
          .orderBy(asc(plans.kind), asc(plans.priceCents))
          .limit(MAX_CHOICES);
        if (choices.length === 0) {
          await dialogs.forget(ctx);
          return void (await kit.reply(ctx, "There is no active plan: add one with /plan_add first."));
        }
        return dialogs.ask(
          ctx,
          "plan",
          { ...answers, phone },
          [
            "(3/5) Which plan? Type its code:",
            ...choices.map((p) => `  ${p.code} — ${p.name}, ${formatKes(p.priceCents)} (${p.kind})`),
          ].join("\n"),
        );
      }
      case "plan": {
        const [plan] = await db
          .select()
          .from(plans)
          .where(and(eq(plans.code, text.toLowerCase()), eq(plans.active, true)));
        if (!plan) return dialogs.retry(ctx, `No active plan "${text}". Type one of the codes above.`);
        const choices = await db
          .select({ id: routers.id, name: routers.name })
          .from(routers)
          .orderBy(asc(routers.name))
          .limit(MAX_CHOICES);
        return dialogs.ask(
          ctx,
          "router",
          { ...answers, planId: plan.id, planCode: plan.code },
          [
            "(4/5) Which router? Type its name (or none to place it later):",
            ...choices.map((r) => `  ${r.name}`),
          ].join("\n"),
        );
      }
      case "router": {
        let routerId: number | null = null;
        let routerName: string | null = null;
        if (!/^none$/i.test(text)) {
          const [router] = await db
            .select({ id: routers.id, name: routers.name })
            .from(routers)
            .where(sql`lower(${routers.name}) = lower(${text})`);
          if (!router)
            return dialogs.retry(ctx, `No router "${text}". Type one of the names above, or none.`);
          routerId = router.id;
          routerName = router.name;
        }
        const suggested = await suggestUsername(db, answers.name ?? "");
        return dialogs.ask(
          ctx,
          "username",
          { ...answers, routerId, routerName, suggested },
          `(5/5) Username on the router? Type ok for ${suggested}, or type another (3–32: a-z, 0-9, . _ -).`,
        );
      }
      case "username": {
        const username = /^ok$/i.test(text) ? (answers.suggested ?? "") : text.toLowerCase();
        if (!USERNAME.test(username))
          return dialogs.retry(ctx, `"${text}" cannot be a username: 3–32 of a-z, 0-9, . _ - (or ok).`);
        if (await usernameTaken(db, username))
          return dialogs.retry(ctx, `${username} is taken: type another.`);
        const action: AddAction = {
          kind: "feature",
          feature: "add_subscriber",
          name: answers.name ?? "",
          phone: answers.phone ?? "",
          planId: answers.planId ?? 0,
          planCode: answers.planCode ?? "",
          routerId: answers.routerId ?? null,
          routerName: answers.routerName ?? null,
          username,
        };
        return dialogs.confirm(
          ctx,
          admin,
          action,
          `Add ${action.name}, ${displayPhone(action.phone)}, plan ${action.planCode}, router ${action.routerName ?? "none"}, username ${username}?`,
        );
      }
    }
  }

  return composer;
}
