import type { UserFromGetMe } from "grammy/types";
import type { Hono } from "hono";

/**
 * The fake Bot API's routes for people, not bots (the sandbox, with curl): type in a chat, share a
 * contact, press a button, and read what the bot showed. A chat here is a user's private chat with
 * the bot, so its id is the user's.
 */

/** A message as the fake keeps it (what `sendMessage` / `editMessageText` left in the chat). */
export interface FakeMessage {
  message_id: number;
  chat: { id: number; type: "private" };
  date: number;
  text: string;
  reply_markup?: unknown;
}

/** An inline button as Telegram describes it; only those with callback data can be pressed here. */
export interface InlineButton {
  text: string;
  callback_data?: string;
}

export interface SandboxFake {
  botInfo: UserFromGetMe;
  /** Every message the bot sent and still shows, by id, oldest first. */
  messages: ReadonlyMap<number, FakeMessage>;
  newMessageId(): number;
  /** Queues an update for `getUpdates` and returns its `update_id`. */
  queue(update: Record<string, unknown>): number;
  refuse(code: number, description: string): unknown;
  ok(result: unknown): unknown;
}

const USAGE =
  'Bad Request: send {"user": 42, "text": "..."}, {"user": 42, "contact": "+254..."}, ' +
  '{"user": 42, "press": "<button text>"} or {"user": 42, "button": "<callback data>"}';

/** Telegram marks a leading `/command` as an entity; grammY's `bot.command` looks for it. */
export function commandEntities(text: string): {
  entities?: { type: "bot_command"; offset: 0; length: number }[];
} {
  const command = /^\/[A-Za-z0-9_]+(@\w+)?/.exec(text);
  return command ? { entities: [{ type: "bot_command", offset: 0, length: command[0].length }] } : {};
}

export function inlineButtonsOf(message: FakeMessage): InlineButton[] {
  const markup = message.reply_markup as { inline_keyboard?: unknown } | undefined;
  if (!Array.isArray(markup?.inline_keyboard)) return [];
  return (markup.inline_keyboard as unknown[]).flatMap((row) =>
    Array.isArray(row) ? (row as InlineButton[]).filter((b) => typeof b?.text === "string") : [],
  );
}

/** A label as a person may type it: "confirm" presses "✅ Confirm". */
const plainLabel = (text: string) =>
  text
    .normalize("NFKC")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim()
    .toLowerCase();

/**
 * The newest message in `chat` with a button that `matches`, and that button: the one a person
 * looking at the chat would press.
 */
function findButton(
  messages: ReadonlyMap<number, FakeMessage>,
  chat: number,
  matches: (button: InlineButton) => boolean,
): { message: FakeMessage; data: string } | undefined {
  for (const message of [...messages.values()].reverse()) {
    if (message.chat.id !== chat) continue;
    const button = inlineButtonsOf(message).find((b) => b.callback_data !== undefined && matches(b));
    if (button) return { message, data: button.callback_data! };
  }
  return undefined;
}

export function mountSandboxRoutes(app: Hono, fake: SandboxFake): void {
  let nextCallbackId = 1;

  /**
   * `{"user": 42, "text": "/start"}` or `{"user": 42, "contact": "+254712345678"}` queues a private
   * message from that user, as if typed in Telegram; a contact is their own. `{"user": 42, "press":
   * "Confirm"}` presses the button with that text (emoji and case aside) on the newest message in
   * their chat that has one, `{"user": 42, "button": "<callback data>"}` the button with that data:
   * either queues the `callback_query` Telegram would send, with the message it belongs to.
   */
  app.post("/sandbox/updates", async (c) => {
    const body = (await c.req.json().catch(() => null)) as Record<string, unknown> | null;
    const user = Number(body?.user ?? 1);
    const given = ["text", "contact", "press", "button"].filter((field) => typeof body?.[field] === "string");
    if (!body || !Number.isSafeInteger(user) || user <= 0 || given.length !== 1)
      return c.json(fake.refuse(400, USAGE), 400);
    const from = { id: user, is_bot: false, first_name: "Sandbox" };
    const chat = { id: user, type: "private", first_name: "Sandbox" };
    const date = Math.floor(Date.now() / 1000);

    if (typeof body.press === "string" || typeof body.button === "string") {
      const label = typeof body.press === "string" ? body.press : undefined;
      const pressed = findButton(fake.messages, user, (b) =>
        label === undefined
          ? b.callback_data === body.button
          : b.text === label || (plainLabel(label) !== "" && plainLabel(b.text) === plainLabel(label)),
      );
      if (!pressed) {
        const what = label !== undefined ? `a button "${label}"` : `a button with data "${body.button}"`;
        return c.json(
          fake.refuse(
            400,
            `Bad Request: no message in chat ${user} has ${what} (see /sandbox/chats/${user})`,
          ),
          400,
        );
      }
      const callback_query = {
        id: String(nextCallbackId++),
        from,
        chat_instance: `sandbox-${user}`,
        message: {
          ...pressed.message,
          chat,
          from: { id: fake.botInfo.id, is_bot: true, first_name: "Tandao" },
        },
        data: pressed.data,
      };
      return c.json(fake.ok({ update_id: fake.queue({ callback_query }) }));
    }

    const content =
      typeof body.text === "string"
        ? { text: body.text, ...commandEntities(body.text) }
        : { contact: { user_id: user, phone_number: String(body.contact), first_name: "Sandbox" } };
    const message = { message_id: fake.newMessageId(), date, chat, from, ...content };
    return c.json(fake.ok({ update_id: fake.queue({ message }) }));
  });

  /**
   * What the bot showed in a chat, oldest first: each message's text, its inline buttons (text and
   * callback data, for `press` or `button` above) and its markup as sent.
   */
  app.get("/sandbox/chats/:id", (c) => {
    const chat = Number(c.req.param("id"));
    const shown = [...fake.messages.values()]
      .filter((m) => m.chat.id === chat)
      .map((m) => ({
        message_id: m.message_id,
        text: m.text,
        buttons: inlineButtonsOf(m).map(({ text, callback_data }) => ({ text, callback_data })),
        reply_markup: m.reply_markup,
      }));
    return c.json(fake.ok(shown));
  });
}
