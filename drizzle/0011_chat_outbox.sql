ALTER TABLE "customers" ADD COLUMN "notify_channel" text;--> statement-breakpoint
ALTER TABLE "message_outbox" ADD COLUMN "content" jsonb;--> statement-breakpoint
ALTER TABLE "message_outbox" ADD COLUMN "fallback_recipient" text;--> statement-breakpoint
CREATE INDEX "message_outbox_recipient_pending_idx" ON "message_outbox" USING btree ("recipient","id") WHERE "message_outbox"."status" = 'pending';