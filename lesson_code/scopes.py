"""The scopes the lesson's API knows, declared once: the issuer grants only these, every verifier reads them from a
token's scope claim (RFC 6749 section 3.3), and /docs shows them in its Authorize dialog."""

import re

SCOPES = {"me": "Read your own profile", "admin": "Manage users: list them, disable them"}
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3: printable ASCII, no space, quote, \
