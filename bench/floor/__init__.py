"""The "bare floor" of bench/README.md, rebuilt on this machine for every bench run.

A separate, minimal Django project: one DRF view returning three user fields, behind
djangorestframework-simplejwt's stock JWTAuthentication (RS256), one PostgreSQL user lookup,
persistent connections (CONN_MAX_AGE, no health checks), no middleware, no throttling.
It reads the bench database's ``accounts_user`` table (unmanaged model) and verifies the very
token the real app minted, with the app's public key (bench/run exports it to a PEM file).
"""
