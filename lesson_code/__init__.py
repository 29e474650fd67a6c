"""The finished code of the notebooks: tokens.py (create and verify JWTs) and app.py (the FastAPI app)."""
