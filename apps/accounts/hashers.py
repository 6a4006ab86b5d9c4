"""Argon2id with the required parameters (docs/security.md): 19456 KiB, t=2, p=1.

Django's own Argon2 hasher uses other costs; subclassing keeps its encoding and its
``must_update`` check, so hashes with any other parameters are upgraded on the next login.
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    memory_cost = 19456  # KiB
    time_cost = 2
    parallelism = 1
