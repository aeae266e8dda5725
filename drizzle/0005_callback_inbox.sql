ALTER TABLE "mpesa_callbacks" ALTER COLUMN "body" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "payments" ADD COLUMN "hold_reason" text;--> statement-breakpoint
ALTER TABLE "mpesa_callbacks" ADD COLUMN "raw" text;--> statement-breakpoint
ALTER TABLE "mpesa_callbacks" ADD COLUMN "status" text DEFAULT 'processed' NOT NULL;--> statement-breakpoint
ALTER TABLE "mpesa_callbacks" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "mpesa_callbacks" ADD COLUMN "error" text;--> statement-breakpoint
ALTER TABLE "mpesa_callbacks" ADD COLUMN "processed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "account_reference" text;--> statement-breakpoint
ALTER TABLE "payment_intents" ADD COLUMN "push_uncertain" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX "mpesa_callbacks_unprocessed_idx" ON "mpesa_callbacks" USING btree ("received_at") WHERE "mpesa_callbacks"."status" <> 'processed';--> statement-breakpoint
ALTER TABLE "customers" ADD CONSTRAINT "customers_account_not_walk_in" CHECK (upper("customers"."account_number") not like 'TDW%');