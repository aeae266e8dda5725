import { createHash, randomInt, timingSafeEqual } from "node:crypto";
import { and, eq, isNull, sql } from "drizzle-orm";
import { linkChat } from "../../billing/chat-links.ts";
import { enqueueMessage, type MessageTemplate } from "../../billing/outbox.ts";
import { takeRateSlot } from "../../billing/rate-windows.ts";
import { DAY, HOUR, MINUTE } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import { type ChatChannel, chatLinkCodes, customers, type Language } from "../../db/schema/index.ts";
import { requireBox } from "../../db/sealed.ts";

/**
 * Linking a chat to an account by its number and a one-time code sent by SMS to the account's phone:
 * whoever reads that SMS holds the phone, which is what a link stands for. The code exists in the SMS
 * only (its outbox row holds it sealed); the table keeps its hash, an expiry and an attempt count.
 */

export const LINK_CODE_TTL_MS = 10 * MINUTE;
export const LINK_CODE_MAX_ATTEMPTS = 5;
/** A new code for the same chat no sooner than this: each one is an SMS to somebody's phone. */
export const LINK_CODE_RESEND_MS = MINUTE;
/**
 * Each code is an SMS the ISP pays for and five guesses at an account: a stranger asking from many
 * chats must not flood a customer's phone, nor one chat guess on for ever.
 */
export const LINK_CODES_PER_ACCOUNT_PER_HOUR = 3;
export const LINK_CODES_PER_CHAT_PER_DAY = 5;
/** `sms.chat_link_code` in the catalogs. Not yet in billing's `MessageTemplate` union (not ours to edit). */
export const LINK_CODE_TEMPLATE: MessageTemplate = "chat_link_code";

export const isLinkCode = (text: string) => /^\d{6}$/.test(text.trim());

/** Bound to the chat and the account, so a hash says nothing outside its own row. */
const hashCode = (channel: ChatChannel, chatId: string, customerId: number, code: string) =>
  createHash("sha256").update(`${channel}:${chatId}:${customerId}:${code}`).digest("hex");

const sameHash = (a: string, b: string) =>
  a.length === b.length && timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"));

export type LinkCodeRefusal = "wait" | "chatLimit" | "accountLimit";

export type LinkCodeRequest =
  | { kind: "sent"; accountNumber: string; phoneEnding: string }
  | { kind: "unknown" }
  | { kind: LinkCodeRefusal };

/** Thrown out of the transaction so that the slots taken in the windows before it are given back. */
class WindowFull extends Error {
  constructor(readonly refusal: LinkCodeRefusal) {
    super(refusal);
  }
}

export async function requestLinkCode(
  db: Db,
  request: { channel: ChatChannel; chatId: string; account: string; now: Date },
): Promise<LinkCodeRequest> {
  const { channel, chatId, now } = request;
  return db
    .transaction(async (tx): Promise<LinkCodeRequest> => {
      // Locked: a phone change being saved is waited for and the new number texted; a change that
      // comes after waits for this code and deletes it. Read unlocked, the code of a change saved
      // meanwhile went to the old number, whoever holds it now.
      const [customer] = await tx
        .select({
          id: customers.id,
          accountNumber: customers.accountNumber,
          phone: customers.phone,
          language: customers.language,
        })
        .from(customers)
        .where(sql`upper(${customers.accountNumber}) = upper(${request.account.trim()})`)
        .for("share");
      if (!customer) return { kind: "unknown" };
      // Counted apart from the code's row, which goes when it expires or its attempts run out: the
      // wait still holds then. The first full window names the refusal.
      const windows = [
        { refusal: "wait", key: `link-code:${channel}:${chatId}`, limit: 1, windowMs: LINK_CODE_RESEND_MS },
        {
          refusal: "chatLimit",
          key: `link-code-day:${channel}:${chatId}`,
          limit: LINK_CODES_PER_CHAT_PER_DAY,
          windowMs: DAY,
        },
        {
          refusal: "accountLimit",
          key: `link-code-account:${customer.id}`,
          limit: LINK_CODES_PER_ACCOUNT_PER_HOUR,
          windowMs: HOUR,
        },
      ] as const;
      for (const window of windows)
        if (!(await takeRateSlot(tx, window, now))) throw new WindowFull(window.refusal);

      const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
      const values = {
        customerId: customer.id,
        codeHash: hashCode(channel, chatId, customer.id, code),
        attempts: 0,
        expiresAt: new Date(now.getTime() + LINK_CODE_TTL_MS),
        usedAt: null,
        createdAt: now,
      };
      // One code per chat: a new request replaces the old one (and its attempts) after the resend wait.
      await tx
        .insert(chatLinkCodes)
        .values({ channel, chatId, ...values })
        .onConflictDoUpdate({ target: [chatLinkCodes.channel, chatLinkCodes.chatId], set: values });
      await enqueueMessage(tx, now, {
        recipient: customer.phone,
        language: customer.language,
        template: LINK_CODE_TEMPLATE,
        // Sealed as a PPPoE password in an outbox row is (db/sealed.ts): the SMS worker opens it to send.
        params: { code: requireBox().seal(code) },
      });
      return { kind: "sent", accountNumber: customer.accountNumber, phoneEnding: customer.phone.slice(-3) };
    })
    .catch((error: unknown) => {
      if (error instanceof WindowFull) return { kind: error.refusal };
      throw error;
    });
}

