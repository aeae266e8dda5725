CREATE TABLE "whatsapp_user_ids" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "whatsapp_user_ids_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"user_id" text NOT NULL,
	"wa_id" text NOT NULL,
	"learnt_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "whatsapp_user_ids_user_uq" ON "whatsapp_user_ids" USING btree ("user_id");