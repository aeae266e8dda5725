import { index, integer, jsonb, pgTable, text } from "drizzle-orm/pg-core";
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
  },
  (t) => [index("job_runs_job_idx").on(t.job, t.startedAt)],
);
