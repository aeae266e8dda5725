import { eq } from "drizzle-orm";
import type { Context } from "grammy";
import type { Executor } from "../../../db/client.ts";
import { chatInbox } from "../../../db/schema/index.ts";
import { changeRouterPasswordAudited } from "../../../network/router-edit.ts";
import { addRouterAudited } from "../../../network/routers.ts";
import { enqueueChat } from "../../chat-outbox.ts";
import { inboxIdOf } from "../../telegram/update-marks.ts";
import type { AdminKit } from "../kit.ts";
import { ADMIN_CHANNEL } from "../queued-api.ts";
import { type Admin, adminActor, may } from "../roles.ts";
import { defaultPort, describeRouter, routerNamed } from "./router-dialog-input.ts";
import type { RouterAnswers, RouterDialogs } from "./router-dialog-steps.ts";

/**
 * The password step of `/router_add` and `/router_password`: the message holding the password is
 * acted on and deleted in one transaction. Whatever happens, the message is deleted and its stored
 * copy scrubbed; the password is never repeated, stored in the dialog or audited.
 */

const MAX_PASSWORD = 256;
/** What replaces a password in the stored copy of the update. */
const REMOVED = "(password removed)";

export async function takeRouterPassword(
  kit: AdminKit,
  dialogs: RouterDialogs,
  ctx: Context,
  admin: Admin,
  answers: RouterAnswers,
  password: string,
): Promise<void> {
  const chatId = ctx.chat!.id;
  const forgetMessage = (tx: Executor, now: Date) => forgetPasswordMessage(tx, now, ctx);
  const box = kit.deps.box;
  try {
    await kit.inTx(async (tx, _, now) => {
      await forgetMessage(tx, now);
      const a = await dialogs.claim(tx, ctx, "password");
      const say = (text: string) => kit.say(tx, now, chatId, text);
      if (!a) return say("That question has ended; your message was deleted and not used.");
      // The role as it is now (read for this message): one taken away since the question was asked
      // takes the answer's power with it.
      const command = a.mode === "add" ? "router_add" : "router_password";
      if (!may(admin.role, command))
        return say(
          `Your role (${admin.role}) may not use /${command} any more; your message was deleted and not used.`,
        );
      if (!box) return say("Router passwords cannot be sealed in this instance; nothing was changed.");
      if (password.trim() === "" || password.length > MAX_PASSWORD)
        return say(
          `That cannot be the password (empty or longer than ${MAX_PASSWORD}); your message was deleted. Start again: ${a.mode === "add" ? "/router_add" : `/router_password ${a.name}`}`,
        );
      const actor = adminActor(admin.telegramId);
      if (a.mode === "add") {
        if (await routerNamed(tx, a.name ?? ""))
          return say(`A router named ${a.name} exists now; nothing was added (your message was deleted).`);
        const tls = a.tls ?? false;
        const port = a.port ?? defaultPort(tls);
        const added = await addRouterAudited(tx, box, actor, now, {
          name: a.name ?? "",
          host: a.host ?? "",
          port,
          tls,
          username: a.username ?? "",
          password,
        });
        return say(
          `✅ Router ${describeRouter({ name: added.name, host: a.host ?? "", port, tls, username: a.username ?? "" })} added; your message with the password was deleted. /routers shows it once contacted.${tls ? ` With API-SSL, its certificate must be confirmed before the first connection is accepted (/router_cert ${added.name} once it has tried).` : ""}`,
        );
      }
      const updated = await changeRouterPasswordAudited(tx, box, actor, now, a.routerId ?? -1, password);
      if (!updated) return say(`Router ${a.name} is gone; nothing was changed.`);
      return say(`✅ New password of ${updated.name} saved; your message with it was deleted.`);
    });
    // After the commit: the connection logged in with the old password is dropped.
    if (answers.mode === "password" && answers.routerId !== undefined)
      await kit.deps.network?.routerChanged?.(answers.routerId);
  } catch (error) {
    // Rolled back: the message is still deleted, the dialog ended, and the error told without the password.
    kit.log.error(
      { err: error instanceof Error ? error.message.replaceAll(password, "***") : "error" },
      "router password step failed",
    );
    await kit.inTx(async (tx, _, now) => {
      await forgetMessage(tx, now);
      await dialogs.forget(ctx, tx);
      await kit.say(tx, now, chatId, "Something went wrong; nothing was changed. Your message was deleted.");
    });
  }
}

/**
 * A message sent to a password question that has expired: it may be the password, so it is
 * deleted and its stored copy scrubbed as an answer in time would be, and the question ends.
 */
export async function dropLatePassword(
  kit: AdminKit,
  dialogs: RouterDialogs,
  ctx: Context,
  answers: RouterAnswers,
): Promise<void> {
  await kit.inTx(async (tx, _, now) => {
    await forgetPasswordMessage(tx, now, ctx);
    await dialogs.forget(ctx, tx);
    await kit.say(
      tx,
      now,
      ctx.chat!.id,
      `The password question had ended (after 10 minutes); your message was deleted and not used. Start again: ${answers.mode === "add" ? "/router_add" : `/router_password ${answers.name}`}`,
    );
  });
}

/** Deletes the message that may hold a password from the chat, and scrubs its stored copy. */
export async function forgetPasswordMessage(tx: Executor, now: Date, ctx: Context): Promise<void> {
  const chatId = ctx.chat!.id;
  await enqueueChat(tx, now, [
    {
      channel: ADMIN_CHANNEL,
      to: String(chatId),
      language: "en",
      content: {
        kind: "raw",
        method: "deleteMessage",
        payload: { chat_id: chatId, message_id: ctx.message!.message_id },
      },
    },
  ]);
  const inboxId = inboxIdOf.get(ctx.update);
  if (inboxId !== undefined)
    await tx
      .update(chatInbox)
      .set({ payload: scrubbed(ctx.update as unknown as Record<string, unknown>) })
      .where(eq(chatInbox.id, inboxId));
}

/** The update as stored, with the password's text replaced. */
function scrubbed(update: Record<string, unknown>): Record<string, unknown> {
  const message = update.message as Record<string, unknown> | undefined;
  return message ? { ...update, message: { ...message, text: REMOVED } } : update;
}
