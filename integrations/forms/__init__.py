"""Form fills: one small adapter per form source (generic, Typeform, Webflow, HubSpot), each verifying
the provider's signature and turning its documented body into a `FormFill`; `form_webhooks.bp` serves
POST /webhooks/forms/<source>."""
