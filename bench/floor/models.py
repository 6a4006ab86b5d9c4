from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models


class User(AbstractBaseUser):
    """The real app's user table, read as-is (never migrated from here)."""

    id = models.CharField(primary_key=True, max_length=32)
    username = models.CharField(max_length=32, unique=True)
    email = models.EmailField(max_length=254, null=True)
    role = models.CharField(max_length=16)

    USERNAME_FIELD = "username"

    class Meta:
        app_label = "floor"
        managed = False
        db_table = "accounts_user"
