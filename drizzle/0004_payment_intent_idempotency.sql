ALTER TABLE "payment_intents" ADD COLUMN "idempotency_key" text;--> statement-breakpoint
CREATE UNIQUE INDEX "payment_intents_idempotency_uq" ON "payment_intents" USING btree ("idempotency_key");