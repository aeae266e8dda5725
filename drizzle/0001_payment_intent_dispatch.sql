ALTER TABLE "payment_intents" ADD COLUMN "mpesa_receipt" text;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "send_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "next_send_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "sent_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "last_error" text;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "settled_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "mpesa_callbacks_reference_idx" ON "mpesa_callbacks" USING btree ("kind","reference");--> statement-breakpoint
CREATE INDEX "payment_intents_session_idx" ON "payment_intents" USING btree ("channel","channel_session_id","created_at");--> statement-breakpoint
CREATE INDEX "payment_intents_unsent_idx" ON "payment_intents" USING btree ("next_send_at") WHERE "payment_intents"."status" = 'pending' and "payment_intents"."checkout_request_id" is null;