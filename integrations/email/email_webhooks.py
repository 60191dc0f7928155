"""POST /webhooks/email/<provider>: authenticate, parse, hand the reply to the SDR."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("email_in", __name__)
