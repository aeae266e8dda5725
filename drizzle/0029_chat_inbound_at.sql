ALTER TABLE "chat_sessions" ADD COLUMN "last_inbound_at" timestamp with time zone;--> statement-breakpoint
-- A chat's window so far ran from when its newest message was handled: that stays its start until
-- the person writes again.
UPDATE "chat_sessions" SET "last_inbound_at" = "last_activity_at";
