CREATE TABLE "admin_dialogs" (
	"admin_telegram_id" bigint NOT NULL,
	"chat_id" text NOT NULL,
	"kind" text NOT NULL,
	"step" text NOT NULL,
	"answers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "admin_dialogs_admin_telegram_id_chat_id_pk" PRIMARY KEY("admin_telegram_id","chat_id")
);
