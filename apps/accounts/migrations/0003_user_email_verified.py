from django.db import migrations, models
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower


def copy_verified_flags(apps, schema_editor):
    """Accounts whose current address already has a verified allauth row."""
    User = apps.get_model("accounts", "User")
    EmailAddress = apps.get_model("account", "EmailAddress")
    verified = EmailAddress.objects.annotate(lowered=Lower("email")).filter(
        user_id=OuterRef("pk"), verified=True, lowered=Lower(OuterRef("email"))
    )
    User.objects.filter(email__isnull=False).filter(Exists(verified)).update(email_verified=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_provider_token"),
        ("account", "0009_emailaddress_unique_primary_email"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_verified",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(copy_verified_flags, migrations.RunPython.noop),
    ]
