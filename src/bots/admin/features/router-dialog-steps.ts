import type { Context } from "grammy";
import { BillingError } from "../../../billing/context.ts";
import { enqueueChat } from "../../chat-outbox.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import { type Dialogs, dialogsOf, saveDialog } from "../dialog.ts";
import type { AdminKit } from "../kit.ts";
import { ADMIN_CHANNEL } from "../queued-api.ts";
import type { Admin } from "../roles.ts";
import {
  defaultPort,
  describeRouter,
  parseHost,
  parsePort,
  parseRouterName,
  parseYesNo,
  routerNamed,
  USERNAME,
} from "./router-dialog-input.ts";

/**
 * The questions of `/router_add` before its password (name → host → port → TLS → username), and
 * its confirmation, which leads to the password step (router-dialog-password.ts).
 */

export type RouterStep = "name" | "host" | "port" | "tls" | "username" | "password";

export interface RouterAnswers {
  /** `add`: a new router; `password`: a new password for `routerId`. */
  mode?: "add" | "password";
  name?: string;
  host?: string;
  /** null: the default for the TLS choice (8728, or 8729 with TLS). */
  port?: number | null;
  tls?: boolean;
  username?: string;
  routerId?: number;
}

export type RouterDialogs = Dialogs<RouterStep, RouterAnswers>;

const KIND = "router";

export const routerDialogs = (kit: AdminKit): RouterDialogs => dialogsOf(kit, KIND);

type RouterAddAction = FeatureAction & {
  feature: "router_add";
  chatId: number;
  name: string;
  host: string;
  port: number;
  tls: boolean;
  username: string;
};

export const passwordQuestion = (a: { name: string; username: string }, isNew: boolean) =>
  `Send the ${isNew ? "" : "new "}password of ${a.username} on ${a.name} now, as a message of its own; the message will be deleted once read. (/cancel_dialog stops.)`;

confirmable("router_add", {
  command: "router_add",
  describe: (a) => `add router ${describeRouter(a as RouterAddAction)}`,
  /** Confirmed: the dialog moves on to the password (nothing is added before it arrives). */
  async run(ctx, admin, a) {
    const action = a as RouterAddAction;
    const now = ctx.clock.now();
    if (await routerNamed(ctx.db, action.name))
      throw new BillingError("router_exists", `A router named ${action.name} exists already.`);
    const answers: RouterAnswers = {
      mode: "add",
      name: action.name,
      host: action.host,
      port: action.port,
      tls: action.tls,
      username: action.username,
    };
    await saveDialog(
      ctx.db,
      now,
      { admin: admin.telegramId, chat: action.chatId },
      KIND,
      "password",
      answers,
    );
    await enqueueChat(ctx.db, now, [
      {
        channel: ADMIN_CHANNEL,
        to: String(action.chatId),
        language: "en",
        content: {
          kind: "raw",
          method: "sendMessage",
          payload: { chat_id: action.chatId, text: passwordQuestion(action, true) },
        },
      },
    ]);
    return `Router ${describeRouter(action)}: confirmed, waiting for its password.`;
  },
});

/** An answer to one of the questions before the password: the next question, or what to type instead. */
export async function answerRouterStep(
  kit: AdminKit,
  dialogs: RouterDialogs,
  ctx: Context,
  admin: Admin,
  step: Exclude<RouterStep, "password">,
  answers: RouterAnswers,
  text: string,
): Promise<void> {
  switch (step) {
    case "name": {
      const name = parseRouterName(text);
      if (!name)
        return dialogs.retry(
          ctx,
          `"${text.slice(0, 60)}" cannot be a router name: 1–40 letters, digits, . _ - (not only digits). Its name?`,
        );
      const taken = await routerNamed(kit.db, name);
      if (taken) return dialogs.retry(ctx, `A router named ${taken.name} exists already: another name?`);
      return dialogs.ask(
        ctx,
        "host",
        { ...answers, name },
        `(2/5) ${name}'s address: a host name or IP address?`,
      );
    }
    case "host": {
      const host = parseHost(text);
      if (!host)
        return dialogs.retry(
          ctx,
          `"${text.slice(0, 60)}" is not a host name or IP address, e.g. 10.0.0.1. Its address?`,
        );
      return dialogs.ask(
        ctx,
        "port",
        { ...answers, host },
        "(3/5) The API port? Type ok for the default (8728, or 8729 with TLS), or a number.",
      );
    }
    case "port": {
      let port: number | null = null;
      if (!/^(ok|default)$/i.test(text)) {
        port = parsePort(text);
        if (port === null)
          return dialogs.retry(ctx, `"${text.slice(0, 60)}" is not a port (1–65535), or ok. The port?`);
      }
      return dialogs.ask(ctx, "tls", { ...answers, port }, "(4/5) Use API-SSL (TLS)? yes or no.");
    }
    case "tls": {
      const tls = parseYesNo(text);
      if (tls === null) return dialogs.retry(ctx, "Please type yes or no: use API-SSL (TLS)?");
      return dialogs.ask(
        ctx,
        "username",
        { ...answers, tls },
        "(5/5) The RouterOS user Tandao logs in as? (a user of group full or write, with API access)",
      );
    }
    case "username": {
      if (!USERNAME.test(text))
        return dialogs.retry(ctx, "A username of 1 to 64 characters without spaces, please. The user?");
      const tls = answers.tls ?? false;
      const action: RouterAddAction = {
        kind: "feature",
        feature: "router_add",
        chatId: ctx.chat!.id,
        name: answers.name ?? "",
        host: answers.host ?? "",
        port: answers.port ?? defaultPort(tls),
        tls,
        username: text,
      };
      return dialogs.confirm(
        ctx,
        admin,
        action,
        `Add router ${describeRouter(action)}? Its password is asked next.`,
      );
    }
  }
}
