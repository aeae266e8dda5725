import { and, eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import type { Document } from "grammy/types";
import { audit } from "../../../billing/audit.ts";
import { BillingError } from "../../../billing/context.ts";
import { adminImports } from "../../../db/schema/index.ts";
import { confirmable, confirmPattern, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor, may } from "../roles.ts";
import { customerCount, IMPORT_FILE_LIMIT_BYTES, megabytes, runImports } from "./import-run.ts";

/**
 * Customers from a CSV file sent to the chat (the CLI's `customers import`, by chat). The webhook
 * only records the document (a row of `admin_imports`, audited) and answers; after the answer,
 * work of its own (import-run.ts) fetches the file from Telegram, runs the dry run and reports it
 * row by row with a Confirm button; Confirm marks the row and, again after the answer, the good
 * rows are imported in one transaction with the audit entry of the admin who confirmed.
 */

export type ImportAction = FeatureAction & {
  feature: "import";
  importId: number;
  fileName: string;
  count: number;
};

confirmable("import", {
  command: "import",
  describe: (a) => {
    const action = a as ImportAction;
    return `import ${customerCount(action.count)} from ${action.fileName}`;
  },
  // In the claim's transaction: only marks the file; the import runs after the press is answered.
  async run(ctx, _admin, a) {
    const action = a as ImportAction;
    const [marked] = await ctx.db
      .update(adminImports)
      .set({ status: "confirmed", leaseUntil: null, updatedAt: ctx.clock.now() })
      .where(and(eq(adminImports.id, action.importId), eq(adminImports.status, "checked")))
      .returning({ id: adminImports.id });
    if (!marked) throw new BillingError("import_gone", "That file is no longer waiting: send it again.");
    return `⏳ Importing ${customerCount(action.count)} from ${action.fileName}… The summary follows here.`;
  },
});

const CSV_TYPES = new Set(["text/csv", "text/comma-separated-values", "application/csv"]);

function isCsv(document: Document): boolean {
  if (document.file_name) return /\.csv$/i.test(document.file_name);
  return CSV_TYPES.has(document.mime_type ?? "");
}

export function importFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  const kick = () => kit.background("customer import", () => runImports(kit));

  // A document is an import whatever its caption (`/import` or none): files mean nothing else here.
  composer.on("message:document", async (ctx) => {
    const admin = kit.adminOf(ctx);
    if (!may(admin.role, "import")) return kit.refuseRole(ctx, admin, "import");
    const document = ctx.message.document;
    const name = (document.file_name ?? "file").slice(0, 200);
    if (!isCsv(document))
      return void (await kit.reply(
        ctx,
        `${name} is not a CSV file. Save the spreadsheet as CSV (.csv, columns as /export customers gives them) and send that.`,
      ));
    if (document.file_size !== undefined && document.file_size > IMPORT_FILE_LIMIT_BYTES)
      return void (await kit.reply(
        ctx,
        `${name} is ${megabytes(document.file_size)}: the chat takes files up to ${megabytes(IMPORT_FILE_LIMIT_BYTES)}. Split it, or import it with the CLI (npm run cli -- customers import).`,
      ));
    const chatId = ctx.chat.id;
    await kit.inTx(async (tx, _, now) => {
      const [row] = await tx
        .insert(adminImports)
        .values({
          adminTelegramId: admin.telegramId,
          chatId: String(chatId),
          fileId: document.file_id,
          fileName: name,
          fileSize: document.file_size ?? null,
          status: "requested",
          createdAt: now,
          updatedAt: now,
        })
        .returning({ id: adminImports.id });
      await audit(tx, adminActor(admin.telegramId), now, {
        action: "customers.import_requested",
        entity: "admin_import",
        entityId: row!.id,
        details: { file: name, bytes: document.file_size ?? null },
      });
      await kit.say(
        tx,
        now,
        chatId,
        `📥 ${name}: checking it row by row. The report follows here; nothing is imported before you confirm.`,
      );
    });
    kick();
  });

  kit.command(composer, "import", async (ctx) => {
    await kit.reply(
      ctx,
      [
        "Send the customers as a CSV file (📎 → File) in this chat; a caption is not needed.",
        "Columns: account,name,phone,plan,status,expires,router,username,balance (as /export customers gives them).",
        `Up to ${megabytes(IMPORT_FILE_LIMIT_BYTES)}. Every row is checked first and the report comes back here; nothing is imported before you confirm.`,
      ].join("\n"),
    );
  });

  // Confirm or Cancel on an import's question: the press is answered by buttons.ts; then the
  // confirmed file is imported (or the cancelled one let go) here, after the answer.
  composer.callbackQuery(confirmPattern, async (ctx, next) => {
    await next();
    const token = (ctx.match as RegExpMatchArray)[2]!;
    const [ours] = await kit.db
      .select({ id: adminImports.id })
      .from(adminImports)
      .where(eq(adminImports.confirmationToken, token));
    if (ours) kick();
  });
  return composer;
}
