"""POST /webhooks/forms/<source>: verify, parse, hand the fill to the SDR, answer at once."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("forms", __name__)
