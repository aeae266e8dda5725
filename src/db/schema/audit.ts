import { sql } from "drizzle-orm";
import { index, integer, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, id } from "./columns.ts";

export const auditLog = pgTable(
  "audit_log",
  {
    id: id(),
    actorKind: text("actor_kind", { enum: ["system", "admin", "subscriber", "webhook"] }).notNull(),
    actorId: text("actor_id").notNull(),
    channel: text("channel"),
    action: text("action").notNull(),
    entity: text("entity").notNull(),
    entityId: text("entity_id").notNull(),
    reason: text("reason"),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
    at: at("at").notNull(),
  },
  (t) => [index("audit_entity_idx").on(t.entity, t.entityId)],
);

export const jobRuns = pgTable(
  "job_runs",
  {
    id: id(),
    job: text("job").notNull(),
    startedAt: at("started_at").notNull(),
    finishedAt: at("finished_at"),
    status: text("status", { enum: ["ok", "failed", "skipped"] }).notNull(),
    counts: jsonb("counts").$type<Record<string, number>>().notNull().default({}),
    error: text("error"),
    attempt: integer("attempt").notNull().default(1),
    /**
     * The scheduled time this run is for (to the minute): instances whose timers fire for the same
     * slot run the job once between them, however their runs fall in time.
     */
    slot: at("slot"),
  },
  (t) => [
    index("job_runs_job_idx").on(t.job, t.startedAt),
    uniqueIndex("job_runs_slot_uq")
      .on(t.job, t.slot)
      .where(sql`${t.status} = 'ok' and ${t.slot} is not null`),
  ],
);
