"""The finished code of the notebooks: tokens.py (access tokens), app.py (notebook 04's first app) and service.py
(the finished service: users and sessions in SQL, refresh, logout, scopes), with the modules they share."""
