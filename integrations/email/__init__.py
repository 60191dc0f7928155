"""Email: SMTP (or .eml files) out, inbound provider webhooks (Postmark, SendGrid, Mailgun, raw
RFC 822) in; `email_webhooks.bp` serves POST /webhooks/email/<provider>."""
