import { sql } from "drizzle-orm";
import { bigint, index, integer, jsonb, pgTable, text } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";

export const adminImportStatuses = [
  /** Sent to the chat; the file is still at Telegram. */
  "requested",
  /** Dry run reported; waiting for the confirmation button (the file is kept in `contentBase64`). */
  "checked",
  /** Confirmed: the import is under way. */
  "confirmed",
  /** Imported, or nothing was new: over. */
  "done",
  /** The file could not be fetched or was refused whole. */
  "failed",
  "cancelled",
  /** The question expired unanswered. */
  "expired",
] as const;
export type AdminImportStatus = (typeof adminImportStatuses)[number];

/**
 * A customers CSV sent to the admin chat (src/bots/admin/features/import.ts). The webhook only
 * records it; work after the answer fetches it from Telegram, runs the dry run, keeps the file here
 * until its confirmation is answered, and imports it. A row `requested` or `confirmed` whose
 * `leaseUntil` passed was left by an instance that stopped: the next run takes it up again.
 */
export const adminImports = pgTable(
  "admin_imports",
  {
    id: id(),
    adminTelegramId: bigint("admin_telegram_id", { mode: "number" }).notNull(),
    chatId: text("chat_id").notNull(),
    /** Telegram's handle for the document (`getFile`). */
    fileId: text("file_id").notNull(),
    fileName: text("file_name").notNull(),
    /** As Telegram announced it; the download is bounded anyway. */
    fileSize: integer("file_size"),
    status: text("status", { enum: adminImportStatuses }).notNull(),
    /** The file's bytes (base64) between the dry run and the import; cleared once it is over. */
    contentBase64: text("content_base64"),
    /** The dry run's (then the import's) counts: rows, new, unchanged, refused. */
    counts: jsonb("counts").$type<Record<string, number>>(),
    /** The confirmation (admin_confirmations.token) asking to import it. */
    confirmationToken: text("confirmation_token"),
    error: text("error"),
    /** Held by a run working on it until then. */
    leaseUntil: at("lease_until"),
    createdAt: createdAt(),
    updatedAt: at("updated_at").notNull(),
  },
  (t) => [
    index("admin_imports_open_idx")
      .on(t.status)
      .where(sql`${t.status} in ('requested', 'checked', 'confirmed')`),
    index("admin_imports_token_idx").on(t.confirmationToken),
  ],
);
