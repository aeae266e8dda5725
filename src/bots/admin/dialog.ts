import { and, eq, gt, lte } from "drizzle-orm";
import type { Context } from "grammy";
import type { Executor } from "../../db/client.ts";
import { adminDialogs } from "../../db/schema/index.ts";
import { askConfirmation, type FeatureAction } from "./confirmations.ts";
import type { AdminKit } from "./kit.ts";
import type { Admin } from "./roles.ts";

/**
 * A guided command's state (`/add`, `/router_add`): one question per message, the answers so far in
 * `admin_dialogs` rather than in memory, so that a restart or another instance takes the next
 * answer. One dialog per admin and chat, whatever its kind: starting one replaces the other.
 * Forgotten after 10 minutes.
 */

export const DIALOG_TTL_MS = 10 * 60_000;

export interface DialogKey {
  admin: number;
  chat: number;
}

export interface DialogState<Step extends string, Answers extends object> {
  step: Step;
  answers: Answers;
}

const whereKey = (key: DialogKey) =>
  and(eq(adminDialogs.adminTelegramId, key.admin), eq(adminDialogs.chatId, String(key.chat)));

/** Starts a dialog or moves it on to `step` (the answers are stored as given: never put a secret in them). */
export async function saveDialog(
  tx: Executor,
  now: Date,
  key: DialogKey,
  kind: string,
  step: string,
  answers: object,
): Promise<void> {
  const row = {
    adminTelegramId: key.admin,
    chatId: String(key.chat),
    kind,
    step,
    answers: answers as Record<string, unknown>,
    updatedAt: now,
    expiresAt: new Date(now.getTime() + DIALOG_TTL_MS),
  };
  await tx
    .insert(adminDialogs)
    .values(row)
    .onConflictDoUpdate({ target: [adminDialogs.adminTelegramId, adminDialogs.chatId], set: row });
}

const dialogKeyOf = (kit: AdminKit, ctx: Context): DialogKey => ({
  admin: kit.adminOf(ctx).telegramId,
  chat: ctx.chat!.id,
});

async function openDialog(kit: AdminKit, ctx: Context) {
  const [row] = await kit.db
    .select()
    .from(adminDialogs)
    .where(and(whereKey(dialogKeyOf(kit, ctx)), gt(adminDialogs.expiresAt, kit.clock.now())));
  return row ?? null;
}

/** Whether this admin has a dialog of any kind under way in this chat. */
export async function dialogUnderWay(kit: AdminKit, ctx: Context): Promise<boolean> {
  return (await openDialog(kit, ctx)) !== null;
}

/** The dialogs of one kind, as the feature that asks them sees them. */
export interface Dialogs<Step extends string, Answers extends object> {
  /** The dialog of this kind under way in this admin's chat, or null. */
  current(ctx: Context): Promise<DialogState<Step, Answers> | null>;
  /** The answers of a dialog of this kind that expired waiting at `step` in this chat, or null. */
  lapsed(ctx: Context, step: Step): Promise<Answers | null>;
  /** The answer was not taken: says why and what to type, the dialog still waiting at its step. */
  retry(ctx: Context, problem: string): Promise<void>;
  /** Stores the next step and asks its question, in one transaction. */
  ask(ctx: Context, step: Step, answers: Answers, question: string): Promise<void>;
  /** Ends this admin's dialog in this chat, whatever its kind. */
  forget(ctx: Context, tx?: Executor): Promise<void>;
  /**
   * Ends the dialog waiting at `step` and answers what it held, or null: of two deliveries of the
   * same message, only one gets the answers.
   */
  claim(tx: Executor, ctx: Context, step: Step): Promise<Answers | null>;
  /** The last answer was taken: the dialog ends and the once-only confirmation is asked, in one transaction. */
  confirm(ctx: Context, admin: Admin, action: FeatureAction, question: string): Promise<void>;
}

export function dialogsOf<Step extends string, Answers extends object>(
  kit: AdminKit,
  kind: string,
): Dialogs<Step, Answers> {
  const dialogs: Dialogs<Step, Answers> = {
    async current(ctx) {
      const row = await openDialog(kit, ctx);
      return row?.kind === kind ? { step: row.step as Step, answers: row.answers as Answers } : null;
    },
    async lapsed(ctx, step) {
      const [row] = await kit.db
        .select()
        .from(adminDialogs)
        .where(
          and(
            whereKey(dialogKeyOf(kit, ctx)),
            eq(adminDialogs.kind, kind),
            eq(adminDialogs.step, step),
            lte(adminDialogs.expiresAt, kit.clock.now()),
          ),
        );
      return row ? (row.answers as Answers) : null;
    },
    async retry(ctx, problem) {
      await kit.reply(ctx, problem);
    },
    ask: (ctx, step, answers, question) =>
      kit.inTx(async (tx, _, now) => {
        await saveDialog(tx, now, dialogKeyOf(kit, ctx), kind, step, answers);
        await kit.say(tx, now, ctx.chat!.id, question);
      }),
    async forget(ctx, tx = kit.db) {
      await tx.delete(adminDialogs).where(whereKey(dialogKeyOf(kit, ctx)));
    },
    async claim(tx, ctx, step) {
      // An expired dialog answers nothing, even one that expired since `current` read it.
      const [claimed] = await tx
        .delete(adminDialogs)
        .where(
          and(
            whereKey(dialogKeyOf(kit, ctx)),
            eq(adminDialogs.kind, kind),
            eq(adminDialogs.step, step),
            gt(adminDialogs.expiresAt, kit.clock.now()),
          ),
        )
        .returning({ answers: adminDialogs.answers });
      return claimed ? (claimed.answers as Answers) : null;
    },
    confirm: (ctx, admin, action, question) =>
      kit.inTx(async (tx, _, now) => {
        await dialogs.forget(ctx, tx);
        await askConfirmation(tx, now, admin, ctx.chat!.id, action, question);
      }),
  };
  return dialogs;
}
