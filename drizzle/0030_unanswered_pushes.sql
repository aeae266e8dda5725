ALTER TABLE "payment_intents" ADD COLUMN "next_query_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "unresolved_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "payment_intents_unanswered_idx" ON "payment_intents" USING btree ("next_query_at") WHERE "payment_intents"."status" = 'timed_out' and "payment_intents"."next_query_at" is not null;--> statement-breakpoint
-- Pushes timed out in the last day without an answer from M-Pesa may have been paid: asked again.
UPDATE "payment_intents" SET "next_query_at" = now()
WHERE "status" = 'timed_out' AND "result_code" IS NULL AND "checkout_request_id" IS NOT NULL
  AND "result_desc" = 'No answer from M-Pesa' AND "sent_at" > now() - interval '1 day';
