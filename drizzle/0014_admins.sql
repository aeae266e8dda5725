CREATE TABLE "admin_confirmations" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "admin_confirmations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"token" text NOT NULL,
	"admin_telegram_id" bigint NOT NULL,
	"chat_id" text NOT NULL,
	"action" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"outcome" text
);
--> statement-breakpoint
CREATE TABLE "admins" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "admins_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"telegram_id" bigint NOT NULL,
	"role" text NOT NULL,
	"name" text DEFAULT '' NOT NULL,
	"added_by" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "admin_confirmations_token_uq" ON "admin_confirmations" USING btree ("token");--> statement-breakpoint
CREATE INDEX "admin_confirmations_open_idx" ON "admin_confirmations" USING btree ("expires_at") WHERE "admin_confirmations"."used_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "admins_telegram_id_uq" ON "admins" USING btree ("telegram_id");