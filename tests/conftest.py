import os
import secrets

# Every test process signs with a fresh random key, set before lesson_code.tokens is imported,
# so the suite never writes a .jwt_secret file into the checkout.
os.environ["JWT_SECRET_KEY"] = secrets.token_hex(32)
