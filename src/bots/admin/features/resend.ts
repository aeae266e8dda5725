import { Composer, type Context } from "grammy";
import { MAX_ROW_ID, parseRowId } from "../../../db/params.ts";
import { displayPhone, normalizePhone } from "../../../lib/phone.ts";
import type { AdminKit } from "../kit.ts";
import { resendDeadMessageInTx } from "../ops-queries.ts";
import { adminActor } from "../roles.ts";

/**
 * `/resend <#number> [phone]`: a message `/failed` lists as given up (a voucher code, a router
 * login, a receipt) sent again; a voucher code may go by SMS to another number instead.
 */
export function resendFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "resend", async (ctx, admin, args) => {
    const number = /^#?(\d+)$/.exec(args[0] ?? "");
    if (!number)
      return void (await kit.reply(
        ctx,
        kit.usage("resend", "Say the message's number, as /failed shows it."),
      ));
    const id = parseRowId(number[1]!);
    if (id === null)
      return void (await kit.reply(
        ctx,
        `#${number[1]} is not a message number (they run from 1 to ${MAX_ROW_ID}). /failed lists those given up.`,
      ));
    // A phone as people type it, spaces and all.
    const typed = args.slice(1).join(" ");
    const phone = typed === "" ? undefined : normalizePhone(typed);
    if (phone === null)
      return void (await kit.reply(ctx, `"${typed}" is not a phone number: type it as 0712 345678.`));
    await kit.inTx(async (tx, _, now) => {
      const outcome = await resendDeadMessageInTx(tx, now, adminActor(admin.telegramId), id, phone);
      const text =
        outcome.kind === "not_found"
          ? `No message #${number[1]}. /failed lists those given up.`
          : outcome.kind === "not_given_up"
            ? `Message #${number[1]} was not given up (it is ${outcome.status}).`
            : outcome.kind === "not_redirectable"
              ? `Only a voucher code goes to another number; #${number[1]} is ${outcome.template}, for its own recipient only: /resend ${number[1]}.`
              : `🔁 Message #${number[1]} (${outcome.template}) queued again${outcome.channel === "sms" && phone ? ` as an SMS to ${displayPhone(outcome.recipient)}` : ""}.`;
      await kit.say(tx, now, ctx.chat!.id, text);
    });
  });
  return composer;
}
