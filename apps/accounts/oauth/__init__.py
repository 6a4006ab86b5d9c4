"""OAuth2 sign-in with PKCE (docs/accounts.md, "OAuth2 sign-in").

allauth's socialaccount internals (its providers, their OAuth2 clients and adapters) behind our
own endpoints, never its redirect views or session login: ``providers`` (which are configured),
``state`` (the single-use state and PKCE verifier in the cache), ``services`` (start, the code
exchange and the account it lands in, unlinking), ``selectors`` (a user's identities) and
``views`` (the thin REST endpoints).
"""