export type LinkCodeCheck =
  /** No code is pending for this chat: the text is not an attempt (it may be a menu input). */
  | { kind: "none" }
  | { kind: "linked"; accountNumber: string; language: Language }
  | { kind: "wrong"; attemptsLeft: number }
  | { kind: "expired" }
  | { kind: "exhausted" };

export async function checkLinkCode(
  db: Db,
  attempt: { channel: ChatChannel; chatId: string; code: string; now: Date },
): Promise<LinkCodeCheck> {
  const { channel, chatId, now } = attempt;
  return db.transaction(async (tx) => {
    const where = and(
      eq(chatLinkCodes.channel, channel),
      eq(chatLinkCodes.chatId, chatId),
      isNull(chatLinkCodes.usedAt),
    );
    const [pending] = await tx
      .select({ customerId: chatLinkCodes.customerId })
      .from(chatLinkCodes)
      .where(where);
    if (!pending) return { kind: "none" };
    // The account, then its code, in the order a phone change locks them (billing/customer-edit.ts):
    // a change being saved is waited for, and the code it deleted is gone; a change that comes later
    // waits for this link and unlinks it with the account's other chats. A code locked first could
    // link the chat after the change had unlinked the rest, by a code the old number received. Locked
    // as the change locks it: the link updates the account's notice channel, and two links holding a
    // shared lock would each wait for the other to give it up.
    await tx
      .select({ id: customers.id })
      .from(customers)
      .where(eq(customers.id, pending.customerId))
      .for("no key update");
    // Locked: two copies of one attempt must count twice, and a right code must link once.
    const [row] = await tx
      .select()
      .from(chatLinkCodes)
      .where(and(where, eq(chatLinkCodes.customerId, pending.customerId)))
      .for("update");
    if (!row) return { kind: "none" };
    // A dead code is said so once and dropped: the next six digits are a menu input again.
    if (now.getTime() >= row.expiresAt.getTime()) {
      await tx.delete(chatLinkCodes).where(eq(chatLinkCodes.id, row.id));
      return { kind: "expired" };
    }
    if (sameHash(row.codeHash, hashCode(channel, chatId, row.customerId, attempt.code.trim()))) {
      await tx.update(chatLinkCodes).set({ usedAt: now }).where(eq(chatLinkCodes.id, row.id));
      await linkChat(tx, { channel, chatId, customerId: row.customerId, method: "otp", at: now });
      const [customer] = await tx
        .select({ accountNumber: customers.accountNumber, language: customers.language })
        .from(customers)
        .where(eq(customers.id, row.customerId));
      return {
        kind: "linked",
        accountNumber: customer?.accountNumber ?? "",
        language: customer?.language ?? "en",
      };
    }
    const attempts = row.attempts + 1;
    if (attempts >= LINK_CODE_MAX_ATTEMPTS) {
      await tx.delete(chatLinkCodes).where(eq(chatLinkCodes.id, row.id));
      return { kind: "exhausted" };
    }
    await tx.update(chatLinkCodes).set({ attempts }).where(eq(chatLinkCodes.id, row.id));
    return { kind: "wrong", attemptsLeft: LINK_CODE_MAX_ATTEMPTS - attempts };
  });
}
