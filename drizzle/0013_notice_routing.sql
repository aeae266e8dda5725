CREATE TABLE "chat_reply_routes" (
	"phone" text PRIMARY KEY NOT NULL,
	"channel" text NOT NULL,
	"chat_id" text NOT NULL,
	"until" timestamp with time zone NOT NULL
);
--> statement-breakpoint
-- A customer notice written as an SMS goes to the chat the customer chose (customers.notify_channel,
-- through its chat_links row), else to the chat the phone is using now (chat_reply_routes). The SMS
-- number stays as fallback_recipient: the chat worker turns the row back into an SMS if the chat
-- cannot take it. Every writer of notices (use-cases, the payment batch, dunning) is routed alike,
-- in its own transaction. Link codes must reach the phone itself, and admin alerts are not notices.
CREATE OR REPLACE FUNCTION route_notice_to_chat() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  target record;
BEGIN
  IF NEW.channel <> 'sms' OR NEW.template IN ('chat_link_code', 'admin_alert') THEN
    RETURN NEW;
  END IF;
  SELECT l.channel, l.chat_id INTO target
    FROM customers c JOIN chat_links l ON l.customer_id = c.id AND l.channel = c.notify_channel
    WHERE c.phone = NEW.recipient
    LIMIT 1;
  IF NOT FOUND THEN
    SELECT r.channel, r.chat_id INTO target
      FROM chat_reply_routes r
      WHERE r.phone = NEW.recipient AND r.until > NEW.created_at;
  END IF;
  IF FOUND THEN
    NEW.fallback_recipient := NEW.recipient;
    NEW.channel := target.channel;
    NEW.recipient := target.chat_id;
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER message_outbox_route_notice BEFORE INSERT ON message_outbox
  FOR EACH ROW EXECUTE FUNCTION route_notice_to_chat();
