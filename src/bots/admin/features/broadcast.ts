import { Composer, type Context } from "grammy";
import {
  type Audience,
  audienceLabel,
  broadcastRecipients,
  checkBroadcastText,
  sendBroadcast,
} from "../../../billing/broadcast.ts";
import { BillingError } from "../../../billing/context.ts";
import { counted } from "../../../lib/plural.ts";
import { smsParts } from "../../../lib/sms-text.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor } from "../roles.ts";

/**
 * `/broadcast <router NAME | plan CODE | area NAME | all> <text>`: counts who it reaches, asks, and
 * on Confirm writes one notice per customer (src/billing/broadcast.ts). A router or area name of
 * several words is quoted: `/broadcast area "Kahawa West" Maintenance tonight`.
 */

type BroadcastAction = FeatureAction & {
  feature: "broadcast";
  audience: Audience;
  text: string;
  count: number;
};

confirmable("broadcast", {
  command: "broadcast",
  describe: (a) => {
    const action = a as BroadcastAction;
    return `send a notice to ${audienceLabel(action.audience, action.count)}: "${action.text}"`;
  },
  async run(ctx, admin, a, token) {
    const action = a as BroadcastAction;
    const { recipients } = await sendBroadcast(ctx, adminActor(admin.telegramId), {
      broadcastId: token,
      audience: action.audience,
      text: action.text,
    });
    return `✅ Notice queued for ${audienceLabel(action.audience, recipients)}; they go out by chat or SMS, paced.`;
  },
});

/** The audience and the text from what follows `/broadcast` (a quoted name may hold spaces). */
export function parseBroadcast(
  raw: string,
): { ok: true; audience: Audience; text: string } | { ok: false; error: string } {
  const match = /^\s*(\S+)\s*(.*)$/s.exec(raw);
  const kind = match?.[1]?.toLowerCase();
  let rest = match?.[2] ?? "";
  if (kind === "all") return { ok: true, audience: { kind: "all" }, text: rest.trim() };
  if (kind !== "router" && kind !== "plan" && kind !== "area")
    return {
      ok: false,
      error: kind
        ? `"${match?.[1]}" is not an audience: router, plan, area or all.`
        : "Say who: router, plan, area or all.",
    };
  const named = /^\s*(?:"([^"]+)"|(\S+))\s*(.*)$/s.exec(rest);
  const name = (named?.[1] ?? named?.[2] ?? "").trim();
  if (!name) return { ok: false, error: `Say the ${kind}'s ${kind === "plan" ? "code" : "name"}.` };
  rest = named?.[3] ?? "";
  const audience: Audience = kind === "plan" ? { kind, code: name } : { kind, name };
  return { ok: true, audience, text: rest.trim() };
}

export function broadcastFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "broadcast", async (ctx, admin) => {
    const raw = typeof ctx.match === "string" ? ctx.match : "";
    const parsed = parseBroadcast(raw);
    if (!parsed.ok) return void (await reply(ctx, usage("broadcast", parsed.error)));
    let text: string;
    let count: number;
    try {
      text = checkBroadcastText(parsed.text);
      count = (await broadcastRecipients(kit.db, parsed.audience)).length;
    } catch (error) {
      if (!(error instanceof BillingError)) throw error;
      return void (await reply(ctx, usage("broadcast", error.message)));
    }
    if (count === 0) return void (await reply(ctx, `Nobody to tell: ${audienceLabel(parsed.audience, 0)}.`));
    const action: BroadcastAction = {
      kind: "feature",
      feature: "broadcast",
      audience: parsed.audience,
      text,
      count,
    };
    const notice = `${kit.deps.ispName ?? "ISP"}: ${text}`;
    const sms = smsParts(notice);
    // What each copy sent by SMS costs: an emoji or another script makes every part a Unicode one.
    const cost = `${counted(sms.parts, "SMS part")} per copy sent by SMS${sms.unicode ? " (Unicode: an emoji or a character outside the SMS alphabet; without it, fewer parts)" : ""}`;
    await kit.ask(
      ctx,
      admin,
      action,
      `Send this notice to ${audienceLabel(parsed.audience, count)} (by chat or SMS; ${cost})?\n\n${notice}`,
    );
  });
  return composer;
}
