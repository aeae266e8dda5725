import { Composer, type Context } from "grammy";
import type { InlineKeyboardButton } from "grammy/types";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { counted } from "../../../lib/plural.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount } from "../parse.ts";
import { findCustomers, subscriberCard } from "../queries.ts";
import { may } from "../roles.ts";
import { cardText, findLine } from "../texts.ts";
import { followWithOnlineStatus } from "./online.ts";

/** `/find` and `/sub`: read only. */
export function lookupFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db, clock, timezone } = kit;
  const lookup = new Composer<Context>();
  kit.command(lookup, "find", async (ctx, _admin, args) => {
    const query = args.join(" ");
    if (query.length < 2)
      return void (await reply(
        ctx,
        usage("find", "Say a phone number, an account number or part of a name."),
      ));
    if (query.length > 64) return void (await reply(ctx, usage("find", "That is too long to be a name.")));
    const found = await findCustomers(db, query, clock.now());
    if (found.length === 0) return void (await reply(ctx, `Nobody matches "${query}".`));
    await reply(
      ctx,
      [`${counted(found.length, "match", "matches")}:`, ...found.map((s) => findLine(s, timezone))].join(
        "\n",
      ),
    );
  });
  kit.command(lookup, "sub", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("sub", account.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const card = await subscriberCard(db, customer.id, clock.now());
    const status = card.summary.subscription?.status;
    const buttons: InlineKeyboardButton[] = [];
    const acct = customer.accountNumber;
    if (status === "active" && may(admin.role, "suspend"))
      buttons.push({ text: "Suspend", callback_data: `sus:${acct}` });
    if (status === "suspended" && may(admin.role, "resume"))
      buttons.push({ text: "Resume", callback_data: `res:${acct}` });
    if (may(admin.role, "pay")) buttons.push({ text: "Record payment", callback_data: `pay:${acct}` });
    await ctx.reply(
      cardText(card, timezone),
      buttons.length ? { reply_markup: { inline_keyboard: [buttons] } } : {},
    );
    followWithOnlineStatus(kit, ctx.chat!.id, card.summary.subscription);
  });
  return lookup;
}
