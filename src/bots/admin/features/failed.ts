import { Composer, type Context } from "grammy";
import { formatDateTime } from "../../../messaging/render.ts";
import { deadProvisioning } from "../../../network/health.ts";
import type { AdminKit } from "../kit.ts";
import { deadMessages } from "../ops-queries.ts";
import { may } from "../roles.ts";

export const FAILED_LIMIT = 10;

/**
 * `/failed`: messages and provisioning jobs given up, newest first, ten of each. A voucher code is
 * internet anyone can use: it is shown only to whom may send it again (`/resend`), in a private chat,
 * so that it can be read out to a customer on the phone; in a group every member would read it.
 */
export function failedFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "failed", async (ctx) => {
    const when = (d: Date | null) => (d ? formatDateTime("en", d, kit.timezone) : "?");
    const messages = await deadMessages(kit.db, FAILED_LIMIT);
    const jobs = await deadProvisioning(kit.db, FAILED_LIMIT);
    const showCodes = ctx.chat?.type === "private" && may(kit.adminOf(ctx).role, "resend");
    const codeOf = (m: (typeof messages)[number]) => {
      if (m.template !== "voucher_code" || typeof m.params.code !== "string") return "";
      return showCodes ? ` ${m.params.code}` : " code hidden";
    };
    const lines = [
      messages.length ? `Messages given up (newest ${messages.length}):` : "Messages given up: none",
      ...messages.map(
        (m) =>
          `  • #${m.id} ${when(m.createdAt)} ${m.channel} to ${m.recipient} (${m.template}${codeOf(m)}, ${m.attempts} tries)${m.lastError ? `: ${m.lastError.slice(0, 120)}` : ""}`,
      ),
      jobs.length ? `Router jobs given up (newest ${jobs.length}):` : "Router jobs given up: none",
      ...jobs.map(
        (j) =>
          `  • #${j.id} ${when(j.doneAt)} ${j.action}${j.subscriptionId ? ` subscription ${j.subscriptionId}` : ""}${j.voucherId ? ` voucher ${j.voucherId}` : ""} on ${j.routerName ?? "any router"} (${j.attempts} tries)${j.lastError ? `: ${j.lastError.slice(0, 120)}` : ""}`,
      ),
    ];
    if (messages.length)
      lines.push("/resend <#number> [phone] sends a message again, or by SMS to another number.");
    if (jobs.length)
      lines.push("/retry <router> sends a router's given-up jobs again, and those for any router.");
    await kit.reply(ctx, lines.join("\n"));
  });
  return composer;
}
